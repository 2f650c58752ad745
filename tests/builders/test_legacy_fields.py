"""The original's TF1 queue fields parse, and each one a config sets is named once."""

from __future__ import annotations

from absl import logging as absl_logging

from builders import config_util, legacy_fields

SETS_THREE = """
train_config {
  batch_size: 2
  batch_queue_capacity: 64
  num_queue_threads: 4
}
train_input_reader { min_after_dequeue: 10 }
"""


def test_each_field_that_is_set_gives_one_line_with_what_to_use():
    config = config_util.parse_pipeline_text(SETS_THREE)
    assert legacy_fields.ignored_fields(config) == [
        "train_config.batch_queue_capacity is set but has no effect under tf.data (it sized the "
        "original's TF1 queues): prefetching is automatic (tf.data AUTOTUNE); nothing to set.",
        "train_config.num_queue_threads is set but has no effect under tf.data (it sized the "
        "original's TF1 queues): set train_input_reader.num_readers and num_parallel_calls.",
        "train_input_reader.min_after_dequeue is set but has no effect under tf.data (it sized "
        "the original's TF1 queues): set shuffle_buffer.",
    ]


def test_fields_left_at_their_defaults_are_silent():
    config = config_util.parse_pipeline_text("train_config { batch_size: 2 }")
    assert config.train_config.batch_queue_capacity == 150  # the default still reads
    assert legacy_fields.ignored_fields(config) == []


def test_the_lines_are_logged_as_warnings(monkeypatch):
    warned = []
    monkeypatch.setattr(absl_logging, "warning", lambda message, *args: warned.append(message))
    legacy_fields.log_ignored_fields(config_util.parse_pipeline_text(SETS_THREE))
    assert len(warned) == 3 and all("has no effect under tf.data" in line for line in warned)

"""Fields of the original's TF1 configs that tf.data makes meaningless: one line each when set.

The original fed training through TF1 queues whose sizes and thread counts the config chose.
Under ``tf.data`` the pipeline is sized by ``num_readers``, ``num_parallel_calls`` and
``shuffle_buffer`` (and prefetching tunes itself), so these fields still parse, so that the
original's configs load unchanged, but do nothing. A user who sets one hears so once, with the
field to use instead, rather than tuning a value that is silently ignored.
"""

from __future__ import annotations

from absl import logging

from protos import pipeline_pb2

# (message path, field) -> what to use instead.
_TRAIN_FIELDS = {
    "batch_queue_capacity": "prefetching is automatic (tf.data AUTOTUNE); nothing to set",
    "num_batch_queue_threads": "set train_input_reader.num_parallel_calls",
    "prefetch_queue_capacity": "prefetching is automatic (tf.data AUTOTUNE); nothing to set",
    "num_queue_threads": "set train_input_reader.num_readers and num_parallel_calls",
}
_READER_FIELDS = {
    "queue_capacity": "set shuffle_buffer",
    "min_after_dequeue": "set shuffle_buffer",
}


def ignored_fields(config: pipeline_pb2.PipelineConfig) -> list[str]:
    """One message per legacy queue field the config sets explicitly (defaults are silent).

    Returns:
      Lines such as ``train_config.batch_queue_capacity is set but has no effect under
      tf.data: ...``, in field order.
    """
    lines = []
    messages = [("train_config", config.train_config, _TRAIN_FIELDS)]
    for reader in ("train_input_reader", "eval_input_reader"):
        messages.append((reader, getattr(config, reader), _READER_FIELDS))
    for path, message, fields in messages:
        for field, advice in fields.items():
            if message.HasField(field):
                lines.append(
                    f"{path}.{field} is set but has no effect under tf.data (it sized the "
                    f"original's TF1 queues): {advice}."
                )
    return lines


def log_ignored_fields(config: pipeline_pb2.PipelineConfig) -> None:
    """Logs :func:`ignored_fields`, one warning line each."""
    for line in ignored_fields(config):
        logging.warning(line)

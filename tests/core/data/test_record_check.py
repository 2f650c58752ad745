"""core.data.record_check: header walk against files TensorFlow wrote, CRC-32C test vector."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core.data import record_check
from dataset_tools import tfrecord_utils


def _unmask(masked: int) -> int:
    rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def test_crc32c_check_value():
    # The CRC-32C check value of RFC 3720 / iSCSI: CRC of b"123456789".
    assert _unmask(record_check.masked_crc32c(b"123456789")) == 0xE3069283


@pytest.fixture()
def record(tmp_path):
    path = str(tmp_path / "r.record")
    with tf.io.TFRecordWriter(path) as writer:
        for payload in (b"a", b"bc" * 100, b""):
            writer.write(payload)
    return path


def test_offsets_of_a_file_tensorflow_wrote(record):
    # Each record: 12-byte header, data, 4-byte data CRC.
    assert record_check.record_offsets(record) == [(12, 1), (17 + 12, 200), (233 + 12, 0)]


def test_truncated_and_foreign_files(record, tmp_path):
    data = open(record, "rb").read()
    truncated = tmp_path / "t.record"
    truncated.write_bytes(data[:-3])
    with pytest.raises(record_check.RecordError, match="truncated in record 2"):
        record_check.record_offsets(str(truncated))
    text = tmp_path / "text.record"
    text.write_bytes(b"hello, this is text and no record at all")
    with pytest.raises(record_check.RecordError, match="is not a TFRecord file"):
        record_check.record_offsets(str(text))


def test_labels_outside_the_classes(tmp_path):
    image = np.zeros((4, 6, 3), np.uint8)
    label = np.full((4, 6), 255, np.uint8)
    label[0, 0], label[1, 1] = 2, 7
    path = str(tmp_path / "labels.record")
    tfrecord_utils.write_sharded(
        [tfrecord_utils.make_example_from_arrays(image, label, "x.png")], path
    )
    record_check.check_record_files([path], num_classes=8)  # 7 < 8, 255 ignored
    with pytest.raises(record_check.RecordError, match=r"x.png\) has label value 7 outside the 5"):
        record_check.check_record_files([path], num_classes=5)
    with pytest.raises(record_check.RecordError, match="value 255"):
        record_check.check_record_files([path], num_classes=8, ignore_label=0)

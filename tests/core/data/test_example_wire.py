"""core.data.example_wire: the bytes features of Examples that TensorFlow serialized."""

from __future__ import annotations

import pytest
import tensorflow as tf

from core.data import example_wire


def test_bytes_features_match_what_tensorflow_wrote():
    feature = {
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x89PNG" * 50])),
        "names": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"a", b"", b"c\xff"])),
        "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[-3, 2**40])),
        "scores": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, 1.5])),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    found = example_wire.bytes_features(example.SerializeToString())
    assert found == {"image/encoded": [b"\x89PNG" * 50], "names": [b"a", b"", b"c\xff"]}


def test_truncated_message_is_a_wire_error():
    example = tf.train.Example(
        features=tf.train.Features(
            feature={"k": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x" * 40]))}
        )
    )
    serialized = example.SerializeToString()
    with pytest.raises(example_wire.WireError):
        example_wire.bytes_features(serialized[:-5])
    with pytest.raises(example_wire.WireError, match="wire type 7"):
        example_wire.fields(bytes([0x0F]))

"""The bytes features of a serialized ``tf.train.Example``, read without TensorFlow.

:mod:`core.data.record_check` looks at a few records before a run; importing TensorFlow's
``example_pb2`` for that would import all of TensorFlow (seconds), which the scripts defer
until flags, config and records are known to be good. An ``Example`` is a small protobuf:

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }   // entries: key = 1, value = 2
    Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                            Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }

so its wire format (varint keys, length-delimited messages) is walked here directly.
"""

from __future__ import annotations

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise WireError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` of every field of one message, in order.

    Length-delimited values are ``bytes`` (nested messages, strings); the others are ints.

    Raises:
      WireError: a truncated field or an unknown wire type.
    """
    position, found = 0, []
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, position = _varint(data, position)
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
            value, position = (
                int.from_bytes(data[position : position + size], "little"),
                (position + size),
            )
        elif wire_type == _LENGTH:
            length, position = _varint(data, position)
            value = data[position : position + length]
            if len(value) != length:
                raise WireError(f"field {number} runs past the end of the message")
            position += length
        else:
            raise WireError(f"field {number} has the unsupported wire type {wire_type}")
        if position > len(data):
            raise WireError(f"field {number} runs past the end of the message")
        found.append((number, value))
    return found


def bytes_features(serialized: bytes) -> dict[str, list[bytes]]:
    """The ``bytes_list`` features of a serialized ``tf.train.Example``: ``{key: values}``.

    Features of other kinds (float, int64) are left out.

    Raises:
      WireError: the bytes are not a serialized ``Example``.
    """
    found: dict[str, list[bytes]] = {}
    for number, features in fields(serialized):
        if number != 1 or not isinstance(features, bytes):
            continue
        for entry_number, entry in fields(features):
            if entry_number != 1 or not isinstance(entry, bytes):
                continue
            key, feature = "", b""
            for part_number, part in fields(entry):
                if part_number == 1 and isinstance(part, bytes):
                    key = part.decode("utf-8", "replace")
                elif part_number == 2 and isinstance(part, bytes):
                    feature = part
            for kind, kind_value in fields(feature):
                if kind == 1 and isinstance(kind_value, bytes):
                    found[key] = [
                        value
                        for value_number, value in fields(kind_value)
                        if value_number == 1 and isinstance(value, bytes)
                    ]
    return found

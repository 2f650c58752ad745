"""Tests of builders.dataset_builder on tiny generated TFRecords."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image

from builders import dataset_builder, preprocessor_builder
from core.data import input_pipeline
from core.data.standard_fields import InputDataFields as Fields
from dataset_tools import tfrecord_utils
from protos import eval_pb2, input_reader_pb2, train_pb2

HEIGHT, WIDTH, NUM_EXAMPLES = 24, 40, 4


def _arrays(index: int, height: int = HEIGHT, width: int = WIDTH):
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.choice(np.array([0, 3, 7, 255], np.uint8), (height, width))
    return image, label


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """4 examples of 24x40 in 2 shards; returns (directory, {filename: (image, label)})."""
    directory = tmp_path_factory.mktemp("records")
    arrays = {f"img_{i}.png": _arrays(i) for i in range(NUM_EXAMPLES)}
    examples = [tfrecord_utils.make_example_from_arrays(*a, name) for name, a in arrays.items()]
    tfrecord_utils.write_sharded(examples, str(directory / "train.record"), num_shards=2)
    return directory, arrays


def _reader(*paths: str, extra: str = "") -> input_reader_pb2.InputReader:
    inputs = " ".join(f"input_path: '{p}'" for p in paths)
    return text_format.Parse(
        f"tf_record_input_reader {{ {inputs} }} {extra}", input_reader_pb2.InputReader()
    )


def _collect(dataset) -> list[dict]:
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def test_round_trip_is_exact_with_dtypes_and_shapes(records):
    directory, arrays = records
    dataset = dataset_builder.build(
        _reader(str(directory / "train.record-*")), batch_size=2, is_training=False
    )
    spec = dataset.element_spec
    assert spec[Fields.input_image].dtype == tf.float32
    assert spec[Fields.groundtruth].dtype == tf.int32
    assert spec[Fields.image_path].dtype == tf.string
    assert spec[Fields.original_height].dtype == tf.int32
    batches = _collect(dataset)
    assert len(batches) == 2
    seen = []
    for batch in batches:
        assert batch[Fields.input_image].shape == (2, HEIGHT, WIDTH, 3)
        assert batch[Fields.groundtruth].shape == (2, HEIGHT, WIDTH, 1)
        assert batch[Fields.image_path].shape == (2,)
        for i, path in enumerate(batch[Fields.image_path]):
            image, label = arrays[path.decode()]
            np.testing.assert_array_equal(batch[Fields.input_image][i], image.astype(np.float32))
            np.testing.assert_array_equal(batch[Fields.groundtruth][i, ..., 0], label)
            assert batch[Fields.original_height][i] == HEIGHT
            assert batch[Fields.original_width][i] == WIDTH
            seen.append(path.decode())
    assert sorted(seen) == sorted(arrays)


def test_multiple_paths_and_globs_are_deduplicated(records):
    directory, arrays = records
    first, second = sorted(str(p) for p in directory.glob("train.record-*"))
    reader = _reader(first, second, str(directory / "train.record-0000?-of-00002"))
    assert input_pipeline.expand_input_paths(reader.tf_record_input_reader.input_path) == [
        first,
        second,
    ]
    reader.num_readers = 2
    batches = _collect(dataset_builder.build(reader, batch_size=1, is_training=False))
    assert sorted(b[Fields.image_path][0].decode() for b in batches) == sorted(arrays)


def test_missing_input_raises_file_not_found_naming_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.record")
    with pytest.raises(FileNotFoundError, match=r"nothing-\*\.record.*dataset_tools"):
        dataset_builder.build(_reader(pattern), batch_size=1)
    with pytest.raises(ValueError, match="input_path is empty"):
        dataset_builder.build(_reader(), batch_size=1)
    with pytest.raises(ValueError, match="tf_record_input_reader"):
        dataset_builder.build(input_reader_pb2.InputReader(), batch_size=1)


def test_invalid_reader_values_raise(records):
    directory, _ = records
    path = str(directory / "train.record-*")
    with pytest.raises(ValueError, match="num_parallel_calls must be >= 1, got 0"):
        dataset_builder.build(_reader(path, extra="num_parallel_calls: 0"), batch_size=1)
    with pytest.raises(ValueError, match="shuffle_buffer"):
        dataset_builder.build(_reader(path, extra="shuffle_buffer: 0"), batch_size=1)
    with pytest.raises(ValueError, match="batch_size"):
        dataset_builder.build(_reader(path), batch_size=0)


def test_training_pipeline_repeats_shuffles_and_has_static_batches(records):
    directory, arrays = records
    train_config = text_format.Parse(
        """
        preprocessor_step { random_image_scale { min_scale_ratio: 0.5 max_scale_ratio: 2.0 } }
        preprocessor_step { random_image_crop { crop_height: 16 crop_width: 16 } }
        preprocessor_step { random_horizontal_flip { } }
        """,
        train_pb2.TrainConfig(),
    )
    preprocess = preprocessor_builder.build(train_config.preprocessor_step)
    reader = _reader(str(directory / "train.record-*"), extra="shuffle_buffer: 8 num_readers: 2")
    dataset = dataset_builder.build(reader, batch_size=3, preprocess_fn=preprocess)
    assert dataset.element_spec[Fields.input_image].shape == (3, 16, 16, 3)
    assert dataset.element_spec[Fields.groundtruth].shape == (3, 16, 16, 1)
    # 4 batches of 3 > 4 examples: the data repeats.
    batches = _collect(dataset.take(4))
    assert len(batches) == 4
    labels = np.concatenate([b[Fields.groundtruth] for b in batches])
    assert set(np.unique(labels)) <= {0, 3, 7, 255}
    assert all(set(b[Fields.original_height]) == {HEIGHT} for b in batches)

    # A seed makes shuffling and augmentation reproducible.
    def first_batch(seed):
        seeded = dataset_builder.build(reader, batch_size=3, preprocess_fn=preprocess, seed=seed)
        return next(iter(seeded))[Fields.input_image].numpy()

    np.testing.assert_array_equal(first_batch(5), first_batch(5))


def test_eval_padding_keeps_original_size(records):
    directory, arrays = records
    eval_config = text_format.Parse(
        "eval_input_type { padded_eval_input { height: 25 width: 41 } }", eval_pb2.EvalConfig()
    )
    dataset = dataset_builder.build_eval_dataset(
        _reader(str(directory / "train.record-*")), eval_config
    )
    batches = _collect(dataset)
    assert len(batches) == NUM_EXAMPLES
    for batch in batches:
        image, label = arrays[batch[Fields.image_path][0].decode()]
        out_image, out_label = batch[Fields.input_image][0], batch[Fields.groundtruth][0, ..., 0]
        assert out_image.shape == (25, 41, 3)
        np.testing.assert_array_equal(out_image[:HEIGHT, :WIDTH], image)
        np.testing.assert_array_equal(out_label[:HEIGHT, :WIDTH], label)
        assert np.all(out_image[HEIGHT:] == 0) and np.all(out_image[:, WIDTH:] == 0)
        assert np.all(out_label[HEIGHT:] == 255) and np.all(out_label[:, WIDTH:] == 255)
        assert batch[Fields.original_height][0] == HEIGHT
        assert batch[Fields.original_width][0] == WIDTH


def test_eval_crop_and_too_small_padding(records):
    directory, arrays = records
    reader = _reader(str(directory / "train.record-*"))
    cropped = text_format.Parse(
        "eval_input_type { cropped_eval_input { height: 8 width: 10 } }", eval_pb2.EvalConfig()
    )
    batch = next(iter(dataset_builder.build_eval_dataset(reader, cropped)))
    image, _ = arrays[batch[Fields.image_path][0].numpy().decode()]
    np.testing.assert_array_equal(batch[Fields.input_image][0].numpy(), image[8:16, 15:25])

    too_small = text_format.Parse(
        "eval_input_type { padded_eval_input { height: 20 width: 41 } }", eval_pb2.EvalConfig()
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"smaller size \[20, 41\]"):
        next(iter(dataset_builder.build_eval_dataset(reader, too_small)))

    zero = text_format.Parse(
        "eval_input_type { padded_eval_input { height: 0 width: 41 } }", eval_pb2.EvalConfig()
    )
    with pytest.raises(ValueError, match=r"padded_eval_input\.height must be > 0"):
        dataset_builder.build_eval_dataset(reader, zero)


def _write(path: str, examples) -> str:
    tfrecord_utils.write_sharded(examples, path)
    return path


def test_jpeg_images_and_mixed_sizes_pad_with_ignore(tmp_path):
    image, label = _arrays(0)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    jpeg_bytes = buffer.getvalue()
    # JPEG is lossy: compare with PIL's decoding of the same bytes.
    expected = np.asarray(Image.open(io.BytesIO(jpeg_bytes)).convert("RGB"), np.float32)
    jpeg = tfrecord_utils.make_example(
        jpeg_bytes, tfrecord_utils.encode_png(label), "a.jpg", HEIGHT, WIDTH
    )
    small = tfrecord_utils.make_example_from_arrays(*_arrays(1, 20, 30), "b.png")
    path = _write(str(tmp_path / "mixed.record"), [jpeg, small])

    batch = next(iter(dataset_builder.build(_reader(path), batch_size=2, is_training=False)))
    images, labels = batch[Fields.input_image].numpy(), batch[Fields.groundtruth].numpy()
    assert images.shape == (2, HEIGHT, WIDTH, 3)
    # Decoders differ slightly (chroma upsampling, IDCT), by a few levels at most.
    assert np.abs(images[0] - expected).mean() < 1.5
    assert np.abs(images[0] - expected).max() <= 8
    np.testing.assert_array_equal(labels[0, ..., 0], label)
    # The smaller example is padded to the batch's largest: image 0, label ignore.
    assert np.all(images[1, 20:] == 0) and np.all(labels[1, 20:] == 255)
    assert np.all(labels[1, :, 30:] == 255)
    assert list(batch[Fields.original_height].numpy()) == [HEIGHT, 20]
    assert list(batch[Fields.original_width].numpy()) == [WIDTH, 30]


def test_corrupt_records_name_the_problem_and_file(tmp_path):
    image, _ = _arrays(0)
    _, wrong_label = _arrays(1, HEIGHT, WIDTH - 1)
    mismatched = tfrecord_utils.make_example(
        tfrecord_utils.encode_png(image),
        tfrecord_utils.encode_png(wrong_label),
        "bad_label.png",
        HEIGHT,
        WIDTH,
    )
    path = _write(str(tmp_path / "mismatch.record"), [mismatched])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label size differs.*bad_label\.png"):
        next(iter(dataset_builder.build(_reader(path), batch_size=1, is_training=False)))

    not_an_image = tfrecord_utils.make_example_from_arrays(*_arrays(2), "garbage.png")
    not_an_image.features.feature["image/encoded"].bytes_list.value[0] = b"not an image"
    path = _write(str(tmp_path / "garbage.record"), [not_an_image])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"neither PNG nor JPEG.*garbage\.png"):
        next(iter(dataset_builder.build(_reader(path), batch_size=1, is_training=False)))

    rgb_label = tfrecord_utils.make_example(
        tfrecord_utils.encode_png(image),
        tfrecord_utils.encode_png(image),  # a colour image where class ids belong
        "rgb_label.png",
        HEIGHT,
        WIDTH,
    )
    path = _write(str(tmp_path / "rgb_label.record"), [rgb_label])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"8-bit greyscale.*\[8 2\].*rgb_label\.png"
    ):
        next(iter(dataset_builder.build(_reader(path), batch_size=1, is_training=False)))

    wrong_size = tfrecord_utils.make_example(
        tfrecord_utils.encode_png(image),
        tfrecord_utils.encode_png(_arrays(0)[1]),
        "wrong_size.png",
        HEIGHT + 1,
        WIDTH,
    )
    path = _write(str(tmp_path / "size.record"), [wrong_size])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image/height.*wrong_size\.png"):
        next(iter(dataset_builder.build(_reader(path), batch_size=1, is_training=False)))

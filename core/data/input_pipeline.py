"""The tf.data input pipeline of segmentation records, from plain values.

Reads segmentation ``tf.train.Example`` records (the original project's keys,
:class:`core.data.standard_fields.TfExampleFields`) and yields batched dictionaries
keyed by :class:`core.data.standard_fields.InputDataFields`:

* ``input_image``: float32 ``[batch, height, width, 3]``, values in [0, 255].
* ``label_mask``: int32 ``[batch, height, width, 1]`` class ids (ignore label included).
* ``input_image_path``: string ``[batch]``, the record's ``image/filename``.
* ``input_image_height`` / ``input_image_width``: int32 ``[batch]``, the size
  of the decoded image before any preprocessing or padding (so evaluation can
  crop predictions back to it).

Stages: file list (globs expanded) -> interleave of ``num_readers`` files ->
shuffle (training) -> repeat -> parallel decode and preprocess -> padded batch
-> prefetch. ``builders.dataset_builder`` reads the configs and calls
:func:`make_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf
from absl import logging

from core.data import preprocessor
from core.data.record_paths import DATASET_TOOLS_HINT, expand_patterns  # noqa: F401 - re-exported
from core.data.standard_fields import IGNORE_LABEL, InputDataFields, TfExampleFields

# (image [H, W, 3] float32, label [H, W, 1] int32[, seed=]) -> (image, label)
PreprocessFn = Callable[..., tuple[tf.Tensor, tf.Tensor]]

# Read-ahead per record file; Cityscapes examples are 2-3 MB each.
_READ_BUFFER_BYTES = 8 * 1024 * 1024


# --------------------------------------------------------------------------- files


def expand_input_paths(patterns: Sequence[str]) -> list[str]:
    """Expands record paths and glob patterns into a sorted list of files.

    The rule is :func:`core.data.record_paths.expand_patterns` on ``tf.io.gfile`` (so ``gs://``
    paths work), the same as the pre-run check of ``runners/input_checks.py``.

    Args:
      patterns: file paths or ``tf.io.gfile.glob`` patterns (``*``, ``?``, ``[...]``).

    Returns:
      The matched files, sorted, without duplicates.

    Raises:
      ValueError: ``patterns`` is empty.
      FileNotFoundError: a pattern matches no file; the message names it.
    """
    return expand_patterns(patterns, exists=tf.io.gfile.exists, glob=tf.io.gfile.glob)


def read_records(
    file_paths: Sequence[str],
    num_readers: int = 1,
    shuffle: bool = False,
    shuffle_buffer: int = 2048,
    num_epochs: int | None = 1,
    seed: int | None = None,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """The serialized records of ``file_paths``, interleaved, shuffled and repeated.

    Args:
      file_paths: record files (already expanded).
      num_readers: files read at once (interleave cycle length), >= 1.
      shuffle: shuffle the file order and the records (buffer ``shuffle_buffer``).
      shuffle_buffer: record shuffle buffer size, >= 1 when shuffling.
      num_epochs: passes over the data; None repeats forever.
      seed: seed of the shuffles; None for a different order on every run.
      deterministic: interleave files in a fixed order; False lets a parallel
        interleave return whichever record is ready first (faster).

    Returns:
      A dataset of scalar tf.string serialized ``tf.train.Example`` records.
    """
    files = tf.data.Dataset.from_tensor_slices(list(file_paths))
    if shuffle and len(file_paths) > 1:
        files = files.shuffle(len(file_paths), seed=seed, reshuffle_each_iteration=True)
    cycle_length = max(1, min(num_readers, len(file_paths)))
    parallel = {}
    if cycle_length > 1:
        parallel = {"num_parallel_calls": cycle_length, "deterministic": deterministic}
    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=_READ_BUFFER_BYTES),
        cycle_length=cycle_length,
        block_length=1,
        **parallel,
    )
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # Repeating after the shuffles re-runs them (file order included) every epoch.
    return records.repeat(num_epochs)


# --------------------------------------------------------------------------- decoding


def _starts_with(data: tf.Tensor, magic: bytes) -> tf.Tensor:
    return tf.equal(tf.strings.substr(data, 0, len(magic)), magic)


def _checked(tensor: tf.Tensor, condition: tf.Tensor, message: list) -> tf.Tensor:
    """``tensor``, evaluated only after ``condition`` held (else InvalidArgumentError)."""
    with tf.control_dependencies([tf.debugging.Assert(condition, message, summarize=8)]):
        return tf.identity(tensor)


def decode_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses and decodes one serialized segmentation example.

    The image may be PNG or JPEG; the label must be an 8-bit greyscale PNG of
    class ids of the same size. A corrupt record raises ``tf.errors.InvalidArgumentError`` whose
    message names the problem and the record's ``image/filename``.

    Args:
      serialized: scalar tf.string, one ``tf.train.Example``.

    Returns:
      A dict keyed by ``InputDataFields``: ``input_image`` float32
      ``[H, W, 3]`` in [0, 255], ``label_mask`` int32 ``[H, W, 1]``,
      ``input_image_path`` scalar string, ``input_image_height`` and
      ``input_image_width`` int32 scalars (the decoded size).
    """
    features = tf.io.parse_single_example(
        serialized,
        {
            TfExampleFields.image_encoded: tf.io.FixedLenFeature([], tf.string),
            TfExampleFields.label_encoded: tf.io.FixedLenFeature([], tf.string),
            TfExampleFields.image_filename: tf.io.FixedLenFeature([], tf.string, ""),
            # 0 means "not recorded"; the original's tool always wrote them.
            TfExampleFields.height: tf.io.FixedLenFeature([], tf.int64, 0),
            TfExampleFields.width: tf.io.FixedLenFeature([], tf.int64, 0),
        },
    )
    filename = features[TfExampleFields.image_filename]
    image_bytes = features[TfExampleFields.image_encoded]
    label_bytes = features[TfExampleFields.label_encoded]

    image_bytes = _checked(
        image_bytes,
        tf.logical_or(
            _starts_with(image_bytes, b"\x89PNG"), _starts_with(image_bytes, b"\xff\xd8")
        ),
        [f"Corrupt record: {TfExampleFields.image_encoded} is neither PNG nor JPEG in", filename],
    )
    label_bytes = _checked(
        label_bytes,
        _starts_with(label_bytes, b"\x89PNG"),
        [f"Corrupt record: {TfExampleFields.label_encoded} is not a PNG in", filename],
    )
    # decode_png(channels=1) would silently turn an RGB or palette label into
    # grey levels, and rescale 1/2/4/16-bit ones, i.e. give wrong class ids. So
    # require an 8-bit greyscale PNG: IHDR bit depth 8 and colour type 0 (bytes
    # 24 and 25 of the file).
    depth_and_colour = tf.io.decode_raw(tf.strings.substr(label_bytes, 24, 2), tf.uint8)
    label_bytes = _checked(
        label_bytes,
        tf.reduce_all(tf.equal(depth_and_colour, tf.constant([8, 0], tf.uint8))),
        [
            f"{TfExampleFields.label_encoded} must be an 8-bit greyscale PNG of class ids; "
            "got PNG [bit depth, colour type] (colour type 2 is RGB, 3 palette, 4/6 alpha):",
            depth_and_colour,
            "in",
            filename,
            "Convert the labels to 8-bit single-channel class-id images when writing the records.",
        ],
    )
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    label = tf.io.decode_png(label_bytes, channels=1)

    image_size = tf.shape(image)[:2]
    label_size = tf.shape(label)[:2]
    label = _checked(
        label,
        tf.reduce_all(tf.equal(image_size, label_size)),
        [
            "Corrupt record: the label size differs from the image size in",
            filename,
            "image [height, width]:",
            image_size,
            "label [height, width]:",
            label_size,
        ],
    )
    recorded_size = tf.cast(
        tf.stack([features[TfExampleFields.height], features[TfExampleFields.width]]), tf.int32
    )
    image = _checked(
        image,
        tf.logical_or(
            tf.reduce_all(tf.equal(recorded_size, 0)),
            tf.reduce_all(tf.equal(recorded_size, image_size)),
        ),
        [
            "Corrupt record: image/height and image/width differ from the decoded image in",
            filename,
            "recorded:",
            recorded_size,
            "decoded:",
            image_size,
        ],
    )
    return {
        InputDataFields.input_image: tf.cast(image, tf.float32),
        InputDataFields.groundtruth: tf.cast(label, tf.int32),
        InputDataFields.image_path: filename,
        InputDataFields.original_height: image_size[0],
        InputDataFields.original_width: image_size[1],
    }


# --------------------------------------------------------------------------- pipeline


def make_dataset(
    file_paths: Sequence[str],
    batch_size: int,
    preprocess_fn: PreprocessFn | None = None,
    shuffle: bool = False,
    shuffle_buffer: int = 2048,
    num_readers: int = 1,
    num_parallel_calls: int | None = None,
    num_epochs: int | None = 1,
    drop_remainder: bool = False,
    ignore_label: int = IGNORE_LABEL,
    seed: int | None = None,
    deterministic: bool = True,
) -> tf.data.Dataset:
    """The batched input pipeline over ``file_paths`` (plain-value core of :func:`build`).

    Args:
      file_paths: record files.
      batch_size: examples per batch, >= 1.
      preprocess_fn: ``(image, label) -> (image, label)`` applied per example
        (see ``builders.preprocessor_builder``); with ``seed`` set it is called
        as ``preprocess_fn(image, label, seed=s)`` with a distinct int64 ``[2]``
        seed per example, which makes the augmentation reproducible.
      shuffle: shuffle files and records.
      shuffle_buffer: record shuffle buffer size.
      num_readers: record files read in parallel.
      num_parallel_calls: examples decoded and preprocessed in parallel; None
        lets tf.data tune it (``AUTOTUNE``).
      num_epochs: passes over the data; None repeats forever.
      drop_remainder: drop a last, smaller batch (gives a static batch size).
      ignore_label: label value for batch padding.
      seed: seed of shuffling and augmentation; None for fresh randomness.
      deterministic: produce elements in a reproducible order.

    Returns:
      A dataset of dicts as described in the module docstring. Examples of
      different sizes in one batch are padded bottom/right to the largest
      (image 0, label ``ignore_label``), as the original's dynamic-pad batching
      did (it padded labels with 0); fix the size with a crop step to avoid it.
    """
    records = read_records(
        file_paths,
        num_readers=num_readers,
        shuffle=shuffle,
        shuffle_buffer=shuffle_buffer,
        num_epochs=num_epochs,
        seed=seed,
        deterministic=deterministic,
    )

    def decode_and_preprocess(index: tf.Tensor, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        tensors = decode_example(serialized)
        if preprocess_fn is None:
            return tensors
        image = tensors[InputDataFields.input_image]
        label = tensors[InputDataFields.groundtruth]
        if seed is None:
            image, label = preprocess_fn(image, label)
        else:
            example_seed = tf.stack([tf.constant(seed, tf.int64), index])
            image, label = preprocess_fn(image, label, seed=example_seed)
        tensors[InputDataFields.input_image] = image
        tensors[InputDataFields.groundtruth] = label
        return tensors

    dataset = records.enumerate().map(
        decode_and_preprocess,
        num_parallel_calls=tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls,
        deterministic=deterministic,
    )
    image_shape = dataset.element_spec[InputDataFields.input_image].shape
    if batch_size > 1 and not image_shape.is_fully_defined():
        logging.info(
            "Examples have no fixed size %s: batches are padded to their largest example "
            "(image 0, label %d). Add a crop step to train on fixed-size inputs.",
            image_shape,
            ignore_label,
        )
    padding_values = {
        InputDataFields.input_image: tf.constant(0.0, tf.float32),
        InputDataFields.groundtruth: tf.constant(ignore_label, tf.int32),
        InputDataFields.image_path: tf.constant("", tf.string),
        InputDataFields.original_height: tf.constant(0, tf.int32),
        InputDataFields.original_width: tf.constant(0, tf.int32),
    }
    dataset = dataset.padded_batch(
        batch_size, padding_values=padding_values, drop_remainder=drop_remainder
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def eval_preprocess_fn(
    input_type: str | None, height: int = 0, width: int = 0, ignore_label: int = IGNORE_LABEL
) -> PreprocessFn | None:
    """The evaluation-time transform for an ``eval_input_type``.

    Args:
      input_type: "padded_eval_input" (pad bottom/right to ``[height, width]``,
        image 0, label ``ignore_label``), "cropped_eval_input" (deterministic
        centre crop of ``[height, width]``) or None (images as they are).
      height: target height, > 0 unless ``input_type`` is None.
      width: target width, > 0 unless ``input_type`` is None.
      ignore_label: label value for padded pixels.

    Returns:
      ``(image, label) -> (image, label)``, or None for no transform.
    """
    if input_type is None:
        return None
    if input_type == "padded_eval_input":
        transform = preprocessor.pad_to_size
    elif input_type == "cropped_eval_input":
        transform = preprocessor.center_crop
    else:
        raise ValueError(
            f"Unknown eval input type {input_type!r}; use padded_eval_input or cropped_eval_input."
        )
    for name, value in (("height", height), ("width", width)):
        if value <= 0:
            raise ValueError(
                f"eval_config.eval_input_type.{input_type}.{name} must be > 0, got {value}."
            )

    def apply(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return transform(image, label, height, width, ignore_label=ignore_label)

    return apply

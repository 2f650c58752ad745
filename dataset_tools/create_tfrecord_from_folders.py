r"""Converts a folder of images and a folder of label images into a TFRecord.

For custom datasets. Usage, from the repository root::

    python dataset_tools/create_tfrecord_from_folders.py \
        --image_dir=data/images --label_dir=data/labels \
        --output_path=data/records/mydata_train.record \
        --num_classes=5 [--label_map=label_map.txt] [--label_suffix=_label]

``python -m dataset_tools.create_tfrecord_from_folders`` works too.

Pairing: an image ``<image_dir>/<sub>/<name>.<ext>`` (``ext`` one of
``--image_suffixes``) pairs with the label ``<label_dir>/<sub>/<name><label_suffix>.png``;
both folders are searched recursively and the relative path without extension
is the key. Unpaired files on either side are an error.

Labels are single-channel PNGs whose values are class ids: 8-bit greyscale,
or palette PNGs, whose palette *indices* are read (not their colours). 255 is
the ignore label. Colour-coded RGB(A) labels are converted to class ids with
``--label_palette`` (``cityscapes`` or a label-map file with colours), or with
the colours of ``--label_map``; see ``dataset_tools/label_colours.py``. Class
names and colours, when given, are written beside the records as
``<output>.label_map.txt`` for a config's ``dataset { label_map_path }``.

``--label_map`` remaps raw label values to class ids. It is a JSON object
(``{"0": 0, "7": 1, "255": 255}``) or a text file of ``raw class`` lines
(``raw: class``, ``raw,class`` and ``raw -> class`` also work; ``#`` starts a
comment); the same file may name and colour the classes for a config's
``dataset { label_map_path }`` (formats: ``core/datasets/label_map.py``, docs/datasets.md). Raw 255 maps to 255 unless the map says otherwise. Raw values the map
does not list are an error by default; ``--unmapped_label=ignore`` maps them to
255 instead.

``--num_classes`` checks that every (mapped) label value is below it or 255.

Images: RGB JPEGs and 8-bit RGB PNGs are stored byte for byte (``image/format``
says which); other images (grey, RGBA, palette, 16-bit, BMP, ...) are converted
to RGB and stored as PNG. EXIF orientation is not applied, by PIL or by
``tf.io.decode_image``, so image and label stay aligned as stored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from core import file_utils  # noqa: E402
from core.data.standard_fields import IGNORE_LABEL  # noqa: E402
from core.datasets import label_map as label_map_files  # noqa: E402
from dataset_tools import label_colours, tfrecord_utils  # noqa: E402
from dataset_tools.tfrecord_utils import DataError  # noqa: E402

if TYPE_CHECKING:
    import tensorflow as tf

DEFAULT_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LABEL_EXTENSION = ".png"
UNMAPPED_POLICIES = ("error", "ignore")
_UNMAPPED = -1


def _walk(directory: str) -> Iterator[tuple[str, str]]:
    """Yields ``(relative path, path)`` of every file under ``directory``, sorted."""
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            yield os.path.relpath(path, directory), path


def find_folder_pairs(
    image_dir: str,
    label_dir: str,
    image_suffixes: Sequence[str] = DEFAULT_IMAGE_SUFFIXES,
    label_suffix: str = "",
) -> list[tuple[str, str]]:
    """Pairs images and labels by their relative path without extension.

    Args:
      image_dir: folder searched recursively for images.
      label_dir: folder searched recursively for ``*<label_suffix>.png`` labels.
      image_suffixes: image file extensions (case-insensitive), e.g. ``(".jpg", ".png")``.
      label_suffix: what the label's name adds before ``.png``: ``"_label"`` pairs
        ``foo.jpg`` with ``foo_label.png``.

    Returns:
      ``(image_path, label_path)`` pairs, sorted by key.

    Raises:
      FileNotFoundError: if a folder is missing or holds no image.
      DataError: for unpaired files or two images with the same key.
    """
    for name, directory in (("--image_dir", image_dir), ("--label_dir", label_dir)):
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{name} {directory} is not a directory")
    same_dir = os.path.realpath(image_dir) == os.path.realpath(label_dir)
    if same_dir and not label_suffix:
        raise DataError(
            f"images and labels share the folder {image_dir}: name the labels <name>_label.png "
            "(say) and pass --label_suffix=_label, or use separate folders"
        )
    suffixes = tuple(s.lower() if s.startswith(".") else "." + s.lower() for s in image_suffixes)
    label_ending = label_suffix + LABEL_EXTENSION

    labels: dict[str, str] = {}
    for relative, path in _walk(label_dir):
        if relative.endswith(label_ending):
            labels[relative[: -len(label_ending)]] = path

    images: dict[str, str] = {}
    for relative, path in _walk(image_dir):
        if same_dir and relative.endswith(label_ending):
            continue
        key, extension = os.path.splitext(relative)
        if extension.lower() not in suffixes:
            continue
        if key in images:
            raise DataError(f"two images have the same name: {images[key]} and {path}")
        images[key] = path
    if not images:
        raise FileNotFoundError(f"no image with a suffix in {suffixes} under {image_dir}")

    missing = sorted(set(images) - set(labels))
    if missing:
        key = missing[0]
        raise DataError(
            f"{len(missing)} image(s) have no label, e.g. {images[key]}: expected "
            f"{os.path.join(label_dir, key + label_ending)} (check --label_dir and --label_suffix)"
        )
    orphans = sorted(set(labels) - set(images))
    if orphans:
        key = orphans[0]
        raise DataError(
            f"{len(orphans)} label(s) have no image, e.g. {labels[key]}: expected an image "
            f"{os.path.join(image_dir, key)}.<{'|'.join(s[1:] for s in suffixes)}> "
            "(check --image_dir, --image_suffixes and --label_suffix)"
        )
    return [(images[key], labels[key]) for key in sorted(images)]


def load_label_map(path: str) -> dict[int, int]:
    """Reads a raw label value -> class id map from a JSON or text file.

    The formats (and the class names and colours they may also hold, for a config's
    ``dataset { label_map_path }``) are :mod:`core.datasets.label_map`'s.

    Returns:
      ``{raw: class}`` with both in 0..255.

    Raises:
      FileNotFoundError: if the file is missing.
      DataError: for a malformed file, values outside 0..255 or a raw value
        listed twice.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--label_map {path} does not exist")
    try:
        return dict(label_map_files.load_label_map(path).mapping)
    except label_map_files.LabelMapError as error:
        raise DataError(str(error)) from None


def build_lookup_table(label_map: Mapping[int, int] | None) -> np.ndarray:
    """Turns a label map into a 256-entry lookup table.

    Args:
      label_map: ``{raw: class}``, or None for the identity.

    Returns:
      ``[256]`` int16 table; -1 marks raw values the map does not list. Raw 255
      maps to 255 unless the map lists it.
    """
    if label_map is None:
        return np.arange(256, dtype=np.int16)
    table = np.full(256, _UNMAPPED, dtype=np.int16)
    table[IGNORE_LABEL] = IGNORE_LABEL
    for raw, value in label_map.items():
        table[raw] = value
    return table


def map_label(
    label: np.ndarray,
    table: np.ndarray,
    path: str,
    unmapped: str = "error",
    num_classes: int | None = None,
) -> np.ndarray:
    """Applies the lookup table to a label image and checks the result.

    Args:
      label: ``[height, width]`` uint8 raw label values.
      table: ``[256]`` int16 table from :func:`build_lookup_table`.
      path: the label file, for error messages.
      unmapped: ``"error"`` or ``"ignore"`` (unlisted raw values become 255).
      num_classes: if given, every mapped value must be below it or 255.

    Returns:
      ``[height, width]`` uint8 class ids (255 ignore).

    Raises:
      DataError: for unmapped values (with ``unmapped="error"``) or values out of range.
    """
    mapped = table[label]
    missing = mapped == _UNMAPPED
    if missing.any():
        if unmapped == "error":
            values = np.unique(label[missing]).tolist()
            raise DataError(
                f"{path}: raw label values {values[:20]} are not in the label map; add them "
                "to --label_map or pass --unmapped_label=ignore to map them to 255"
            )
        mapped[missing] = IGNORE_LABEL
    result = mapped.astype(np.uint8)
    if num_classes is not None:
        bad = (result >= num_classes) & (result != IGNORE_LABEL)
        if bad.any():
            values = np.unique(result[bad]).tolist()
            raise DataError(
                f"{path}: label values {values[:20]} are >= --num_classes={num_classes} and not "
                f"the ignore label {IGNORE_LABEL}; fix the labels, raise --num_classes or "
                "remap them with --label_map"
            )
    return result


def _examples(
    pairs: Sequence[tuple[str, str]],
    table: np.ndarray,
    unmapped: str,
    num_classes: int | None,
    palette: label_colours.ColourPalette | None = None,
) -> Iterator[tf.train.Example]:
    progress = tfrecord_utils.ProgressLogger(len(pairs))
    identity = build_lookup_table(None)
    for image_path, label_path in pairs:
        image_bytes, height, width = tfrecord_utils.load_rgb_image(image_path)
        raw, are_ids = label_colours.load_label(label_path, palette, unmapped)
        if raw.shape != (height, width):
            raise DataError(
                f"size mismatch: image {image_path} is {width}x{height} (WxH) but label "
                f"{label_path} is {raw.shape[1]}x{raw.shape[0]}"
            )
        # Colours convert straight to class ids; the label map remaps raw values only.
        label = map_label(raw, identity if are_ids else table, label_path, unmapped, num_classes)
        yield tfrecord_utils.make_example(
            image_bytes, tfrecord_utils.encode_png(label), image_path, height, width
        )
        progress.step()


def convert_folders(
    image_dir: str,
    label_dir: str,
    output_path: str,
    num_shards: int = 1,
    label_map_path: str | None = None,
    unmapped: str = "error",
    num_classes: int | None = None,
    image_suffixes: Sequence[str] = DEFAULT_IMAGE_SUFFIXES,
    label_suffix: str = "",
    label_palette: str | None = None,
) -> list[str]:
    """Converts paired image and label folders into record file(s).

    When the classes are described (``label_palette``, or a label map with names or colours),
    their names and colours are written beside the records as a label map
    (``label_colours.metadata_path``) that a config reads with
    ``dataset { label_map_path: "..." }``.

    Args:
      image_dir: image folder (searched recursively).
      label_dir: label folder (searched recursively); may equal ``image_dir``
        when ``label_suffix`` is set.
      output_path: record file; with ``num_shards > 1`` the shards are
        ``<output_path>-0000i-of-0000N``.
      num_shards: number of output files.
      label_map_path: optional JSON/text raw value -> class id map.
      unmapped: what unlisted raw values do: ``"error"`` or ``"ignore"`` (-> 255).
      num_classes: if given, check every class id is below it or 255.
      image_suffixes: image extensions to pick up.
      label_suffix: added to the image's name to get the label's (before ``.png``).
      label_palette: colours of colour-coded (RGB) labels: a registered dataset's name or a
        label-map file with colours; default: the colours of the label map, if it gives any.

    Returns:
      The paths of the written record files (and the label map beside them, if written).
    """
    if unmapped not in UNMAPPED_POLICIES:
        raise ValueError(f"--unmapped_label must be one of {UNMAPPED_POLICIES}, got {unmapped!r}")
    if num_classes is not None and not 1 <= num_classes <= 255:
        raise ValueError(
            f"--num_classes must be in 1..255 (255 is the ignore label), got {num_classes}"
        )
    pairs = find_folder_pairs(image_dir, label_dir, image_suffixes, label_suffix)
    label_map = load_label_map(label_map_path) if label_map_path else None
    table = build_lookup_table(label_map)
    palette, metadata = label_colours.palette_and_metadata(
        label_palette, label_map_path, num_classes
    )
    logging.info("Converting %d image/label pairs from %s and %s", len(pairs), image_dir, label_dir)
    from dataset_tools import tfrecord_utils  # noqa: PLC0415 - imports TensorFlow

    paths = tfrecord_utils.write_sharded(
        _examples(pairs, table, unmapped, num_classes, palette), output_path, num_shards
    )
    if metadata is not None:
        described = file_utils.atomic_write_text(
            label_colours.metadata_path(output_path), label_map_files.format_label_map(metadata)
        )
        paths.append(described)
        logging.info(
            'Classes of the records in %s; point a config at it: dataset { label_map_path: "%s" }',
            described,
            described,
        )
    logging.info("Wrote %s", ", ".join(paths))
    return paths


def _define_flags() -> None:
    flags.DEFINE_string("image_dir", None, "Folder of images (searched recursively).")
    flags.DEFINE_string("label_dir", None, "Folder of single-channel label PNGs.")
    flags.DEFINE_string("output_path", None, "Record file to write.")
    flags.DEFINE_integer("num_shards", 1, "Number of output files (<output_path>-0000i-of-0000N).")
    flags.DEFINE_string("label_map", None, "JSON or text file mapping raw label values to ids.")
    flags.DEFINE_enum(
        "unmapped_label",
        "error",
        list(UNMAPPED_POLICIES),
        "Raw label values missing from --label_map, or label colours missing from the palette: "
        "stop with an error, or map them to 255.",
    )
    flags.DEFINE_string(
        "label_palette",
        None,
        "Colour-coded (RGB) labels: the class colours, a dataset name (cityscapes) or a label-map "
        "file with colours (default: the colours of --label_map). Names and colours are written "
        "beside the records as <output>.label_map.txt.",
    )
    flags.DEFINE_integer("num_classes", None, "If set, every label value must be < it or 255.")
    flags.DEFINE_list("image_suffixes", list(DEFAULT_IMAGE_SUFFIXES), "Image file extensions.")
    flags.DEFINE_string("label_suffix", "", "Label name = image name + this + .png.")
    for name in ("image_dir", "label_dir", "output_path"):
        flags.mark_flag_as_required(name)


def main(argv: Sequence[str]) -> None:
    del argv
    flag_values = flags.FLAGS
    convert_folders(
        image_dir=flag_values.image_dir,
        label_dir=flag_values.label_dir,
        output_path=flag_values.output_path,
        num_shards=flag_values.num_shards,
        label_map_path=flag_values.label_map,
        unmapped=flag_values.unmapped_label,
        num_classes=flag_values.num_classes,
        image_suffixes=flag_values.image_suffixes,
        label_suffix=flag_values.label_suffix,
        label_palette=flag_values.label_palette,
    )


if __name__ == "__main__":
    from runners import cli

    _define_flags()
    cli.run_main(main, extra_errors=(ValueError,))  # one line per mistake (ValueErrors name it)

r"""Converts a Cityscapes split into a TFRecord of segmentation examples.

Usage, from the repository root::

    python dataset_tools/create_cityscapes_tfrecord.py \
        --cityscapes_dir=/data/cityscapes --split_type=train --output_dir=/data/records

writes ``/data/records/cityscapes_train.record`` (or ``--num_shards`` shards named
``cityscapes_train.record-0000i-of-0000N``). ``python -m
dataset_tools.create_cityscapes_tfrecord`` works too.

Images are ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` and labels
``gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png``, paired by their
``<city>_<seq>_<frame>`` stem. Where a ``labelTrainIds`` file is absent the
``labelIds`` file is read and mapped to train ids here (19 classes, everything
else 255), so cityscapesScripts is not needed. ``--input_pattern`` and
``--annot_pattern`` replace the two globs, as in the original tool.

Each record holds the image PNG unchanged, the train-id label as a PNG and the
original project's feature keys (``core.data.standard_fields.TfExampleFields``).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from core.data import standard_fields  # noqa: E402
from dataset_tools import tfrecord_utils  # noqa: E402
from dataset_tools.tfrecord_utils import DataError  # noqa: E402

if TYPE_CHECKING:
    import tensorflow as tf

SPLITS = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
_IMAGE_NAME = re.compile(r"^(?P<stem>.+)_leftImg8bit\.png$")
# gtCoarse is accepted too, for --annot_pattern users.
_LABEL_NAME = re.compile(r"^(?P<stem>.+)_gt(?:Fine|Coarse)_label(?P<kind>TrainIds|Ids)\.png$")

TRAIN_IDS = "trainIds"
LABEL_IDS = "labelIds"


@dataclasses.dataclass(frozen=True)
class Pair:
    """One image and its label file.

    Attributes:
      stem: ``<city>_<seq>_<frame>``, shared by both file names.
      image_path: the ``*_leftImg8bit.png`` file.
      label_path: the ``*_labelTrainIds.png`` or ``*_labelIds.png`` file.
      label_kind: ``"trainIds"`` (stored as is) or ``"labelIds"`` (mapped to train ids).
    """

    stem: str
    image_path: str
    label_path: str
    label_kind: str


def labelid_to_trainid_table() -> np.ndarray:
    """The full labelId -> trainId lookup table.

    Returns:
      ``[256]`` uint8 array: the 19 evaluated label ids map to train ids 0..18,
      every other value to ``IGNORE_LABEL`` (255). The license plate's label
      id -1 cannot occur in an 8-bit PNG, so it needs no entry.
    """
    table = np.full(256, standard_fields.IGNORE_LABEL, dtype=np.uint8)
    label_ids = standard_fields.CITYSCAPES_TRAIN_ID_TO_LABEL_ID
    table[np.asarray(label_ids)] = np.arange(len(label_ids), dtype=np.uint8)
    return table


_LABELID_TO_TRAINID = labelid_to_trainid_table()
_VALID_TRAIN_IDS = np.zeros(256, dtype=bool)
_VALID_TRAIN_IDS[: len(standard_fields.CITYSCAPES_CLASS_NAMES)] = True
_VALID_TRAIN_IDS[standard_fields.IGNORE_LABEL] = True


def labelids_to_trainids(label_ids: np.ndarray) -> np.ndarray:
    """Maps a Cityscapes labelIds image to train ids.

    Args:
      label_ids: ``[height, width]`` uint8 label ids (0..33).

    Returns:
      ``[height, width]`` uint8 train ids: 0..18, or 255 for ignored pixels.
    """
    return _LABELID_TO_TRAINID[label_ids]


def split_patterns(cityscapes_dir: str, split_type: str) -> tuple[str, str]:
    """The image and label globs of a split of the standard Cityscapes layout.

    The label glob matches both ``labelTrainIds`` and ``labelIds`` files; which
    is used is decided per stem by :func:`find_pairs`.
    """
    if split_type not in SPLITS:
        raise ValueError(f"split_type must be one of {SPLITS}, got {split_type!r}")
    image_pattern = os.path.join(cityscapes_dir, "leftImg8bit", split_type, "*", "*" + IMAGE_SUFFIX)
    label_pattern = os.path.join(
        cityscapes_dir, "gtFine", split_type, "*", "*_gtFine_label*Ids.png"
    )
    return image_pattern, label_pattern


def find_pairs(
    image_paths: Sequence[str],
    label_paths: Sequence[str],
    expected_label_dir: str | None = None,
) -> list[Pair]:
    """Pairs images and labels by their ``<city>_<seq>_<frame>`` stem.

    Files whose names are not Cityscapes image or label names (colour,
    instance or polygon annotations, stray files) are ignored. For a stem with
    both a ``labelTrainIds`` and a ``labelIds`` file the ``labelTrainIds`` file
    wins.

    Args:
      image_paths: candidate ``*_leftImg8bit.png`` paths, in any order.
      label_paths: candidate ``*_gt{Fine,Coarse}_label{TrainIds,Ids}.png`` paths.
      expected_label_dir: the ``gtFine/<split>`` folder, only used to name the
        missing file in the error for an image without a label.

    Returns:
      The pairs, sorted by stem.

    Raises:
      DataError: for an image without a label, a label without an image, or
        two files of one kind with the same stem.
    """
    images: dict[str, str] = {}
    for path in image_paths:
        match = _IMAGE_NAME.match(os.path.basename(path))
        if match is None:
            continue
        stem = match.group("stem")
        if stem in images:
            raise DataError(f"two images have the stem {stem!r}: {images[stem]} and {path}")
        images[stem] = path

    labels: dict[str, dict[str, str]] = {}
    for path in label_paths:
        match = _LABEL_NAME.match(os.path.basename(path))
        if match is None:
            continue
        stem = match.group("stem")
        kind = TRAIN_IDS if match.group("kind") == "TrainIds" else LABEL_IDS
        by_kind = labels.setdefault(stem, {})
        if kind in by_kind:
            raise DataError(f"two {kind} labels have the stem {stem!r}: {by_kind[kind]} and {path}")
        by_kind[kind] = path

    orphans = sorted(set(labels) - set(images))
    if orphans:
        first = labels[orphans[0]]
        raise DataError(
            f"{len(orphans)} label file(s) have no image, e.g. "
            f"{first.get(TRAIN_IDS) or first[LABEL_IDS]} (expected an image named "
            f"{orphans[0]}{IMAGE_SUFFIX}); add the image or remove the label"
        )

    pairs = []
    for stem in sorted(images):
        by_kind = labels.get(stem)
        if not by_kind:
            image_path = images[stem]
            if expected_label_dir is not None:
                city = os.path.basename(os.path.dirname(image_path))
                expected = os.path.join(expected_label_dir, city, stem + TRAIN_IDS_SUFFIX)
            else:
                expected = stem + TRAIN_IDS_SUFFIX
            raise DataError(
                f"image {image_path} has no label: expected {expected} "
                f"(or {stem}{LABEL_IDS_SUFFIX} next to it)"
            )
        kind = TRAIN_IDS if TRAIN_IDS in by_kind else LABEL_IDS
        pairs.append(Pair(stem, images[stem], by_kind[kind], kind))
    return pairs


def load_trainid_label(pair: Pair) -> np.ndarray:
    """Reads the label of a pair as train ids.

    Returns:
      ``[height, width]`` uint8 train ids (0..18, 255 ignore).

    Raises:
      DataError: if a ``labelTrainIds`` file holds values that are not train
        ids (a labelIds image saved under the wrong name, say).
    """
    label = tfrecord_utils.read_label_indices(pair.label_path)
    if pair.label_kind == LABEL_IDS:
        return labelids_to_trainids(label)
    bad = ~_VALID_TRAIN_IDS[label]
    if bad.any():
        values = np.unique(label[bad])[:10].tolist()
        raise DataError(
            f"{pair.label_path}: values {values} are not train ids (0..18 or 255); "
            "is it a labelIds image? Rename it to *_gtFine_labelIds.png to have it mapped"
        )
    return label


def pair_to_example(pair: Pair) -> tf.train.Example:
    """Builds the record example of one pair.

    Raises:
      DataError: if the image and label sizes differ.
    """
    image_bytes, height, width = tfrecord_utils.load_rgb_image(pair.image_path)
    label = load_trainid_label(pair)
    if label.shape != (height, width):
        raise DataError(
            f"size mismatch: image {pair.image_path} is {width}x{height} (WxH) but label "
            f"{pair.label_path} is {label.shape[1]}x{label.shape[0]}"
        )
    return tfrecord_utils.make_example(
        image_bytes, tfrecord_utils.encode_png(label), pair.image_path, height, width
    )


def _examples(pairs: Sequence[Pair]) -> Iterator[tf.train.Example]:
    progress = tfrecord_utils.ProgressLogger(len(pairs))
    for pair in pairs:
        yield pair_to_example(pair)
        progress.step()


def convert(
    output_dir: str,
    split_type: str,
    cityscapes_dir: str | None = None,
    input_pattern: str | None = None,
    annot_pattern: str | None = None,
    num_shards: int = 1,
) -> list[str]:
    """Converts one Cityscapes split to ``<output_dir>/cityscapes_<split_type>.record``.

    Args:
      output_dir: where the record file(s) go; created if missing.
      split_type: ``"train"``, ``"val"`` or ``"test"``; names the output and,
        with ``cityscapes_dir``, the input folders.
      cityscapes_dir: root holding ``leftImg8bit/`` and ``gtFine/``.
      input_pattern: image glob, used instead of ``cityscapes_dir``.
      annot_pattern: label glob, used instead of ``cityscapes_dir``.
      num_shards: number of output files (round-robin); 1 writes one file
        under the plain name.

    Returns:
      The paths of the written record files.

    Raises:
      ValueError: for a bad flag combination.
      FileNotFoundError: if the globs match no image.
      DataError: for unpaired files, size mismatches or bad label values.
    """
    if split_type not in SPLITS:
        raise ValueError(f"--split_type must be one of {SPLITS}, got {split_type!r}")
    label_dir = None
    if cityscapes_dir:
        if input_pattern or annot_pattern:
            raise ValueError("give either --cityscapes_dir or --input_pattern/--annot_pattern")
        if not os.path.isdir(cityscapes_dir):
            raise FileNotFoundError(f"--cityscapes_dir {cityscapes_dir} is not a directory")
        input_pattern, annot_pattern = split_patterns(cityscapes_dir, split_type)
        label_dir = os.path.join(cityscapes_dir, "gtFine", split_type)
    elif not (input_pattern and annot_pattern):
        raise ValueError("give --cityscapes_dir, or both --input_pattern and --annot_pattern")

    image_paths = sorted(glob.glob(input_pattern))
    label_paths = sorted(glob.glob(annot_pattern))
    if not image_paths:
        raise FileNotFoundError(
            f"no images found: {input_pattern} matched nothing. Expected the Cityscapes layout "
            f"leftImg8bit/{split_type}/<city>/<city>_<seq>_<frame>_leftImg8bit.png"
        )
    if not label_paths:
        raise FileNotFoundError(
            f"no labels found: {annot_pattern} matched nothing. Expected "
            f"gtFine/{split_type}/<city>/<stem>{TRAIN_IDS_SUFFIX} or <stem>{LABEL_IDS_SUFFIX}"
        )
    pairs = find_pairs(image_paths, label_paths, expected_label_dir=label_dir)
    if not pairs:
        raise FileNotFoundError(
            f"{input_pattern} matched {len(image_paths)} file(s) but none is named *{IMAGE_SUFFIX}"
        )
    mapped = sum(pair.label_kind == LABEL_IDS for pair in pairs)
    logging.info(
        "Converting %d %s pairs (%d labels mapped from labelIds, %d from labelTrainIds)",
        len(pairs),
        split_type,
        mapped,
        len(pairs) - mapped,
    )
    output_path = os.path.join(output_dir, f"cityscapes_{split_type}.record")
    paths = tfrecord_utils.write_sharded(_examples(pairs), output_path, num_shards)
    logging.info("Wrote %s", ", ".join(paths))
    return paths


def _define_flags() -> None:
    flags.DEFINE_string("cityscapes_dir", None, "Cityscapes root (holds leftImg8bit/ and gtFine/).")
    flags.DEFINE_enum("split_type", "train", list(SPLITS), "Split to convert.")
    flags.DEFINE_string("output_dir", None, "Folder for cityscapes_<split_type>.record.")
    flags.DEFINE_string("input_pattern", None, "Image glob, instead of --cityscapes_dir.")
    flags.DEFINE_string("annot_pattern", None, "Label glob, instead of --cityscapes_dir.")
    flags.DEFINE_integer(
        "num_shards", 1, "Number of output files; 1 writes the single file the configs name."
    )
    flags.mark_flag_as_required("output_dir")


def main(argv: Sequence[str]) -> None:
    del argv
    flag_values = flags.FLAGS
    convert(
        output_dir=flag_values.output_dir,
        split_type=flag_values.split_type,
        cityscapes_dir=flag_values.cityscapes_dir,
        input_pattern=flag_values.input_pattern,
        annot_pattern=flag_values.annot_pattern,
        num_shards=flag_values.num_shards,
    )


if __name__ == "__main__":
    from runners import cli

    _define_flags()
    cli.run_main(main, extra_errors=(ValueError,))  # one line per mistake (ValueErrors name it)

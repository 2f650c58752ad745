"""Colour-coded label images -> class ids, with a palette from a dataset or a label map.

Many datasets ship their labels as RGB PNGs where each class has a colour (Cityscapes'
``*_gtFine_color.png``, CamVid, most annotation tools). ``create_tfrecord_from_folders.py
--label_palette`` (or the colours of its ``--label_map``) converts them:

* ``--label_palette=cityscapes`` (any registered dataset, ``core.datasets.DATASETS``) takes the
  dataset's class colours; for Cityscapes the colours of its non-evaluated classes (parking,
  ground, ...) map to the ignore label 255, as its ``labelTrainIds`` files do;
* ``--label_palette=FILE`` takes a label-map file (``core/datasets/label_map.py``) whose class
  lines give a colour, e.g. ``10 0 grass 0,200,0``;
* black (0, 0, 0) is the ignore label unless a class is black (this project draws 255 black).

A colour that is in no palette stops the conversion with the file, the colour and the first pixel
position; ``--unmapped_label=ignore`` maps such pixels to 255 instead. Palette (``P``) PNGs keep
being read as indices: their colours are only a display aid.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image

from core.data.standard_fields import IGNORE_LABEL
from core.datasets import DATASETS, DatasetMetadata, LabelMap, LabelMapError, load_label_map
from core.datasets.metadata import generic_palette
from dataset_tools.tfrecord_utils import DataError

# cityscapesScripts helpers/labels.py: colours of the classes whose trainId is 255. Polegroup
# and license plate share the colours of pole and car, so they convert to those classes.
CITYSCAPES_IGNORED_COLOURS = (
    (111, 74, 0),  # dynamic
    (81, 0, 81),  # ground
    (250, 170, 160),  # parking
    (230, 150, 140),  # rail track
    (180, 165, 180),  # guard rail
    (150, 100, 100),  # bridge
    (150, 120, 90),  # tunnel
    (0, 0, 90),  # caravan
    (0, 0, 110),  # trailer
)
_EXTRA_IGNORED = {"cityscapes": CITYSCAPES_IGNORED_COLOURS}
BLACK = (0, 0, 0)
COLOUR_MODES = ("RGB", "RGBA")


@dataclasses.dataclass(frozen=True)
class ColourPalette:
    """Which colour is which class.

    Attributes:
      source: where it came from (a dataset name or a file), for messages.
      codes: ``[K]`` int64 sorted colour codes ``R << 16 | G << 8 | B``.
      class_ids: ``[K]`` uint8 class id of each code (255: ignore).
      metadata: the classes' names and colours, for the records' dataset metadata.
    """

    source: str
    codes: np.ndarray
    class_ids: np.ndarray
    metadata: DatasetMetadata


def colour_codes(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3]`` uint8 colours -> ``[...]`` int64 codes ``R << 16 | G << 8 | B``."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _build(
    source: str, colours: dict[int, tuple[int, int, int]], ignored, metadata
) -> ColourPalette:
    """A palette of ``{class id: colour}`` plus ``ignored`` colours (and black) -> 255."""
    by_code: dict[int, int] = {}
    for class_id, colour in sorted(colours.items()):
        code = int(colour_codes(np.asarray(colour, np.uint8)))
        if code in by_code:
            raise DataError(
                f"--label_palette {source}: classes {by_code[code]} and {class_id} have the same "
                f"colour {tuple(colour)}; give each class its own colour."
            )
        by_code[code] = class_id
    for colour in (*ignored, BLACK):
        by_code.setdefault(int(colour_codes(np.asarray(colour, np.uint8))), IGNORE_LABEL)
    codes = np.array(sorted(by_code), dtype=np.int64)
    class_ids = np.array([by_code[code] for code in codes], dtype=np.uint8)
    return ColourPalette(source, codes, class_ids, metadata)


def palette_from_metadata(metadata: DatasetMetadata, source: str) -> ColourPalette:
    """The palette of a dataset's metadata (every class has a colour)."""
    colours = dict(enumerate(metadata.palette))
    return _build(source, colours, _EXTRA_IGNORED.get(source, ()), metadata)


def palette_from_label_map(label_map: LabelMap) -> ColourPalette | None:
    """The palette of the classes a label map gives a colour; None if it gives none."""
    colours = {i: spec.colour for i, spec in label_map.classes.items() if spec.colour is not None}
    if not colours:
        return None
    try:
        metadata = label_map.to_metadata()
    except LabelMapError as error:
        raise DataError(str(error)) from None
    return _build(label_map.source, colours, (), metadata)


def load_palette(spec: str) -> ColourPalette:
    """``--label_palette``: a registered dataset's name or a label-map file with colours.

    Raises:
      DataError: neither a known dataset nor a file, a malformed file, or a file that gives no
        class a colour.
    """
    if spec in DATASETS:
        return palette_from_metadata(DATASETS.get(spec), spec)
    if not os.path.isfile(spec):
        raise DataError(
            f"--label_palette {spec!r} is neither a known dataset ({', '.join(DATASETS.names())}) "
            "nor an existing label-map file; see docs/datasets.md for the file format."
        )
    try:
        palette = palette_from_label_map(load_label_map(spec))
    except LabelMapError as error:
        raise DataError(str(error)) from None
    if palette is None:
        raise DataError(
            f"--label_palette {spec}: gives no class a colour; write lines like "
            "'raw class name R,G,B' (e.g. '10 0 grass 0,200,0')."
        )
    return palette


def colours_to_ids(
    rgb: np.ndarray, palette: ColourPalette, path: str, unmapped: str = "error"
) -> np.ndarray:
    """Converts a colour-coded label image to class ids.

    Args:
      rgb: ``[height, width, 3]`` uint8 colours.
      palette: the colours of the classes.
      path: the label file, for messages.
      unmapped: ``"error"`` stops at a colour that is in no palette, ``"ignore"`` maps it to 255.

    Returns:
      ``[height, width]`` uint8 class ids (255: ignore).

    Raises:
      DataError: a colour in no palette (with ``unmapped="error"``): names the file, the colour
        and the first pixel (x, y) that has it.
    """
    codes = colour_codes(rgb)
    index = np.clip(np.searchsorted(palette.codes, codes), 0, len(palette.codes) - 1)
    known = palette.codes[index] == codes
    ids = palette.class_ids[index]
    if known.all():
        return ids
    if unmapped != "error":
        ids[~known] = IGNORE_LABEL
        return ids
    y, x = (int(v[0]) for v in np.nonzero(~known))
    colour = tuple(int(v) for v in rgb[y, x])
    count = int(np.count_nonzero(~known))
    others = len(np.unique(codes[~known])) - 1
    hex_colour = "#{:02X}{:02X}{:02X}".format(*colour)
    raise DataError(
        f"{path}: pixel (x={x}, y={y}) has colour {colour} ({hex_colour}), which is not in the "
        f"palette of {palette.source} ({count} such pixels, {others} other unknown colours); add "
        "the colour to the palette (a label-map line 'raw class name R,G,B') or pass "
        "--unmapped_label=ignore to map unknown colours to 255."
    )


def load_label(path: str, palette: ColourPalette | None, unmapped: str) -> tuple[np.ndarray, bool]:
    """Reads a label image: class ids of a colour-coded one, raw values of any other.

    Returns:
      ``([height, width] uint8, True)`` for a colour label converted with ``palette``, or
      ``(raw values, False)`` for a single-channel one (``tfrecord_utils.read_label_indices``).

    Raises:
      DataError: an unreadable file, a colour label without a palette, or an unknown colour.
    """
    from dataset_tools.tfrecord_utils import read_label_indices  # noqa: PLC0415 - one module

    try:
        with Image.open(path) as image:
            mode = image.mode
            colour = mode in COLOUR_MODES
            rgb = np.asarray(image.convert("RGB")) if colour and palette is not None else None
    except (OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot read the label image ({error})") from error
    if colour and palette is None:
        raise DataError(
            f"{path}: label image is colour-coded ({mode}) and no palette is given; labels must "
            "be single-channel class ids (greyscale or palette PNG), or pass --label_palette "
            "(a dataset name such as cityscapes, or a label-map file that gives each class its "
            "colour) or a --label_map whose class lines have colours to convert the colours."
        )
    if rgb is not None:
        return colours_to_ids(rgb, palette, path, unmapped), True
    return read_label_indices(path), False


def records_metadata(
    metadata: DatasetMetadata, num_classes: int | None, source: str
) -> DatasetMetadata:
    """``metadata`` fitted to ``--num_classes``: generic classes added up to it.

    Raises:
      DataError: the palette or label map has more classes than ``num_classes``.
    """
    if num_classes is None or num_classes == metadata.num_classes:
        return metadata
    if num_classes < metadata.num_classes:
        raise DataError(
            f"{source} describes {metadata.num_classes} classes but --num_classes={num_classes}; "
            "raise --num_classes or remove the extra classes."
        )
    generic = generic_palette(num_classes)
    extra = range(metadata.num_classes, num_classes)
    label_ids = metadata.label_ids and (*metadata.label_ids, *extra)
    return dataclasses.replace(
        metadata,
        class_names=(*metadata.class_names, *(f"class_{i}" for i in extra)),
        palette=(*metadata.palette, *(generic[i] for i in extra)),
        label_ids=label_ids,
    )


def palette_and_metadata(
    label_palette: str | None, label_map_path: str | None, num_classes: int | None
) -> tuple[ColourPalette | None, DatasetMetadata | None]:
    """The colour palette (None: colour labels are refused) and the classes to write, if any.

    Args:
      label_palette: ``--label_palette`` (see :func:`load_palette`), or None.
      label_map_path: ``--label_map``: its colours are the palette when there is no
        ``label_palette``; its names and colours are the classes.
      num_classes: ``--num_classes``: the classes are padded to it (see :func:`records_metadata`).

    Raises:
      DataError: a bad palette or label map, or more classes than ``num_classes``.
    """
    if label_palette:
        palette = load_palette(label_palette)
        source = f"--label_palette {label_palette}"
        return palette, records_metadata(palette.metadata, num_classes, source)
    if not label_map_path:
        return None, None
    try:
        label_map = load_label_map(label_map_path)
        palette = palette_from_label_map(label_map)
        metadata = label_map.to_metadata() if label_map.classes else None
    except LabelMapError as error:
        raise DataError(str(error)) from None
    if metadata is not None:
        metadata = records_metadata(metadata, num_classes, f"--label_map {label_map_path}")
    return palette, metadata


def metadata_path(output_path: str) -> str:
    """Where the records' label map goes: ``data/x_train.record`` -> ``data/x_train.label_map.txt``."""
    stem, extension = os.path.splitext(output_path)
    return (stem if extension in (".record", ".tfrecord") else output_path) + ".label_map.txt"

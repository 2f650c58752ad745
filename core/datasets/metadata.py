"""What a dataset is to the rest of the code: class names, colours, ignore label, official ids.

A :class:`DatasetMetadata` travels from the config (``PipelineConfig.dataset``, read by
``builders.dataset_metadata_builder``) to everything that shows or writes classes: eval.py's
per-class table and metrics JSON, TensorBoard images, inference.py's overlays and label-id PNGs,
the Cityscapes-style prediction writer. Nothing infers a dataset from a class count except
:func:`default_metadata`, the one documented fallback for configs without a ``dataset`` field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

# The ground-truth value that is never evaluated; core.data.standard_fields.IGNORE_LABEL too
# (repeated here so that standard_fields can re-export the Cityscapes constants without a cycle).
DEFAULT_IGNORE_LABEL = 255

Colour = tuple[int, int, int]


def _voc_colour(index: int) -> Colour:
    """The PASCAL VOC colour-map idea: spread the bits of ``index`` over R, G and B, high first."""
    red = green = blue = 0
    for shift in range(7, -1, -1):
        red |= ((index >> 0) & 1) << shift
        green |= ((index >> 1) & 1) << shift
        blue |= ((index >> 2) & 1) << shift
        index >>= 3
    return red, green, blue


def generic_palette(num_classes: int) -> tuple[Colour, ...]:
    """``num_classes`` fixed, pairwise distinct colours, none of them black (the ignore colour).

    Args:
      num_classes: 1..255.

    Returns:
      One RGB triple per class, values in [0, 255]; the same for every call.
    """
    if not 1 <= num_classes <= 255:
        raise ValueError(f"a generic palette has 1..255 colours, asked for {num_classes}.")
    return tuple(_voc_colour(index + 1) for index in range(num_classes))


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """The classes of a dataset, in class-id (train-id) order.

    Attributes:
      name: the dataset's name ("cityscapes", a label map's file name, ...).
      class_names: one display name per class the model predicts.
      palette: one RGB colour (three ints in [0, 255]) per class.
      ignore_label: the ground-truth value that is not evaluated (drawn black).
      label_ids: the official label id of each class (Cityscapes: train id 0 -> label id 7),
        written by ``eval.py --write_predictions_dir`` and ``inference.py --label_ids``;
        None when the class ids are the official ids.
    """

    name: str
    class_names: tuple[str, ...]
    palette: tuple[Colour, ...]
    ignore_label: int = DEFAULT_IGNORE_LABEL
    label_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # Normalise lists (from JSON, from callers) to tuples so metadata is hashable and equal
        # by value.
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(self, "palette", tuple(tuple(int(v) for v in c) for c in self.palette))
        if self.label_ids is not None:
            object.__setattr__(self, "label_ids", tuple(int(i) for i in self.label_ids))
        where = f"dataset {self.name!r}"
        count = len(self.class_names)
        if not 1 <= count <= 255:
            raise ValueError(f"{where}: has {count} classes; it needs 1..255.")
        if len(self.palette) != count:
            raise ValueError(
                f"{where}: {len(self.palette)} palette colours for {count} classes; give one "
                "colour per class."
            )
        for index, colour in enumerate(self.palette):
            if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
                raise ValueError(
                    f"{where}: the colour of class {index} ({self.class_names[index]!r}) is "
                    f"{colour}; a colour is three integers in [0, 255]."
                )
        if self.label_ids is not None:
            if len(self.label_ids) != count:
                raise ValueError(
                    f"{where}: {len(self.label_ids)} label ids for {count} classes; give one per "
                    "class or none."
                )
            if not all(0 <= i <= 255 for i in self.label_ids):
                raise ValueError(f"{where}: label ids must be in [0, 255], got {self.label_ids}.")
        if not 0 <= self.ignore_label <= 255:
            raise ValueError(f"{where}: ignore_label must be in [0, 255], got {self.ignore_label}.")

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def palette_lut(self) -> np.ndarray:
        """``[256, 3]`` uint8 lookup class id -> RGB; ids without a class (ignore) are black."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        return table

    def label_id_lut(self) -> np.ndarray | None:
        """``[256]`` uint8 lookup class id -> official label id (others unchanged), or None."""
        if self.label_ids is None:
            return None
        table = np.arange(256, dtype=np.uint8)
        table[: self.num_classes] = self.label_ids
        return table


def generic_metadata(num_classes: int, name: str = "generic") -> DatasetMetadata:
    """Metadata of an unnamed dataset: ``class_0 .. class_<n-1>`` and :func:`generic_palette`."""
    return DatasetMetadata(
        name=name,
        class_names=tuple(f"class_{index}" for index in range(num_classes)),
        palette=generic_palette(num_classes),
    )


def with_names(metadata: DatasetMetadata, class_names: Sequence[str]) -> DatasetMetadata:
    """A copy of ``metadata`` with other class names (same count)."""
    return dataclasses.replace(metadata, class_names=tuple(class_names))

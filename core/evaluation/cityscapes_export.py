"""Writing predictions as PNGs for the official Cityscapes evaluation and benchmark server.

The official script (``cityscapesscripts/evaluation/evalPixelLevelSemanticLabeling.py``)
walks a results folder recursively and, for each ground-truth file
``<city>_<seq>_<frame>_gtFine_labelIds.png``, takes the one prediction whose
name matches ``<city>_<seq>_<frame>*.png``. A prediction must be a
single-channel 8-bit PNG of the ground truth's size holding Cityscapes
**label ids** (7 = road, 26 = car, ...), not the 19 train ids the network
predicts. The benchmark server expects the same files.

So a prediction is written under the input image's own base name with a
``.png`` extension: ``frankfurt_000000_000294_leftImg8bit.png`` for the image
``.../leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png``.
That name keeps the ``<city>_<seq>_<frame>`` prefix the script matches on and
lets a prediction be traced back to its image. All files go flat into one
folder; two images with the same base name would match the same ground truth,
so that is an error rather than a silent overwrite.

For datasets without official label ids (``DatasetMetadata.label_ids`` is None) the class ids
are written unchanged (see :class:`PredictionWriter`). The writer is an evaluator of
:func:`core.evaluation.inference.inference_on_dataset`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from core.datasets.cityscapes import CITYSCAPES_TRAIN_ID_TO_LABEL_ID
from core.evaluation.inference import CLASSES, DatasetEvaluator, crop_examples
from core.visualization import save_png

# What the official script matches a prediction on: <city>_<6-digit seq>_<6-digit frame>.
_CITYSCAPES_STEM = re.compile(r"^[^_/\\]+_\d{6}_\d{6}")


def prediction_filename(image_path: str | bytes) -> str:
    """The file name of an image's prediction: its base name with a ``.png`` extension.

    Args:
      image_path: the image's path as stored in the record's ``image/filename``,
        e.g. ``.../frankfurt/frankfurt_000000_000294_leftImg8bit.png``.

    Returns:
      E.g. ``frankfurt_000000_000294_leftImg8bit.png``.

    Raises:
      ValueError: the path has no base name (records written without
        ``image/filename``, or one ending in ``..``).
    """
    if isinstance(image_path, bytes):
        image_path = image_path.decode("utf-8")
    # Only the base name is used, so no record can send a file outside the output folder
    # (``../``, absolute and Windows paths are cut to their last part).
    stem = os.path.splitext(os.path.basename(image_path.replace("\\", "/")))[0]
    if stem in ("", ".", "..") or "\0" in stem:
        raise ValueError(
            f"cannot name a prediction after the image path {image_path!r}: the records need an "
            "image/filename ending in a file name (the dataset tools always write it)."
        )
    return stem + ".png"


def is_cityscapes_name(filename: str) -> bool:
    """Whether the official script can match ``filename`` to a ground truth file."""
    return _CITYSCAPES_STEM.match(os.path.basename(filename)) is not None


def train_ids_to_label_ids(
    class_ids: np.ndarray, label_ids: Sequence[int] = CITYSCAPES_TRAIN_ID_TO_LABEL_ID
) -> np.ndarray:
    """Maps train ids (the network's classes) to Cityscapes label ids.

    Args:
      class_ids: integer ``[height, width]`` train ids in ``[0, len(label_ids))``.
      label_ids: the label id of each train id (Cityscapes' 19 by default).

    Returns:
      uint8 ``[height, width]`` label ids, e.g. train id 0 (road) -> 7,
      13 (car) -> 26, 18 (bicycle) -> 33.

    Raises:
      ValueError: a class id has no label id.
    """
    class_ids = np.asarray(class_ids)
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= len(label_ids)):
        bad = np.unique(class_ids[(class_ids < 0) | (class_ids >= len(label_ids))])
        raise ValueError(
            f"class ids {bad[:20].tolist()} have no Cityscapes label id (only train ids "
            f"0..{len(label_ids) - 1} do)."
        )
    table = np.asarray(label_ids, dtype=np.uint8)
    return table[class_ids.astype(np.int64)]


class PredictionWriter(DatasetEvaluator):
    """Writes one single-channel PNG per image into a folder, named for the official script.

    As an evaluator, :meth:`process` writes every image of a batch (cropped to its original
    size) and :meth:`evaluate` returns ``{"predictions_dir": output_dir}``.

    With ``label_ids`` (Cityscapes' mapping, the default) the PNGs hold label
    ids, ready for ``csEvalPixelLevelSemanticLabeling`` with
    ``CITYSCAPES_RESULTS=<output_dir>`` or for zipping to the benchmark server.
    With ``label_ids=None`` they hold the class (train) ids unchanged, for
    datasets without official ids; pass ``DatasetMetadata.label_ids``.

    Args:
      output_dir: the folder to write into (created if needed). Files of an
        earlier run with the same names are replaced.
      label_ids: label id of each class id, or None to write class ids.
    """

    def __init__(
        self,
        output_dir: str,
        label_ids: Sequence[int] | None = CITYSCAPES_TRAIN_ID_TO_LABEL_ID,
    ):
        self.output_dir = output_dir
        self.label_ids = None if label_ids is None else tuple(label_ids)
        self._written: dict[str, str] = {}
        self._warned_name = False
        os.makedirs(output_dir, exist_ok=True)

    def reset(self) -> None:
        """Forgets the names written so far (a new pass over the split)."""
        self._written = {}

    @property
    def num_written(self) -> int:
        """Number of PNGs written since the last :meth:`reset`."""
        return len(self._written)

    def process(self, batch: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Writes the prediction of every image of the batch, cropped to its original size.

        Args:
          batch: the input dict (``label_mask``, original sizes, ``input_image_path``).
          outputs: the forward outputs; ``classes`` int ``[batch, h, w]``.
        """
        for path, _, classes in crop_examples(batch, outputs[CLASSES]):
            self.write(path, classes)

    def evaluate(self) -> dict[str, Any]:
        return {"predictions_dir": self.output_dir}

    def write(self, image_path: str | bytes, class_ids: np.ndarray) -> str:
        """Writes the prediction of one image.

        Args:
          image_path: the image's path (``input_image_path`` of the batch).
          class_ids: integer ``[height, width]`` predicted class ids at the
            image's original size (the ground truth's size; padding cropped).

        Returns:
          The path written.

        Raises:
          ValueError: another image of this pass has the same base name, the
            map is not 2-D, or a class id does not fit (no label id, or > 255).
        """
        name = prediction_filename(image_path)
        source = image_path.decode("utf-8") if isinstance(image_path, bytes) else image_path
        if name in self._written:
            raise ValueError(
                f"two images would write the same prediction file {name}: "
                f"{self._written[name]!r} and {source!r}. The official evaluation matches files by "
                "name, so image base names must be unique."
            )
        class_ids = np.asarray(class_ids)
        if class_ids.ndim != 2:
            raise ValueError(
                f"expected a [height, width] class-id map, got shape {class_ids.shape}"
            )
        if self.label_ids is not None:
            values = train_ids_to_label_ids(class_ids, self.label_ids)
        else:
            if class_ids.size and (class_ids.min() < 0 or class_ids.max() > 255):
                raise ValueError(
                    f"class ids must be in [0, 255] for an 8-bit PNG, got "
                    f"[{class_ids.min()}, {class_ids.max()}]"
                )
            values = class_ids.astype(np.uint8)
        if not self._warned_name and not is_cityscapes_name(name):
            # Still useful output for other datasets; only the official script needs the pattern.
            logging.warning(
                "Prediction %s does not start with <city>_<seq>_<frame>; the official Cityscapes "
                "script will not match it to a ground truth file.",
                name,
            )
            self._warned_name = True
        path = save_png(values, os.path.join(self.output_dir, name))
        self._written[name] = source
        return path

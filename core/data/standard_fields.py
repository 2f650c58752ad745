"""Names shared by the dataset tools, the input pipeline and the models.

Two families of keys live here:

* ``TfExampleFields``: the feature keys of the serialized ``tf.train.Example``
  records. They are the original project's keys, so records written by its
  ``create_cityscapes_tfrecord.py`` can be read unchanged, and ours by it.
* ``InputDataFields``: the keys of the per-example and per-batch tensor
  dictionaries produced by ``builders.dataset_builder``.
"""

from __future__ import annotations

# The Cityscapes constants live with the dataset (core.datasets.cityscapes); these names stay
# importable from here for existing callers.
from core.datasets.cityscapes import (
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_PALETTE,
    CITYSCAPES_TRAIN_ID_TO_LABEL_ID,
)


class TfExampleFields:
    """Feature keys of a segmentation ``tf.train.Example``."""

    image_encoded = "image/encoded"
    image_filename = "image/filename"
    image_format = "image/format"
    height = "image/height"
    width = "image/width"
    channels = "image/channels"
    label_encoded = "image/segmentation/class/encoded"
    label_format = "image/segmentation/class/format"


class InputDataFields:
    """Keys of the tensor dictionaries that flow from the input pipeline.

    Attributes:
      input_image: float32 RGB image, values in [0, 255];
        ``[height, width, 3]`` per example, ``[batch, height, width, 3]`` batched.
      groundtruth: int32 class ids (ignore label included);
        ``[height, width, 1]`` per example, ``[batch, height, width, 1]`` batched.
      image_path: the ``image/filename`` string of the record.
      original_height: int32 height of the decoded image before preprocessing.
      original_width: int32 width of the decoded image before preprocessing.
    """

    input_image = "input_image"
    groundtruth = "label_mask"
    image_path = "input_image_path"
    original_height = "input_image_height"
    original_width = "input_image_width"


__all__ = [
    "CITYSCAPES_CLASS_NAMES",
    "CITYSCAPES_PALETTE",
    "CITYSCAPES_TRAIN_ID_TO_LABEL_ID",
    "IGNORE_LABEL",
    "InputDataFields",
    "TfExampleFields",
]

IGNORE_LABEL = 255

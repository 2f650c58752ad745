"""Names shared by the dataset tools, the input pipeline and the models.

Two families of keys live here:

* ``TfExampleFields``: the feature keys of the serialized ``tf.train.Example``
  records. They are the original project's keys, so records written by its
  ``create_cityscapes_tfrecord.py`` can be read unchanged, and ours by it.
* ``InputDataFields``: the keys of the per-example and per-batch tensor
  dictionaries produced by ``builders.dataset_builder``.
"""

from __future__ import annotations


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


# Cityscapes train ids: the 19 evaluated classes, in train-id order.
CITYSCAPES_CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# labelId of each train id (cityscapesScripts helpers/labels.py).
CITYSCAPES_TRAIN_ID_TO_LABEL_ID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)  # fmt: skip

# Official Cityscapes colours (cityscapesScripts helpers/labels.py), train-id order.
CITYSCAPES_PALETTE = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
)

IGNORE_LABEL = 255

"""Cityscapes: the 19 evaluated classes, their official colours and label ids.

The values come from cityscapesScripts ``helpers/labels.py``: the classes whose ``trainId`` is
0..18, in train-id order. Records written by ``dataset_tools/create_cityscapes_tfrecord.py`` hold
train ids; the official evaluation script and the benchmark server want label ids, which
``label_ids`` maps back to.
"""

from __future__ import annotations

from core.datasets.metadata import DatasetMetadata
from core.datasets.registry import DATASETS

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

CITYSCAPES = DATASETS.register(
    "cityscapes",
    DatasetMetadata(
        name="cityscapes",
        class_names=CITYSCAPES_CLASS_NAMES,
        palette=CITYSCAPES_PALETTE,
        ignore_label=255,
        label_ids=CITYSCAPES_TRAIN_ID_TO_LABEL_ID,
    ),
)

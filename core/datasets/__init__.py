"""Datasets as metadata: class names, palette, ignore label and official label ids.

* :class:`DatasetMetadata` (:mod:`core.datasets.metadata`): what a dataset is to the code.
* :data:`DATASETS` (:mod:`core.datasets.registry`): registered datasets by config name;
  ``cityscapes`` (:mod:`core.datasets.cityscapes`) is built in.
* :func:`load_label_map` (:mod:`core.datasets.label_map`): a custom dataset from a file.

``builders.dataset_metadata_builder`` turns a config's ``dataset`` field into metadata.
"""

from core.datasets import cityscapes  # noqa: F401  (registers "cityscapes")
from core.datasets.label_map import LabelMap, LabelMapError, load_label_map, parse_label_map
from core.datasets.metadata import DatasetMetadata, generic_metadata, generic_palette
from core.datasets.registry import DATASETS, DEFAULT_DATASET, default_metadata, get_dataset

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DatasetMetadata",
    "LabelMap",
    "LabelMapError",
    "default_metadata",
    "generic_metadata",
    "generic_palette",
    "get_dataset",
    "load_label_map",
    "parse_label_map",
]

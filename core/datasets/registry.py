"""The dataset registry: config names -> :class:`~core.datasets.metadata.DatasetMetadata`.

A dataset registers its metadata where it is defined (see :mod:`core.datasets.cityscapes`)::

    from core.datasets import DATASETS, DatasetMetadata

    DATASETS.register("my_streets", DatasetMetadata(
        name="my_streets",
        class_names=("road", "car", "person"),
        palette=((128, 64, 128), (0, 0, 142), (220, 20, 60)),
    ))

and a config selects it with ``dataset { name: "my_streets" }``. The module that registers
must be imported before the config is built (``core.datasets`` imports the built-in ones).
"""

from __future__ import annotations

from core.datasets.metadata import DatasetMetadata, generic_metadata
from core.registry import Registry

DATASETS: Registry[DatasetMetadata] = Registry("dataset")

# The project's default dataset: configs without a ``dataset`` field whose model has its number
# of classes get it (the original project only ever trained Cityscapes).
DEFAULT_DATASET = "cityscapes"


def get_dataset(name: str) -> DatasetMetadata:
    """The metadata registered as ``name``.

    Raises:
      core.registry.UnknownNameError: no such dataset; the message lists the known ones.
    """
    return DATASETS.get(name)


def default_metadata(num_classes: int) -> DatasetMetadata:
    """The metadata of a config without a ``dataset`` field.

    The project's default dataset (Cityscapes) when the model has its number of classes, else
    :func:`~core.datasets.metadata.generic_metadata` (``class_0 ..``, a fixed palette).
    """
    default = DATASETS.get(DEFAULT_DATASET)
    if num_classes == default.num_classes:
        return default
    return generic_metadata(num_classes)

"""Builds the dataset metadata (class names, palette, label ids) of a ``PipelineConfig``.

The config's optional ``dataset`` field (``protos/dataset.proto``) names a registered dataset
(``dataset { name: "cityscapes" }``) or a label-map file
(``dataset { label_map_path: "data/labels.txt" }``, formats in :mod:`core.datasets.label_map`).
Configs without it (all of the original project's) keep working: a model with the default
dataset's number of classes (Cityscapes, 19) gets Cityscapes, any other one generic names
``class_<i>`` and a fixed palette, with a log line recommending the field.
"""

from __future__ import annotations

from collections.abc import Callable

from absl import logging

from builders.config_errors import ConfigError
from builders.model_builder import model_config
from core.datasets import DATASETS, DatasetMetadata, default_metadata, load_label_map
from core.datasets.label_map import LabelMapError
from core.registry import UnknownNameError
from protos import pipeline_pb2

_RECOMMENDATION = (
    "The config has no dataset field; using %r for its %d classes. Name the dataset to pick "
    'its class names and colours: dataset { name: "cityscapes" } or '
    'dataset { label_map_path: "labels.txt" } (see docs/datasets.md).'
)


def _explicit(dataset) -> tuple[str, DatasetMetadata]:
    """(field path, metadata) of a set ``dataset`` message.

    Raises:
      ValueError: an unknown name, an unreadable label map, or neither field set.
    """
    kind = dataset.WhichOneof("dataset_oneof")
    if kind == "name":
        try:
            return "dataset.name", DATASETS.get(dataset.name)
        except UnknownNameError as error:
            raise ValueError(str(error)) from None
    if kind == "label_map_path":
        path = dataset.label_map_path
        try:
            return "dataset.label_map_path", load_label_map(path).to_metadata()
        except FileNotFoundError:
            raise ValueError(
                f"label map {path!r} does not exist; give a path relative to where the script "
                "runs (the repository root) or an absolute one."
            ) from None
        except LabelMapError as error:
            raise ValueError(str(error)) from None
    raise ValueError('is empty; set name: "cityscapes" or label_map_path: "labels.txt".')


def _num_classes(config: pipeline_pb2.PipelineConfig) -> tuple[str, int] | None:
    """(``model.<kind>.num_classes``, its value), or None without a model."""
    try:
        kind, message = model_config(config)
    except ValueError:
        return None
    if not hasattr(message, "num_classes"):
        return None
    return f"model.{kind}.num_classes", int(message.num_classes)


def validate(config: pipeline_pb2.PipelineConfig, report: Callable[[str, str], None]) -> None:
    """Reports problems of the ``dataset`` field as ``report(field path, problem)``.

    Problems: an unknown dataset name (the message lists the known ones), a label map that is
    missing or malformed, a class count that differs from the model's ``num_classes``.
    """
    if not config.HasField("dataset"):
        return
    path = "dataset"
    try:
        path, metadata = _explicit(config.dataset)
    except ValueError as error:
        kind = config.dataset.WhichOneof("dataset_oneof")
        report(f"dataset.{kind}" if kind else "dataset", str(error))
        return
    model = _num_classes(config)
    if model is not None and model[1] != metadata.num_classes:
        report(
            path,
            f"dataset {metadata.name!r} has {metadata.num_classes} classes but {model[0]} is "
            f"{model[1]}; make them agree.",
        )


def build(config: pipeline_pb2.PipelineConfig) -> DatasetMetadata:
    """The dataset metadata of a config (see the module docstring for the rule without one).

    Raises:
      ConfigError: an unknown dataset, a bad label map, or a class count that differs from
        the model's; one line naming the field and the fix.
    """
    problems: list[str] = []
    validate(config, lambda path, problem: problems.append(f"{path}: {problem}"))
    if problems:
        raise ConfigError(problems[0])
    if config.HasField("dataset"):
        return _explicit(config.dataset)[1]
    try:
        num_classes = model_config(config)[1].num_classes
    except ValueError as error:  # no model: model_config's message says what to add
        raise ConfigError(str(error)) from None
    metadata = default_metadata(num_classes)
    logging.info(_RECOMMENDATION, metadata.name, num_classes)
    return metadata


def build_for_model(
    config_path: str | None = None, model_path: str | None = None
) -> DatasetMetadata | None:
    """The metadata of ``inference.py``'s model: from ``config_path``, else from the
    ``pipeline.config`` export.py wrote next to ``model_path``; None when there is neither.

    Raises:
      ConfigError: the config cannot be read, or its ``dataset`` field is invalid.
    """
    # config_util validates configs with this module's validate(); importing it at the top
    # would be a cycle.
    from builders import config_util

    if config_path is None and model_path:
        config_path = config_util.exported_config_path(model_path)
    if config_path is None:
        return None
    return build(config_util.load_pipeline_config(config_path))

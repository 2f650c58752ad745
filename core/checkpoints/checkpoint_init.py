"""Initialising a model from a fine-tune checkpoint (``train_config.fine_tune_checkpoint``).

Three kinds of starting points, as the original's ``fine_tune_checkpoint_type``:

* ``classification``: a TF-slim ImageNet checkpoint (``resnet_v1_50.ckpt``,
  ``mobilenet_v2_1.0_224.ckpt``) restores the backbone, never its classifier;
* ``segmentation``: a segmentation checkpoint (ours or the original's) restores
  every variable whose name and shape match (a PSPNet checkpoint initialises
  ICNet's shared backbone);
* ``segmentation-finetune``: the same but never the prediction layers, so a
  model with other classes can start from it.

Checkpoints are read by variable name (:mod:`core.checkpoints.checkpoint_utils`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import tensorflow as tf
from absl import logging

from core.checkpoints.checkpoint_utils import (
    CheckpointError,
    checkpoint_shapes,
    ensure_named_variables,
    read_named_tensors,
    resolve_checkpoint,
)

CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"
SEGMENTATION_FINETUNE = "segmentation-finetune"
CHECKPOINT_TYPES = (CLASSIFICATION, SEGMENTATION, SEGMENTATION_FINETUNE)

BACKBONE_SCOPE = "SharedFeatureExtractor"
# The ImageNet classifiers of slim's checkpoints; our backbones have none, but a model variable
# must never be fed from them even if a future backbone grew a layer of that name.
_IMAGENET_CLASSIFIER_SCOPES = ("resnet_v1_50/logits/", "MobilenetV2/Logits/")
# Optimizer slots and moving averages TF1 trainings store as "<variable>/<slot>".
_SLOT_NAMES = frozenset(
    {
        "Momentum",
        "Adam",
        "Adam_1",
        "RMSProp",
        "RMSProp_1",
        "Adagrad",
        "Adadelta",
        "Adadelta_1",
        "Ftrl",
        "Ftrl_1",
        "ExponentialMovingAverage",
    }
)
_BOOKKEEPING_NAMES = frozenset({"global_step", "beta1_power", "beta2_power"})
# A scope component holding num_classes-wide classifiers: Predictions/Conv, AuxOutput,
# AuxOutput_1, AuxPredictions/AuxOutput.
_PREDICTION_COMPONENT = re.compile(r"(Predictions|AuxPredictions|AuxOutput(_\d+)?)")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SHOWN = 5  # names shown in log lines and error messages


@dataclasses.dataclass(frozen=True)
class RestoreReport:
    """What :func:`initialize_from_fine_tune_checkpoint` did.

    Attributes:
      checkpoint: the checkpoint prefix that was read.
      checkpoint_type: one of ``CHECKPOINT_TYPES``.
      restored: model variable names assigned from the checkpoint.
      missing: model variable names the checkpoint type would restore but the checkpoint lacks
        (e.g. ICNet's heads when starting from a PSPNet checkpoint); they keep their initial values.
      skipped_shape_mismatch: model variable names of layers in which some variable has another
        shape in the checkpoint (other filter_scale, num_classes or pruned widths). A layer is
        restored whole or not at all, so this also lists e.g. the biases of a classifier whose
        kernel differs; all keep their initial values.
      excluded: model variable names this checkpoint type never restores (everything outside
        ``SharedFeatureExtractor/`` for "classification"; the classifiers for
        "segmentation-finetune").
      unused: checkpoint variable names (as stored in the checkpoint) that were not restored,
        other than ``global_step`` and optimizer slots / moving averages.
    """

    checkpoint: str
    checkpoint_type: str
    restored: tuple[str, ...]
    missing: tuple[str, ...]
    skipped_shape_mismatch: tuple[str, ...]
    excluded: tuple[str, ...]
    unused: tuple[str, ...]

    def summary(self) -> str:
        """One line: counts and the first few names of each non-empty group."""
        parts = [
            f"{len(self.restored)} restored",
            f"{len(self.missing)} missing{_first(self.missing)}",
            f"{len(self.skipped_shape_mismatch)} shape mismatches"
            f"{_first(self.skipped_shape_mismatch)}",
            f"{len(self.excluded)} not restored by design",
            f"{len(self.unused)} checkpoint variables unused{_first(self.unused)}",
        ]
        return f"{self.checkpoint} ({self.checkpoint_type}): " + "; ".join(parts)

    def __str__(self) -> str:
        # Logged as "%s" by the trainer: the summary, not hundreds of names.
        return self.summary()


def _first(names: tuple[str, ...] | list[str]) -> str:
    if not names:
        return ""
    more = f", ... (+{len(names) - _SHOWN})" if len(names) > _SHOWN else ""
    return " (" + ", ".join(names[:_SHOWN]) + more + ")"


def backbone_variables(model) -> list[tf.Variable]:
    """The variables under ``SharedFeatureExtractor/`` (what ``freeze_fine_tune_backbone`` freezes).

    Includes the BN moving statistics (not trainable anyway). The objects are the underlying
    ``tf.Variable``s, as in ``named_variables()``; compare Keras variables by ``v.value``.
    """
    prefix = BACKBONE_SCOPE + "/"
    return [v for name, v in ensure_named_variables(model).items() if name.startswith(prefix)]


def is_prediction_variable(name: str) -> bool:
    """True for variables of a num_classes-wide classifier (main or auxiliary).

    ``Predictions/Conv/*``, ``AuxOutput/*``, ``AuxOutput_1/*``, ``AuxPredictions/AuxOutput/*``.
    """
    return any(_PREDICTION_COMPONENT.fullmatch(part) for part in name.split("/")[:-1])


def layer_scope(name: str) -> str:
    """Scope of the conv layer a slim variable belongs to.

    ``.../conv1/weights`` and ``.../conv1/BatchNorm/gamma`` -> ``.../conv1``.
    """
    parts = name.split("/")
    if len(parts) >= 3 and parts[-2] == "BatchNorm":
        return "/".join(parts[:-2])
    return "/".join(parts[:-1])


def _is_bookkeeping(name: str) -> bool:
    """global_step, Adam's beta powers, optimizer slots and moving averages of a TF1 training."""
    return name in _BOOKKEEPING_NAMES or name.rsplit("/", 1)[-1] in _SLOT_NAMES


def _refuse_keras_weights(path: str) -> None:
    """Raises a CheckpointError explaining why Keras (HDF5) ResNet50 weights cannot be used."""
    is_file = tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)
    looks_keras = path.endswith((".h5", ".hdf5", ".keras"))
    if is_file and not looks_keras:
        with tf.io.gfile.GFile(path, "rb") as handle:
            looks_keras = handle.read(len(_HDF5_MAGIC)) == _HDF5_MAGIC
    if not looks_keras:
        return
    raise CheckpointError(
        f"{path!r} looks like a Keras weights file (HDF5 / .keras), e.g. keras.applications "
        "ResNet50. Those weights do not fit this ResNet-50 v1: Keras' ResNet50 puts the stride of "
        "each stage on the first 1x1 conv of its first unit (the Caffe layout), where TF-slim's "
        "resnet_v1 strides the 3x3 conv of the stage's last unit; its convs have biases, it "
        "expects BGR Caffe-normalised input and uses other layer names. Loading them here would "
        "compute a different function. Use TF-slim's ImageNet checkpoint instead "
        "(resnet_v1_50_2016_08_28.tar.gz -> resnet_v1_50.ckpt, or mobilenet_v2_1.0_224.ckpt) "
        'with fine_tune_checkpoint_type: "classification".'
    )


def _candidates(variables: Mapping[str, tf.Variable], checkpoint_type: str):
    """Splits model names into {model name: checkpoint name} to restore and excluded names."""
    candidates: dict[str, str] = {}
    excluded: list[str] = []
    prefix = BACKBONE_SCOPE + "/"
    for name in variables:
        if checkpoint_type == CLASSIFICATION:
            source = name[len(prefix) :] if name.startswith(prefix) else None
            if source is None or source.startswith(_IMAGENET_CLASSIFIER_SCOPES):
                excluded.append(name)
            else:
                candidates[name] = source
        elif checkpoint_type == SEGMENTATION_FINETUNE and is_prediction_variable(name):
            excluded.append(name)
        else:
            candidates[name] = name
    return candidates, excluded


def _shape_text(model_name: str, variable: tf.Variable, source: str, shape: list[int]) -> str:
    return f"{model_name}: checkpoint {source} {list(shape)} vs model {variable.shape.as_list()}"


def _nothing_matched_error(
    prefix: str,
    checkpoint_type: str,
    variables: Mapping[str, tf.Variable],
    shapes: Mapping[str, list[int]],
    candidates: Mapping[str, str],
) -> CheckpointError:
    """The error for a checkpoint none of whose names fit; suggests a better checkpoint type."""
    stored = sorted(n for n in shapes if not _is_bookkeeping(n))
    wanted = sorted(candidates.values())
    hint = ""
    best = 0
    for other in CHECKPOINT_TYPES:
        if other == checkpoint_type:
            continue
        count = sum(source in shapes for source in _candidates(variables, other)[0].values())
        if count > best:
            best = count
            hint = f' With fine_tune_checkpoint_type: "{other}", {count} variables would match.'
    if not hint:
        hint = (
            " No checkpoint type fits: the checkpoint is probably for another backbone or network "
            "(e.g. ResNet-50 weights for a MobileNetV2 model)."
        )
    return CheckpointError(
        f"nothing in {prefix} fits the model under fine_tune_checkpoint_type "
        f'"{checkpoint_type}": none of the {len(wanted)} names looked for is in the checkpoint.'
        f"\n  checkpoint has: {', '.join(stored[:_SHOWN]) or '(no model variables)'}"
        f"\n  model looks for: {', '.join(wanted[:_SHOWN])}\n{hint.strip()}"
    )


def initialize_from_fine_tune_checkpoint(
    model, checkpoint_path: str, checkpoint_type: str
) -> RestoreReport:
    """Initialises a model from an ImageNet or segmentation checkpoint, partially by design.

    Types (the config's ``fine_tune_checkpoint_type``):
      - "classification": a TF-slim ImageNet checkpoint (``resnet_v1_50.ckpt``,
        ``mobilenet_v2_1.0_224.ckpt``): model variable ``SharedFeatureExtractor/<name>`` is read
        from checkpoint variable ``<name>``; nothing outside the backbone, and never the ImageNet
        classifier. A shape mismatch is an error (ImageNet weights need filter_scale 1.0).
      - "segmentation": our or the original's segmentation checkpoint: every model variable
        with the same name and shape (a PSPNet checkpoint initialises ICNet's backbone; ICNet's
        heads are then reported missing). Layers with a shape mismatch are skipped whole, with a
        warning.
      - "segmentation-finetune": as "segmentation" but never the classifiers
        (``Predictions/``, ``AuxOutput*``, ``AuxPredictions/``), so the model can have another
        num_classes.
    ``global_step`` and optimizer slots are never restored (the step starts at 0).

    Args:
      model: a ``SegmentationModel``; its variables are created if needed.
      checkpoint_path: a checkpoint prefix or a directory (its latest checkpoint).
      checkpoint_type: one of ``CHECKPOINT_TYPES``.

    Returns:
      A :class:`RestoreReport`; its summary is also logged.

    Raises:
      ValueError: an unknown checkpoint_type.
      CheckpointError: the checkpoint is missing or a Keras weights file; nothing in it fits the
        model; or, for "classification", backbone shapes differ from the checkpoint's.
    """
    if not checkpoint_type:
        raise ValueError(
            f"fine_tune_checkpoint {checkpoint_path!r} needs a fine_tune_checkpoint_type: one of "
            f'{list(CHECKPOINT_TYPES)} ("classification" for ImageNet weights).'
        )
    if checkpoint_type not in CHECKPOINT_TYPES:
        raise ValueError(
            f"unknown fine_tune_checkpoint_type {checkpoint_type!r}; expected one of "
            f"{list(CHECKPOINT_TYPES)}."
        )
    _refuse_keras_weights(checkpoint_path)
    prefix = resolve_checkpoint(checkpoint_path)
    variables = ensure_named_variables(model)
    shapes = checkpoint_shapes(prefix)
    candidates, excluded = _candidates(variables, checkpoint_type)

    missing = [name for name, source in candidates.items() if source not in shapes]
    mismatch_texts = [
        _shape_text(name, variables[name], source, shapes[source])
        for name, source in candidates.items()
        if source in shapes and list(shapes[source]) != variables[name].shape.as_list()
    ]
    # A layer is restored whole or not at all: BN statistics or biases that happen to fit are
    # meaningless next to a kernel that was left at its initial value.
    bad_layers = {layer_scope(text.split(":", 1)[0]) for text in mismatch_texts}
    matched: dict[str, str] = {}
    mismatched: list[str] = []
    for name, source in candidates.items():
        if source not in shapes:
            continue
        if layer_scope(name) in bad_layers:
            mismatched.append(name)
        else:
            matched[name] = source

    if not matched and not mismatched:
        raise _nothing_matched_error(prefix, checkpoint_type, variables, shapes, candidates)
    if mismatched and checkpoint_type == CLASSIFICATION:
        scale = getattr(model, "filter_scale", None)
        raise CheckpointError(
            f"{len(mismatched)} backbone variable(s) do not fit the ImageNet checkpoint {prefix} "
            f"(model filter_scale {scale}). ImageNet weights only fit a full-width backbone: "
            "build the model with filter_scale 1.0 and no layer_widths to start from them, or "
            "start a scaled / pruned model from a segmentation checkpoint of its own widths.\n  "
            + "\n  ".join(mismatch_texts[:20])
        )
    if not matched:
        raise CheckpointError(
            f"every variable of {prefix} that the model looks for has another shape, so nothing "
            f"would be restored (was it trained with another filter_scale or pruned widths?):\n  "
            + "\n  ".join(mismatch_texts[:20])
        )

    tensors = read_named_tensors(prefix, names=set(matched.values()))
    for name, source in matched.items():
        variables[name].assign(tensors[source])

    used = set(matched.values())
    report = RestoreReport(
        checkpoint=prefix,
        checkpoint_type=checkpoint_type,
        restored=tuple(matched),
        missing=tuple(missing),
        skipped_shape_mismatch=tuple(mismatched),
        excluded=tuple(excluded),
        unused=tuple(sorted(n for n in shapes if n not in used and not _is_bookkeeping(n))),
    )
    if mismatched:
        logging.warning(
            "Skipped %d variable(s) of %s whose shapes differ from the model's (kept at their "
            "initial values):\n  %s",
            len(mismatched),
            prefix,
            "\n  ".join(mismatch_texts[:20]),
        )
    if missing and checkpoint_type == CLASSIFICATION:
        logging.warning(
            "%d backbone variable(s) are not in %s:%s", len(missing), prefix, _first(missing)
        )
    logging.info("Initialised %d of %d variables from %s", len(matched), len(variables), prefix)
    logging.info("%s", report.summary())
    return report

"""Checkpoints: our format, reading any checkpoint by variable name, restoring models.

Our checkpoints are ``tf.train.Checkpoint`` files in which the model's variables
are stored under their TF-slim names (``model.named_variables()``), e.g.
``SharedFeatureExtractor/resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/weights``,
next to the optimizer (slots, iteration count) and the global step. Keying by
slim name, rather than by the Keras object graph, is what lets one model be
initialised from another's checkpoint (ICNet from PSPNet, a pruned model from
its parent) and lets the original's TF1 checkpoints be read the same way:
:func:`read_named_tensors` returns ``{slim name: array}`` for both kinds.

:func:`initialize_from_fine_tune_checkpoint` is the training-time partial initialisation
(``fine_tune_checkpoint`` + ``fine_tune_checkpoint_type`` of the config): from a TF-slim
ImageNet classification checkpoint, or from a segmentation checkpoint (ours or the original's).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection, Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from core import file_utils

MODEL_VARIABLES = "model_variables"
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_PREFIX = MODEL_VARIABLES + "/"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not fit the model."""


def make_checkpoint(model, optimizer=None, step: tf.Variable | None = None) -> tf.train.Checkpoint:
    """The checkpoint object of a model (and optionally its optimizer and step).

    Args:
      model: a built ``SegmentationModel`` (variables created).
      optimizer: a built Keras optimizer, to save/restore its slots and iterations.
      step: the global step variable (int64).
    """
    variables = model.named_variables()
    if not variables:
        raise CheckpointError("the model has no variables yet; call model.build_variables() first.")
    objects = {MODEL_VARIABLES: dict(variables)}
    if optimizer is not None:
        objects["optimizer"] = optimizer
    if step is not None:
        objects["step"] = step
    return tf.train.Checkpoint(**objects)


def resolve_checkpoint(path: str) -> str:
    """Returns a checkpoint prefix from a prefix or a directory (its latest checkpoint).

    Raises:
      CheckpointError: nothing readable at ``path``; the message says what was looked for.
    """
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(
                f"no checkpoint in directory {path!r} (no 'checkpoint' state file); pass a "
                "checkpoint prefix such as path/to/model.ckpt-1000 or a training directory."
            )
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointError(
            f"checkpoint {path!r} not found: expected {path}.index and its data files. Pass the "
            "prefix (without .index / .data-*), e.g. train_dir/model.ckpt-1000."
        )
    return path


def _name_of_key(key: str) -> str | None:
    """Slim name of a checkpoint key, or None for keys that are not model variables."""
    if key.startswith(_PREFIX) and key.endswith(_SUFFIX):
        return key[len(_PREFIX) : -len(_SUFFIX)].replace(".S", "/")
    if _SUFFIX in key or key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"):
        return None  # another object of a TF2 checkpoint (optimizer, step, ...)
    return key  # a TF1 name-based checkpoint: the key is the variable name


def checkpoint_shapes(path: str) -> dict[str, list[int]]:
    """``{variable name: shape}`` of every model variable in a checkpoint (ours or TF1)."""
    reader = tf.train.load_checkpoint(resolve_checkpoint(path))
    shapes = {}
    for key, shape in reader.get_variable_to_shape_map().items():
        name = _name_of_key(key)
        if name is not None:
            shapes[name] = shape
    return shapes


def read_named_tensors(path: str, names=None) -> dict[str, np.ndarray]:
    """Reads model variables of a checkpoint by name (ours or a TF1 name-based one).

    Args:
      path: a checkpoint prefix or a directory holding checkpoints.
      names: only read these names (all model variables when None).

    Returns:
      ``{slim name: array}``.
    """
    prefix = resolve_checkpoint(path)
    reader = tf.train.load_checkpoint(prefix)
    wanted = None if names is None else set(names)
    tensors = {}
    for key in reader.get_variable_to_shape_map():
        name = _name_of_key(key)
        if name is not None and (wanted is None or name in wanted):
            tensors[name] = reader.get_tensor(key)
    return tensors


def assign_named_tensors(
    variables: Mapping[str, tf.Variable], tensors: Mapping[str, np.ndarray], source: str
) -> list[str]:
    """Assigns tensors to the variables of the same name; checks shapes first.

    Returns:
      The names assigned.

    Raises:
      CheckpointError: a shape differs (all mismatches are listed, nothing is assigned).
    """
    mismatched = [
        f"{name}: checkpoint {list(tensors[name].shape)} vs model {variables[name].shape.as_list()}"
        for name in variables
        if name in tensors and list(tensors[name].shape) != variables[name].shape.as_list()
    ]
    if mismatched:
        raise CheckpointError(
            f"{len(mismatched)} variable(s) of {source} do not fit the model's shapes (was it "
            "trained with another filter_scale, num_classes or pruned widths?):\n  "
            + "\n  ".join(mismatched[:20])
        )
    assigned = []
    for name, variable in variables.items():
        if name in tensors:
            variable.assign(tensors[name])
            assigned.append(name)
    return assigned


def restore_model(model, path: str, exclude: Collection[str] = ()) -> str:
    """Restores every model variable from a checkpoint, exactly (for eval, export, inference).

    Args:
      model: a ``SegmentationModel``; its variables are created if needed.
      path: a checkpoint prefix or a training directory (its latest checkpoint).
      exclude: names of model variables not to restore (left as they are), e.g. the
        quantization ranges a float checkpoint does not have.

    Returns:
      The checkpoint prefix that was read.

    Raises:
      CheckpointError: the checkpoint is missing, or lacks or mismatches a model variable.
    """
    prefix = resolve_checkpoint(path)
    skipped = set(exclude)
    variables = {
        name: variable
        for name, variable in ensure_named_variables(model).items()
        if name not in skipped
    }
    tensors = read_named_tensors(prefix, names=variables)
    missing = sorted(set(variables) - set(tensors))
    if missing:
        raise CheckpointError(
            f"{len(missing)} model variable(s) are not in {prefix} (was it written for another "
            "model or config?): " + ", ".join(missing[:10])
        )
    assign_named_tensors(variables, tensors, prefix)
    logging.info("Restored %d variables from %s", len(variables), prefix)
    return prefix


def checkpoint_step(prefix: str) -> int | None:
    """The global step stored in one of our checkpoints, else the ``-N`` suffix, else None."""
    reader = tf.train.load_checkpoint(prefix)
    key = "step" + _SUFFIX
    if reader.has_tensor(key):
        return int(reader.get_tensor(key))
    tail = os.path.basename(prefix).rsplit("-", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def ensure_named_variables(model) -> dict[str, tf.Variable]:
    """``model.named_variables()``, creating the variables first if the model is not built.

    Building runs one inference pass at ``model.min_input_size()`` (BN statistics untouched).
    """
    try:
        variables = model.named_variables()
    except RuntimeError:  # not built yet
        variables = {}
    if not variables:
        model.build_variables()
        variables = model.named_variables()
    return variables


def write_model_checkpoint(model, output_dir: str, name: str, step: int = 0) -> str:
    """Writes the model's variables as ``<output_dir>/<name>``, all files or none.

    The files are written into a temporary folder and renamed into place, then the
    ``checkpoint`` state file names the new prefix, so an interrupted write leaves the previous
    checkpoint (or nothing) and never a half-written one that ``restore_model`` would read.

    Args:
      model: a built ``SegmentationModel``.
      output_dir: the folder (created if needed).
      name: the checkpoint prefix inside it, e.g. ``pruned_model.ckpt``.
      step: the global step recorded with it.

    Returns:
      The checkpoint prefix written.
    """
    os.makedirs(output_dir, exist_ok=True)
    step_variable = tf.Variable(step, dtype=tf.int64, name="global_step")
    checkpoint = make_checkpoint(model, step=step_variable)
    temp = tempfile.mkdtemp(dir=output_dir, prefix=".tmp-ckpt-")
    try:
        checkpoint.write(os.path.join(temp, name))
        for entry in os.listdir(temp):
            os.replace(os.path.join(temp, entry), os.path.join(output_dir, entry))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    file_utils.atomic_write_text(
        os.path.join(output_dir, "checkpoint"),
        f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n',
    )
    return os.path.join(output_dir, name)

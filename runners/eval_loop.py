"""Evaluating checkpoints from a pipeline config: once, continuously, or from one on.

:func:`build_eval_runner` reads a ``PipelineConfig`` through the builders into
a :class:`core.evaluation.evaluator.EvalRunner`; :func:`evaluate_checkpoint`,
:func:`evaluate_continuously` (wait for new checkpoints, evaluate each once)
and :func:`evaluate_all_from` (one checkpoint and every later one, then exit)
are what ``eval.py`` calls via :func:`run`. :func:`build_eval_hook` gives ``train.py`` the
same runner as a training hook (evaluation during training, ``--eval_every_n_steps``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from absl import logging

from builders import (
    config_util,
    dataset_builder,
    dataset_metadata_builder,
    losses_builder,
    model_builder,
)
from core.checkpoints import checkpoint_utils
from core.checkpoints.checkpoint_utils import CheckpointError
from core.evaluation.evaluator import EvalOptions, EvalRunner
from core.training.eval_hook import EvalHook
from runners.train_options import TrainOptions

# Where train.py's evaluation during training writes, inside the logdir.
TRAIN_EVAL_DIR = "eval"
TRAIN_BEST_DIR = "best"
TRAIN_CHECKPOINT_NAME = "model.ckpt"  # runners.trainer.CHECKPOINT_NAME (trainer imports us)


def build_eval_runner(config, options: EvalOptions | None = None) -> EvalRunner:
    """Builds the model, the evaluation dataset, the loss and the dataset metadata from a config.

    With ``train_config.quantize_with_delay`` the model gets the training's fake quantization:
    a checkpoint at or past the delay is evaluated as the simulated int8 model
    (:mod:`core.evaluation.quantized_eval`).

    Raises:
      ConfigError: the config has no ``eval_input_reader``.
      ValueError, FileNotFoundError: from the builders (bad values, missing records).
    """
    if not config.HasField("eval_input_reader"):
        raise config_util.ConfigError(
            "the config has no eval_input_reader: add eval_input_reader { "
            "tf_record_input_reader { input_path: '/path/to/val.record' } } to evaluate."
        )
    options = options or EvalOptions()
    eval_config = config.eval_config
    if not config.HasField("eval_config"):
        logging.info("The config has no eval_config; using its defaults (no eval padding).")
    input_type = eval_config.eval_input_type.WhichOneof("eval_input_type_oneof")
    if options.write_predictions_dir and input_type == "cropped_eval_input":
        # The official script needs predictions of the whole image, at the ground truth's size.
        raise config_util.ConfigError(
            "eval_config.eval_input_type is cropped_eval_input, which predicts a crop of each "
            "image; to write predictions for the official evaluation use padded_eval_input "
            "(or no eval_input_type)."
        )
    _, model_config = model_builder.model_config(config)
    metadata = dataset_metadata_builder.build(config)  # fails on a bad dataset before building
    model = model_builder.build(config.model)
    # Eval mode yields only the main output, so the loss holds only its weight.
    loss = losses_builder.build(model_config, model.output_specs(training=False))
    dataset = dataset_builder.build_eval_dataset(config.eval_input_reader, eval_config)
    num_examples = options.num_examples or eval_config.num_examples or None
    model.build_variables()
    # A quantization-aware-training run is scored as what it deploys past its delay.
    delay = config.train_config.quantize_with_delay if config.HasField("train_config") else 0
    return EvalRunner(
        model,
        dataset,
        num_classes=model_config.num_classes,
        ignore_label=eval_config.ignore_label,
        num_examples=num_examples,
        loss_config=loss.config,
        options=options,
        metadata=metadata,
        quantize_with_delay=delay,
    )


def evaluate_checkpoint(
    config, checkpoint_path: str, eval_dir: str, options: EvalOptions | None = None
) -> dict[str, Any]:
    """Evaluates one checkpoint (a prefix, or a directory's latest).

    Args:
      config: a ``PipelineConfig`` with ``model``, ``eval_config`` and ``eval_input_reader``.
      checkpoint_path: e.g. ``train_dir/model.ckpt-1000`` or ``train_dir``.
      eval_dir: where results and summaries are written.
      options: see :class:`EvalOptions`.

    Returns:
      The results (see :meth:`EvalRunner.evaluate`).
    """
    prefix = checkpoint_utils.resolve_checkpoint(checkpoint_path)  # fail before building
    return build_eval_runner(config, options).evaluate(prefix, eval_dir)


def build_eval_hook(config, logdir: str, options: TrainOptions, chief: bool = True) -> EvalHook:
    """The hook of ``train.py --eval_every_n_steps``: eval.py's runner, every N steps.

    The runner is :func:`build_eval_runner`'s, so the model (float32, a copy outside any
    ``tf.distribute`` strategy), the dataset, the evaluators, the JSON files and the summaries
    are eval.py's. Build it after the training model and data: its model's initialisers then
    draw nothing a seeded run's training uses.

    Args:
      config: the training ``PipelineConfig`` (with ``eval_input_reader``).
      logdir: the training directory; the best checkpoint goes to ``<logdir>/best``.
      options: ``eval_every_n_steps`` (>= 1), ``eval_num_examples`` (0:
        ``eval_config.num_examples``) and ``eval_dir`` (empty: ``<logdir>/eval``) are read.
      chief: False on a non-chief worker, which only takes part in the saves.

    Raises:
      ConfigError: the config has no ``eval_input_reader``.
      ValueError, FileNotFoundError: from the builders (bad values, missing records).
    """
    runner = None
    if chief:
        eval_options = EvalOptions(num_examples=options.eval_num_examples or None)
        runner = build_eval_runner(config, eval_options)
    return EvalHook(
        runner,
        options.eval_every_n_steps,
        options.eval_dir or os.path.join(logdir, TRAIN_EVAL_DIR),
        best_dir=os.path.join(logdir, TRAIN_BEST_DIR),
        checkpoint_name=TRAIN_CHECKPOINT_NAME,
    )


def _final_step(config) -> int | None:
    if config.HasField("train_config") and config.train_config.num_steps > 0:
        return int(config.train_config.num_steps)
    return None


def _require_dir(train_dir: str) -> None:
    if not tf.io.gfile.isdir(train_dir):
        raise CheckpointError(
            f"train_dir {train_dir!r} does not exist; pass the directory train.py writes its "
            "model.ckpt-<step> checkpoints to."
        )


def evaluate_continuously(
    config,
    train_dir: str,
    eval_dir: str,
    options: EvalOptions | None = None,
    timeout_secs: float | None = None,
) -> list[dict[str, Any]]:
    """Waits for new checkpoints in ``train_dir`` and evaluates each once.

    Only the newest checkpoint is taken when several appeared during an
    evaluation (as the original's ``evaluation_loop``). The loop ends after the
    checkpoint of ``train_config.num_steps`` (training is over), or when no new
    checkpoint appears for ``timeout_secs``.

    Args:
      config: see :func:`evaluate_checkpoint`.
      train_dir: the training directory.
      eval_dir: where results and summaries are written.
      options: see :class:`EvalOptions`.
      timeout_secs: stop after waiting this long for a new checkpoint; None waits forever.

    Returns:
      The results of each evaluated checkpoint, in order.

    Raises:
      CheckpointError: ``train_dir`` does not exist, or no checkpoint appeared
        before the timeout.
    """
    _require_dir(train_dir)
    runner = build_eval_runner(config, options)
    final_step = _final_step(config)
    results = []
    logging.info(
        "Waiting for checkpoints in %s (timeout: %s)",
        train_dir,
        "none" if timeout_secs is None else f"{timeout_secs} s",
    )
    for prefix in tf.train.checkpoints_iterator(train_dir, timeout=timeout_secs):
        try:
            result = runner.evaluate(prefix, eval_dir)
        except CheckpointError as error:
            # The trainer's CheckpointManager may delete an old checkpoint meanwhile.
            logging.warning("Skipping %s: %s", prefix, error)
            continue
        results.append(result)
        if final_step is not None and result["step"] is not None and result["step"] >= final_step:
            logging.info("Evaluated the final checkpoint (step %d); stopping.", result["step"])
            break
    if not results:
        raise CheckpointError(
            f"no checkpoint appeared in {train_dir!r} within {timeout_secs} s; is train.py "
            "writing there?"
        )
    return results


def _matches(path: str, wanted: str) -> bool:
    if os.path.abspath(path) == os.path.abspath(wanted) or os.path.basename(path) == wanted:
        return True
    # A bare step number, e.g. 1000 for model.ckpt-1000.
    return wanted.isdigit() and path.rsplit("-", 1)[-1] == wanted


def evaluate_all_from(
    config,
    train_dir: str,
    first_checkpoint: str,
    eval_dir: str,
    options: EvalOptions | None = None,
) -> list[dict[str, Any]]:
    """Evaluates ``first_checkpoint`` and every later one in ``train_dir``'s checkpoint state.

    Args:
      config: see :func:`evaluate_checkpoint`.
      train_dir: the training directory (its ``checkpoint`` state file lists
        the checkpoints kept, oldest first).
      first_checkpoint: a listed checkpoint: its path, its name
        (``model.ckpt-1000``) or its step (``1000``).
      eval_dir: where results and summaries are written.
      options: see :class:`EvalOptions`.

    Returns:
      The results of each checkpoint, oldest first.

    Raises:
      CheckpointError: no checkpoint state, or ``first_checkpoint`` is not listed.
    """
    _require_dir(train_dir)
    state = tf.train.get_checkpoint_state(train_dir)
    listed = list(state.all_model_checkpoint_paths) if state else []
    if not listed:
        raise CheckpointError(f"no checkpoint state in {train_dir!r}; has training saved any?")
    first = next((i for i, path in enumerate(listed) if _matches(path, first_checkpoint)), None)
    if first is None:
        raise CheckpointError(
            f"checkpoint {first_checkpoint!r} is not in the checkpoint state of {train_dir!r}; "
            f"listed: {', '.join(os.path.basename(p) for p in listed)}"
        )
    runner = build_eval_runner(config, options)
    return [runner.evaluate(path, eval_dir) for path in listed[first:]]


def run(
    config_path: str,
    train_dir: str,
    eval_dir: str,
    config_override: Sequence[str] = (),
    options: EvalOptions | None = None,
    evaluate_all_from_checkpoint: str | None = None,
    timeout_secs: float | None = None,
    limit_gpu_memory: bool = False,
) -> list[dict[str, Any]]:
    """What ``eval.py`` runs: load the config, then one of the two modes.

    Args:
      config_path: the pipeline config file.
      train_dir: the training directory holding the checkpoints.
      eval_dir: where results and summaries are written (created).
      config_override: text-format overrides applied to the config.
      options: see :class:`EvalOptions`.
      evaluate_all_from_checkpoint: evaluate this checkpoint and every later
        one, then return (:func:`evaluate_all_from`); None waits for new ones
        (:func:`evaluate_continuously`).
      timeout_secs: see :func:`evaluate_continuously`.
      limit_gpu_memory: let GPU memory grow as needed instead of reserving it all.

    Returns:
      The results of each evaluated checkpoint, in order.

    Raises:
      ConfigError, CheckpointError, EvaluationError, FileNotFoundError: user
        errors with a message that says what to fix (see ``USER_ERRORS``).
    """
    if limit_gpu_memory:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    config = config_util.load_pipeline_config(config_path, list(config_override))
    os.makedirs(eval_dir, exist_ok=True)
    if evaluate_all_from_checkpoint:
        return evaluate_all_from(config, train_dir, evaluate_all_from_checkpoint, eval_dir, options)
    return evaluate_continuously(config, train_dir, eval_dir, options, timeout_secs)

"""Training a pipeline config: builds the run, assembles its hooks, runs the loop.

:func:`train` (called by ``train.py`` and ``train_mem_saving.py`` through
``runners.train_flags``, the demo and the tests) picks the ``tf.distribute`` strategy before any
other op runs; builds the data and, with :func:`build_train_step` (which the training benchmark
reuses), the model (synchronised batch norm with several replicas), loss, optimizer and compiled
step; resumes from the newest ``<logdir>/model.ckpt-<step>`` or initialises from
``fine_tune_checkpoint``; then runs ``core.training.loop.TrainLoop`` to ``num_steps`` (0: until
stopped) with the hooks of ``runners.train_hooks.build_hooks``: NaN/Inf and divergence guard,
memory and progress lines, summaries, BN recalibration, and ``tf.train.CheckpointManager``
checkpoints (every ``save_interval_secs`` and at the end, in the slim-named format that eval,
export and compress read). ``extra_hooks`` add behaviours (evaluation during training, EMA, ...)
without editing the loop; ``train_config.quantize_with_delay`` adds quantization-aware training.

With a ``seed`` the input order and augmentation are reproducible, and a resumed run skips the
batches already trained on, so it ends where an uninterrupted run would; without a seed a
resumed run draws fresh random batches, as the original did.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import keras
import tensorflow as tf
from absl import logging

from builders import (
    config_util,
    dataset_builder,
    legacy_fields,
    losses_builder,
    model_builder,
    optimizer_builder,
)
from core.checkpoints import checkpoint_init, checkpoint_utils
from core.training import distribution, quantization
from core.training.hooks import NonFiniteLossError, ProgressHook
from core.training.loop import HookBase, TrainLoop
from core.training.precision import dtype_policy, precision_policy
from core.training.train_progress import peak_memory
from core.training.train_step import TrainStep
from core.training.variables import auxiliary_keys, trainable_variables
from models import recompute_plan
from runners import eval_loop
from runners.common import build_model
from runners.train_hooks import CHECKPOINT_NAME, build_hooks, resolve_hooks
from runners.train_options import TrainError, TrainingParts, TrainOptions, TrainResult

# --------------------------------------------------------------------------- building


def _model_config(config):
    try:
        return model_builder.model_config(config)[1]
    except ValueError as error:
        raise TrainError(str(error)) from None


def _dataset(config, batch_size: int, ignore_label: int, seed: int | None) -> tf.data.Dataset:
    if not config.HasField("train_input_reader"):
        raise TrainError(
            "the config has no train_input_reader; add train_input_reader { "
            "tf_record_input_reader { input_path: '...' } }."
        )
    return dataset_builder.build_train_dataset(config, batch_size, ignore_label, seed)


def _build_model(config, options: TrainOptions, replicas: int, policy: str | None):
    with dtype_policy(policy):
        model = build_model(config, sync_batch_norm=replicas > 1, build_variables=False)
        try:
            model.build_variables()
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            if not policy:
                raise
            raise TrainError(
                f"--mixed_precision: the model does not run under the {policy} policy ({error}). "
                "Train without --mixed_precision."
            ) from error
    if options.gradient_checkpointing:
        requested = options.checkpoint_nodes or ("sqrt",)
        try:
            if len(requested) == 1 and requested[0] in recompute_plan.PLANS:
                # A plan chosen from the model's measured activation bytes (models.recompute_plan).
                model.set_recompute_groups(recompute_plan.plan_groups(model, requested[0]))
                segments = tuple(sorted(model.recompute_scopes))
            else:
                segments = model.set_recompute_scopes(requested)
        except ValueError as error:
            raise TrainError(str(error)) from None
        logging.info("Gradient checkpointing (tf.recompute_grad) of: %s", ", ".join(segments))
    return model


def _initialize(model, checkpoint, logdir: str, train_config) -> int:
    """Resumes from the logdir's newest checkpoint, else fine-tunes; returns the start step."""
    latest = tf.train.latest_checkpoint(logdir)
    if latest:
        try:
            checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            raise TrainError(
                f"cannot resume from {latest}: it does not match this model and optimizer "
                f"({error}). Was it written with another config? Use a new --logdir, or "
                "restore the config it was trained with."
            ) from None
        step = int(checkpoint.step.numpy())
        logging.info("Resuming from %s at step %d", latest, step)
        return step
    if train_config.fine_tune_checkpoint:
        # Logs what was restored, missing or skipped.
        checkpoint_init.initialize_from_fine_tune_checkpoint(
            model, train_config.fine_tune_checkpoint, train_config.fine_tune_checkpoint_type
        )
    else:
        logging.info(
            "No checkpoint in %s and no fine_tune_checkpoint: training from scratch.", logdir
        )
    return 0


def _write_config(config, logdir: str) -> None:
    existing = os.path.join(logdir, config_util.PIPELINE_CONFIG_NAME)
    if os.path.exists(existing):
        with open(existing, encoding="utf-8") as handle:
            previous = config_util.parse_pipeline_text(handle.read(), existing)
        if previous != config:
            logging.warning(
                "%s differs from the config of this run; it is replaced by the new one.",
                existing,
            )
    config_util.write_pipeline_config(config, logdir)


def build_train_step(
    config, options: TrainOptions, strategy: tf.distribute.Strategy
) -> TrainingParts:
    """Builds the model, loss, optimizer and compiled step of ``config`` under ``strategy``.

    The initial weights draw from the global seed: set it first for a reproducible model.

    Args:
      config: a ``PipelineConfig``.
      options: its precision, recompute, momentum, XLA and image-summary settings are read.
      strategy: the run's strategy (``tf.distribute.get_strategy()`` for one device).

    Raises:
      TrainError: no model, a bad ``--checkpoint_nodes`` or a model that --mixed_precision
        cannot run (named in the message).
    """
    model_config = _model_config(config)
    train_config = config.train_config
    policy = precision_policy(options.mixed_precision)
    with strategy.scope():
        model = _build_model(config, options, strategy.num_replicas_in_sync, policy)
        loss_fn = losses_builder.build(model_config, model.output_specs(training=True))
        optimizer, schedule = optimizer_builder.build(
            train_config.optimizer, use_tf1_momentum=options.use_tf1_momentum
        )
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        train_aux = any(key in loss_fn.weights for key in auxiliary_keys(model))
        freeze = train_config.freeze_fine_tune_backbone
        variables = trainable_variables(model, freeze_backbone=freeze, train_auxiliary=train_aux)
        # Slots must exist inside the scope before the first distributed step (and the restore).
        optimizer.build(variables)
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    step_fn = TrainStep(
        model,
        loss_fn,
        optimizer,
        variables,
        strategy,
        global_step,
        add_regularization_loss=train_config.add_regularization_loss,
        image_summaries=options.image_summaries and options.save_summaries_steps > 0,
        include_aux=train_aux,
        jit_compile=options.jit_compile,
    )
    return TrainingParts(model, loss_fn, optimizer, schedule, variables, global_step, step_fn)


def _nothing_to_train(logdir: str, step: int, num_steps: int) -> TrainResult:
    """The result of a run whose resumed checkpoint already reaches ``num_steps``."""
    latest = tf.train.latest_checkpoint(logdir)
    logging.info(
        "Checkpoint %s at step %d already reaches num_steps %d; nothing to train (raise "
        "num_steps to train further).",
        latest,
        step,
        num_steps,
    )
    return TrainResult(step, math.nan, {}, latest, 0.0, peak_memory()[0])


def train(
    config,
    logdir: str,
    options: TrainOptions | None = None,
    extra_hooks: Sequence[HookBase | str] = (),
) -> TrainResult:
    """Trains the config's model, resuming from ``logdir`` when it holds checkpoints.

    Args:
      config: a validated ``PipelineConfig`` (``builders.config_util.load_pipeline_config``).
      logdir: where checkpoints, ``pipeline.config`` and summaries go; created if needed.
      options: the run's settings (defaults: one device, the original's intervals).
      extra_hooks: more hooks (or registered hook names), run after the built-in ones.

    Returns:
      A :class:`TrainResult`.

    Raises:
      TrainError: a setting or the config does not allow training (named in the message).
      FileNotFoundError: the training records do not exist.
      NonFiniteLossError: the loss became NaN/Inf; nothing after the last good checkpoint is
        saved.
    """
    options = options or TrainOptions()
    extra_hooks = resolve_hooks(extra_hooks)  # a misspelt name fails before any work
    if not logdir:
        raise TrainError("--logdir is required: the directory for checkpoints and summaries.")
    if os.path.exists(logdir) and not os.path.isdir(logdir):
        raise TrainError(f"--logdir {logdir!r} is a file; pass a directory.")
    # Multi-worker collectives must be configured before any other op runs.
    strategy = distribution.get_strategy(options.num_clones, options.clone_on_cpu)
    chief = distribution.is_chief(strategy)
    train_config = config.train_config
    model_config = _model_config(config)
    num_steps = train_config.num_steps if options.num_steps is None else options.num_steps
    batch_size = train_config.batch_size
    replicas = strategy.num_replicas_in_sync
    if batch_size < 1 or batch_size % replicas:
        raise TrainError(
            f"train_config.batch_size ({batch_size}) must be a positive multiple of the "
            f"{replicas} replicas (--num_clones or the TF_CONFIG workers); each replica gets "
            "batch_size / replicas examples."
        )
    if options.seed is not None:
        keras.utils.set_random_seed(options.seed)
    os.makedirs(logdir, exist_ok=True)
    if chief:
        _write_config(config, logdir)
        legacy_fields.log_ignored_fields(config)
    # The data is built before the model: with a seed, the order of the random ops fixes both.
    dataset = _dataset(config, batch_size, model_config.loss.ignore_label, options.seed)
    parts = build_train_step(config, options, strategy)
    delay = train_config.quantize_with_delay
    with strategy.scope():  # ranges attached (off) before the checkpoint object is made
        qat_state = quantization.attach_for_training(parts.model, delay)
    if qat_state is not None:
        qat_hook = quantization.QuantizationDelayHook(qat_state, delay, parts.step_fn.retrace)
        extra_hooks = [qat_hook, *extra_hooks]
    checkpoint = checkpoint_utils.make_checkpoint(parts.model, parts.optimizer, parts.global_step)
    start_step = _initialize(parts.model, checkpoint, logdir, train_config)
    if num_steps and start_step >= num_steps:
        return _nothing_to_train(logdir, start_step, num_steps)
    if start_step and options.seed is not None:
        # The seeded input is the same sequence on every run: skip what was trained on.
        logging.info("Skipping the %d batches already trained on (--seed is set).", start_step)
        dataset = dataset.skip(start_step)
    elif start_step:
        logging.info("No --seed: the resumed run draws fresh random batches.")
    if options.eval_every_n_steps:  # built after the model and data: shifts no seeded draw
        extra_hooks = [eval_loop.build_eval_hook(config, logdir, options, chief), *extra_hooks]
    hooks = build_hooks(
        options,
        parts,
        checkpoint,
        logdir=logdir,
        save_dir=distribution.worker_directory(logdir, strategy),
        batch_size=batch_size,
        chief=chief,
        # A lone process can save on Ctrl-C; in a cluster a save needs every worker.
        save_on_interrupt=distribution.cluster_spec_from_env() is None,
        keep_every_n_hours=train_config.keep_checkpoint_every_n_hours or None,
        extra_hooks=extra_hooks,
        # Built at the end only: it draws nothing from the seeded sequence of the run.
        recalibration_batches=lambda: _dataset(
            config, batch_size, model_config.loss.ignore_label, options.seed or 0
        ),
    )
    optimizer = parts.optimizer
    loop = TrainLoop(
        parts.step_fn,
        iter(strategy.experimental_distribute_dataset(dataset)),
        start_step,
        num_steps,
        hooks,
        learning_rate_fn=lambda: parts.schedule(optimizer.iterations - 1),
        model=parts.model,
    )
    logging.info(
        "Training %s on %d replica(s), batch %d, from step %d to %s; logdir %s",
        parts.model.name,
        replicas,
        batch_size,
        start_step,
        num_steps or "forever",
        logdir,
    )
    step = loop.run()
    progress = next(hook for hook in hooks if isinstance(hook, ProgressHook))
    result = TrainResult(
        step=step,
        loss=loop.losses.get("total", float("nan")),
        losses=loop.losses,
        checkpoint_path=tf.train.latest_checkpoint(logdir),
        steps_per_sec=progress.mean_speed(),
        peak_memory_bytes=peak_memory()[0],
    )
    logging.info(
        "Finished at step %d, loss %.4f, checkpoint %s", step, result.loss, result.checkpoint_path
    )
    return result


__all__ = ["CHECKPOINT_NAME", "NonFiniteLossError", "TrainError", "TrainOptions", "TrainResult"]
__all__ += ["TrainingParts", "build_hooks", "build_train_step", "resolve_hooks", "train"]

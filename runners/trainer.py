"""The training loop: model, data, optimizer, checkpoints, summaries, distribution.

:func:`train` is what ``train.py`` and ``train_mem_saving.py`` call (through
``runners.train_flags``) and what the demo and tests call directly. It

* picks the ``tf.distribute`` strategy (``core.training.distribution``) before any other op runs;
* builds the data, model, loss and optimizer from the pipeline config with the builders, the
  model with synchronised batch norm when there are several replicas;
* resumes from the newest ``<logdir>/model.ckpt-<step>`` (weights, optimizer slots, step) when
  there is one, else initialises from ``fine_tune_checkpoint``;
* runs the compiled step (``core.training.train_step``) ``num_steps`` times (0: until stopped), checking
  every step's loss for NaN/Inf, logging progress and writing summaries (``core.training.summaries``);
* saves with ``tf.train.CheckpointManager`` every ``save_interval_secs`` and at the end, in the
  slim-named format of ``core.checkpoints.checkpoint_utils`` that eval, export and compress read.

With a ``seed`` the input order and augmentation are reproducible, and a resumed run skips the
batches already trained on, so it ends where an uninterrupted run would (skipping re-reads and
re-preprocesses those batches; without a seed a resumed run simply draws fresh batches, as the
original did).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import keras
import tensorflow as tf
from absl import logging

from builders import (
    config_util,
    dataset_builder,
    losses_builder,
    model_builder,
    optimizer_builder,
    preprocessor_builder,
)
from core.checkpoints import checkpoint_init, checkpoint_utils
from core.training import distribution
from core.training.summaries import SummaryWriter
from core.training.train_progress import ProgressLog, peak_memory
from core.training.train_step import TrainStep

CHECKPOINT_NAME = "model.ckpt"


class TrainError(ValueError):
    """A training run cannot start as configured; the message says what to change."""


class NonFiniteLossError(RuntimeError):
    """The loss (or the weights) became NaN or Inf; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Settings of a run that are not in the pipeline config (the scripts' flags).

    Attributes:
      num_clones: replicas on this machine (MirroredStrategy when > 1).
      clone_on_cpu: run the replicas on (logical) CPU devices.
      num_steps: overrides ``train_config.num_steps`` (0 trains until stopped); None keeps it.
      save_interval_secs: seconds between checkpoints (one is always written at the end).
      max_checkpoints_to_keep: newest checkpoints kept in the logdir.
      log_every_n_steps: steps between progress lines.
      save_summaries_steps: steps between TensorBoard summaries; 0 disables them.
      image_summaries: add input, ground-truth and prediction images to the summaries.
      mixed_precision: compute in float16 (GPU, with loss scaling) or bfloat16 (CPU).
      seed: makes initialisation, input order and augmentation reproducible.
      use_tf1_momentum: TF1 ``MomentumOptimizer`` semantics under a decaying rate.
      gradient_checkpointing: recompute segments in backprop (``train_mem_saving.py``).
      checkpoint_nodes: segments (or the original's node names) to recompute; empty means the
        model's defaults (each backbone block and the fusion units).
      log_memory: report peak memory with the progress lines.
      jit_compile: compile the train step with XLA (optional: on a CPU it is slower, see
        docs/benchmarks.md).
    """

    num_clones: int = 1
    clone_on_cpu: bool = False
    num_steps: int | None = None
    save_interval_secs: float = 600.0
    max_checkpoints_to_keep: int = 15
    log_every_n_steps: int = 10
    save_summaries_steps: int = 100
    image_summaries: bool = False
    mixed_precision: bool = False
    seed: int | None = None
    use_tf1_momentum: bool = True
    gradient_checkpointing: bool = False
    checkpoint_nodes: tuple[str, ...] = ()
    log_memory: bool = False
    jit_compile: bool = False

    def __post_init__(self) -> None:
        checks = (
            ("num_clones", self.num_clones >= 1, ">= 1"),
            ("num_steps", self.num_steps is None or self.num_steps >= 0, ">= 0 (0: forever)"),
            ("save_interval_secs", self.save_interval_secs >= 0, ">= 0"),
            ("max_checkpoints_to_keep", self.max_checkpoints_to_keep >= 1, ">= 1"),
            ("log_every_n_steps", self.log_every_n_steps >= 1, ">= 1"),
            ("save_summaries_steps", self.save_summaries_steps >= 0, ">= 0 (0: off)"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise TrainError(f"--{name} must be {expected}, got {getattr(self, name)!r}.")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run reports.

    Attributes:
      step: the global step reached.
      loss: the total loss of the last step (nan if no step ran).
      losses: every loss of the last step, by key (``total`` included).
      checkpoint_path: the newest checkpoint prefix, e.g. ``logdir/model.ckpt-4``.
      steps_per_sec: mean speed over the run, the first (tracing) step excluded.
      peak_memory_bytes: peak GPU memory, or the process's peak RSS on CPU.
    """

    step: int
    loss: float
    losses: dict[str, float]
    checkpoint_path: str | None
    steps_per_sec: float
    peak_memory_bytes: int


# --------------------------------------------------------------------------- building


def _model_config(config):
    kind = config.model.WhichOneof("model")
    if kind is None:
        raise TrainError("the config has no model: add model { icnet { ... } } or { pspnet }.")
    return getattr(config.model, kind)


def _dataset(config, batch_size: int, ignore_label: int, seed: int | None) -> tf.data.Dataset:
    if not config.HasField("train_input_reader"):
        raise TrainError(
            "the config has no train_input_reader; add train_input_reader { "
            "tf_record_input_reader { input_path: '...' } }."
        )
    preprocess = preprocessor_builder.build(config.train_config.preprocessor_step, ignore_label)
    return dataset_builder.build(
        config.train_input_reader,
        batch_size,
        preprocess,
        is_training=True,
        ignore_label=ignore_label,
        seed=seed,
    )


def _precision_policy(enabled: bool) -> str | None:
    if not enabled:
        return None
    # float16 needs loss scaling and pays off on GPUs; CPUs have fast bfloat16 instead.
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


def _build_model(config, options: TrainOptions, replicas: int, policy: str | None):
    previous = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        model = model_builder.build(config.model, sync_batch_norm=replicas > 1)
        try:
            model.build_variables()
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            if not policy:
                raise
            raise TrainError(
                f"--mixed_precision: the model does not run under the {policy} policy ({error}). "
                "Train without --mixed_precision."
            ) from error
    finally:
        keras.config.set_dtype_policy(previous)
    if options.gradient_checkpointing:
        requested = options.checkpoint_nodes or model.default_recompute_scopes()
        try:
            segments = model.set_recompute_scopes(requested)
        except ValueError as error:
            raise TrainError(str(error)) from None
        logging.info("Gradient checkpointing (tf.recompute_grad) of: %s", ", ".join(segments))
    return model


def _trainable_variables(model, train_config, loss_fn) -> list:
    excluded = set()
    if train_config.freeze_fine_tune_backbone:
        # Only the backbone's weights are frozen; its batch norm still updates its statistics
        # in training mode, as the original's (slim is_training stayed on).
        excluded.update(id(v) for v in checkpoint_init.backbone_variables(model))
        logging.info("freeze_fine_tune_backbone: the backbone's weights are not trained.")
    if not any(key in loss_fn.weights for key in _aux_keys(model)):
        # No auxiliary loss: the aux classifiers get no gradient, so leave them out.
        aux_layers = [layer for layer in model.scoped_layers() if layer.scope in model.aux_scopes()]
        for layer in aux_layers:
            excluded.update(id(v) for v in layer.slim_variables().values())
    # Keras variables wrap the tf.Variables that the name maps hold.
    return [v for v in model.trainable_variables if id(getattr(v, "value", v)) not in excluded]


def _aux_keys(model) -> list[str]:
    return [spec.key for spec in model.output_specs(training=True) if spec.auxiliary]


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


def _all_finite(variables) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables)


# --------------------------------------------------------------------------- training


def train(config, logdir: str, options: TrainOptions | None = None) -> TrainResult:
    """Trains the config's model, resuming from ``logdir`` when it holds checkpoints.

    Args:
      config: a validated ``PipelineConfig`` (``builders.config_util.load_pipeline_config``).
      logdir: where checkpoints, ``pipeline.config`` and summaries go; created if needed.
      options: the run's settings (defaults: one device, the original's intervals).

    Returns:
      A :class:`TrainResult`.

    Raises:
      TrainError: a setting or the config does not allow training (named in the message).
      FileNotFoundError: the training records do not exist.
      NonFiniteLossError: the loss became NaN/Inf; nothing after the last good checkpoint is
        saved.
    """
    options = options or TrainOptions()
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
    ignore_label = model_config.loss.ignore_label
    dataset = _dataset(config, batch_size, ignore_label, options.seed)

    policy = _precision_policy(options.mixed_precision)
    with strategy.scope():
        model = _build_model(config, options, replicas, policy)
        loss_fn = losses_builder.build(model_config, model.output_specs(training=True))
        optimizer, schedule = optimizer_builder.build(
            train_config.optimizer, use_tf1_momentum=options.use_tf1_momentum
        )
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        variables = _trainable_variables(model, train_config, loss_fn)
        # Slots must exist inside the scope before the first distributed step (and the restore).
        optimizer.build(variables)
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoint = checkpoint_utils.make_checkpoint(model, optimizer, global_step)
    save_dir = distribution.worker_directory(logdir, strategy)
    manager = tf.train.CheckpointManager(
        checkpoint,
        directory=save_dir,
        max_to_keep=options.max_checkpoints_to_keep,
        checkpoint_name=CHECKPOINT_NAME,
        step_counter=global_step,
    )
    start_step = _initialize(model, checkpoint, logdir, train_config)
    if start_step and options.seed is not None:
        # The seeded input is the same sequence on every run: skip what was trained on.
        logging.info("Skipping the %d batches already trained on (--seed is set).", start_step)
        dataset = dataset.skip(start_step)
    elif start_step:
        logging.info("No --seed: the resumed run draws fresh random batches.")
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    step_fn = TrainStep(
        model,
        loss_fn,
        optimizer,
        variables,
        strategy,
        global_step,
        add_regularization_loss=train_config.add_regularization_loss,
        image_summaries=options.image_summaries and options.save_summaries_steps > 0,
        include_aux=any(key in loss_fn.weights for key in _aux_keys(model)),
        jit_compile=options.jit_compile,
    )
    writer = SummaryWriter(logdir, enabled=chief and options.save_summaries_steps > 0)
    progress = ProgressLog(
        num_steps, batch_size, start_step, options.log_memory, options.log_every_n_steps
    )
    logging.info(
        "Training %s on %d replica(s), batch %d, from step %d to %s; logdir %s",
        model.name,
        replicas,
        batch_size,
        start_step,
        num_steps or "forever",
        logdir,
    )

    def save(step: int) -> None:
        # Moving statistics included: a NaN there ruins evaluation just as well.
        if not _all_finite(model.named_variables().values()):
            raise NonFiniteLossError(
                f"the weights became NaN/Inf by step {step}; not saving them. The last good "
                f"checkpoint is {manager.latest_checkpoint or 'none'}. Lower the learning rate."
            )
        path = manager.save(checkpoint_number=step)
        logging.info("Saved %s", path)

    step, losses = start_step, {}
    last_save, saved_step = time.time(), start_step
    try:
        while num_steps == 0 or step < num_steps:
            want_save = time.time() - last_save >= options.save_interval_secs
            out = step_fn(iterator, want_save)
            step += 1
            losses = {key: float(value) for key, value in out["losses"].items()}
            if not math.isfinite(losses["total"]):
                raise NonFiniteLossError(
                    f"the total loss is {losses['total']} at step {step} (losses: {losses}); "
                    "training stopped and this step's weights were not saved. The last good "
                    f"checkpoint is {manager.latest_checkpoint or 'none (none was written)'}. "
                    "Lower the learning rate, check the labels (num_classes, ignore_label) or "
                    "try without --mixed_precision."
                )
            learning_rate = float(schedule(optimizer.iterations - 1))
            progress.step_done(step, losses["total"], learning_rate)
            if options.save_summaries_steps and step % options.save_summaries_steps == 0:
                writer.scalars(step, losses, learning_rate, progress.speed or None)
                if step_fn.image_summaries:
                    writer.images(step, out["images"], out["labels"], out["predictions"])
            if float(out["save"]) > 0:
                save(step)
                last_save, saved_step = time.time(), step
        # Every worker takes this branch alike: saving is collective under TF_CONFIG.
        if step > saved_step:
            save(step)
    except KeyboardInterrupt:
        # A lone process can save on Ctrl-C; in a cluster a save needs every worker.
        if distribution.cluster_spec_from_env() is None and step > saved_step:
            logging.warning("Interrupted at step %d; saving a checkpoint first.", step)
            save(step)
        raise
    finally:
        writer.close()
        if not chief and tf.io.gfile.exists(save_dir):
            tf.io.gfile.rmtree(save_dir)
    result = TrainResult(
        step=step,
        loss=losses.get("total", float("nan")),
        losses=losses,
        checkpoint_path=tf.train.latest_checkpoint(logdir),
        steps_per_sec=progress.mean_speed(),
        peak_memory_bytes=peak_memory()[0],
    )
    logging.info(
        "Finished at step %d, loss %.4f, checkpoint %s", step, result.loss, result.checkpoint_path
    )
    return result


__all__ = ["NonFiniteLossError", "TrainError", "TrainOptions", "TrainResult", "train"]

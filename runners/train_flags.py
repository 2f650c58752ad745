"""The command-line flags of ``train.py`` and ``train_mem_saving.py`` and their one call.

The flag names are the original's. Its TF1 distribution flags (``--num_replicas``,
``--startup_delay_steps``, ``--num_ps_tasks``, ``--master``, ``--task``) are still accepted, so old
command lines run, but they are ignored with a warning: a ``TF_CONFIG`` environment variable now
describes a multi-worker cluster (``MultiWorkerMirroredStrategy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from absl import app, flags, logging

from runners import cli

if TYPE_CHECKING:
    from runners import trainer

# The trainer (and TensorFlow) is imported only once the flags have parsed: a flag mistake is
# reported in a fraction of a second (tests/test_bad_inputs.py checks it).

IGNORED_TF1_FLAGS = ("num_replicas", "startup_delay_steps", "num_ps_tasks", "master", "task")


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause; the scripts print their message instead of a traceback."""
    from builders import config_util  # noqa: PLC0415 - see the note above
    from core.checkpoints import checkpoint_utils  # noqa: PLC0415
    from core.training import distribution  # noqa: PLC0415
    from runners import trainer  # noqa: PLC0415

    return (
        config_util.ConfigError,
        trainer.TrainError,
        trainer.NonFiniteLossError,
        distribution.DistributionError,
        checkpoint_utils.CheckpointError,
        FileNotFoundError,
    )


def define_flags(mem_saving: bool = False, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the training flags on ``flag_values``.

    Args:
      mem_saving: add ``--checkpoint_nodes`` and keep 50 checkpoints by default, as the
        original's ``train_mem_saving.py`` did.
      flag_values: where to define them (tests use a fresh ``FlagValues``).
    """
    fv = flag_values
    flags.DEFINE_string("config_path", None, "Path to a pipeline config file.", flag_values=fv)
    flags.DEFINE_string(
        "logdir",
        None,
        "Directory for checkpoints, summaries and the effective pipeline.config; running the "
        "same command again resumes from its newest checkpoint.",
        flag_values=fv,
    )
    flags.DEFINE_multi_string(
        "config_override",
        [],
        "Text-format PipelineConfig applied over the config file (repeatable); repeated fields "
        "it sets replace the file's, e.g. 'train_config { num_steps: 100 }'.",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "image_summaries",
        False,
        "Add input, ground-truth and prediction images (Cityscapes colours) to the summaries.",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "num_clones", 1, "Model replicas on this machine (MirroredStrategy).", flag_values=fv
    )
    flags.DEFINE_boolean(
        "clone_on_cpu", False, "Run the replicas on CPU devices instead of GPUs.", flag_values=fv
    )
    flags.DEFINE_integer("save_interval_secs", 600, "Seconds between checkpoints.", flag_values=fv)
    flags.DEFINE_integer(
        "max_checkpoints_to_keep",
        50 if mem_saving else 15,
        "Number of newest checkpoints kept.",
        flag_values=fv,
    )
    flags.DEFINE_integer("log_every_n_steps", 10, "Steps between progress lines.", flag_values=fv)
    flags.DEFINE_integer(
        "save_summaries_steps",
        100,
        "Steps between TensorBoard summaries (0: none).",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "mixed_precision",
        False,
        "Mixed precision: float16 with loss scaling on GPUs, bfloat16 on CPUs.",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "seed",
        None,
        "Seed of initialisation, input order and augmentation; with it a resumed run ends "
        "exactly where an uninterrupted one would.",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "tf1_momentum",
        True,
        "Momentum optimizer with TF1 semantics (the accumulator is scaled by the current, "
        "decaying rate), as the original trained; --notf1_momentum uses Keras SGD.",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "log_memory",
        False,
        "Report peak memory with the progress lines (GPU memory; the process's peak RSS on CPU).",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "jit_compile",
        False,
        "Compile the train step with XLA. Optional: it can help on a GPU, and is much slower "
        "on a CPU (docs/benchmarks.md).",
        flag_values=fv,
    )
    flags.DEFINE_list(
        "extra_hooks",
        [],
        "Comma-separated names of training hooks registered in core.training.hooks.HOOKS (by a "
        "module listed in the config's custom_imports), run after the built-in ones.",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "eval_every_n_steps",
        0,
        "Evaluate on the config's eval_input_reader every N steps and at the last step, as "
        "eval.py does (metrics_<step>.json and summaries in --eval_dir), keeping the best "
        "checkpoint by mIoU in <logdir>/best; 0: off.",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "eval_num_examples",
        0,
        "Images per evaluation of --eval_every_n_steps; 0: eval_config.num_examples.",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "eval_dir", "", "Where --eval_every_n_steps writes; default <logdir>/eval.", flag_values=fv
    )
    flags.DEFINE_integer(
        "recalibrate_bn_batches",
        0,
        "At the end of training, recompute the batch-norm moving statistics over N training "
        "batches (weights frozen, seeded) and write them into the final checkpoint; 0: off.",
        flag_values=fv,
    )
    flags.DEFINE_float(
        "divergence_factor",
        1000.0,
        "Stop when the total loss exceeds this many times its median over the last 100 steps "
        "(a diverged run; the last checkpoint with a sane loss is named); 0: only NaN/Inf stop.",
        flag_values=fv,
    )
    if mem_saving:
        flags.DEFINE_list(
            "checkpoint_nodes",
            [],
            "What is recomputed in backprop (gradient checkpointing). A plan: 'sqrt' (the "
            "default when empty: every step, in Chen et al.'s sqrt(n) runs: the least memory, "
            "about 0.5x train.py's live tensors in benchmarks/RESULTS.md), 'measured' (the steps "
            "holding the most activation bytes, profiled) or 'original' (each backbone block and "
            "the fusion units). Or comma-separated names: segments (.../block1, FastPSPModule), "
            "steps (.../block1/unit_2, Conv_1) or the original's node names "
            "(.../block1/unit_3/bottleneck_v1/Relu, CascadeFeatureFusion/Relu), which select the "
            "segment they end.",
            flag_values=fv,
        )
    ignored = "Ignored (TF1 only): set TF_CONFIG for multi-worker training."
    flags.DEFINE_integer("num_replicas", 1, ignored, flag_values=fv)
    flags.DEFINE_integer("startup_delay_steps", 15, ignored, flag_values=fv)
    flags.DEFINE_integer("num_ps_tasks", 0, ignored, flag_values=fv)
    flags.DEFINE_string("master", "", ignored, flag_values=fv)
    flags.DEFINE_integer("task", 0, ignored, flag_values=fv)
    flags.mark_flags_as_required(["config_path", "logdir"], flag_values=fv)


def options_from_flags(
    flag_values: flags.FlagValues = flags.FLAGS, mem_saving: bool = False
) -> trainer.TrainOptions:
    """The :class:`runners.trainer.TrainOptions` the parsed flags describe."""
    from runners import trainer  # noqa: PLC0415 - imports TensorFlow

    fv = flag_values
    return trainer.TrainOptions(
        num_clones=fv.num_clones,
        clone_on_cpu=fv.clone_on_cpu,
        save_interval_secs=fv.save_interval_secs,
        max_checkpoints_to_keep=fv.max_checkpoints_to_keep,
        log_every_n_steps=fv.log_every_n_steps,
        save_summaries_steps=fv.save_summaries_steps,
        image_summaries=fv.image_summaries,
        mixed_precision=fv.mixed_precision,
        seed=fv.seed,
        use_tf1_momentum=fv.tf1_momentum,
        gradient_checkpointing=mem_saving,
        checkpoint_nodes=tuple(fv.checkpoint_nodes) if mem_saving else (),
        log_memory=fv.log_memory,
        jit_compile=fv.jit_compile,
        recalibrate_bn_batches=fv.recalibrate_bn_batches,
        divergence_factor=fv.divergence_factor,
        eval_every_n_steps=fv.eval_every_n_steps,
        eval_num_examples=fv.eval_num_examples,
        eval_dir=fv.eval_dir,
    )


def run(flag_values: flags.FlagValues = flags.FLAGS, mem_saving: bool = False):
    """Loads the config named by the flags and trains; returns the ``TrainResult``."""
    from builders import config_util  # noqa: PLC0415 - imports after the flags parsed
    from runners import input_checks, trainer  # noqa: PLC0415

    for name in IGNORED_TF1_FLAGS:
        if flag_values[name].present:
            logging.warning(
                "--%s is a TF1 distribution flag and is ignored; describe a multi-worker cluster "
                "with the TF_CONFIG environment variable (MultiWorkerMirroredStrategy), or use "
                "--num_clones for the GPUs of one machine.",
                name,
            )
    options = options_from_flags(flag_values, mem_saving)
    config = config_util.load_pipeline_config(flag_values.config_path, flag_values.config_override)
    input_checks.check_train_records(config)  # before anything is traced or written
    return trainer.train(config, flag_values.logdir, options, tuple(flag_values.extra_hooks))


def main(
    argv: Sequence[str], mem_saving: bool = False, flag_values: flags.FlagValues = flags.FLAGS
) -> None:
    """The scripts' ``main``: trains, or exits with status 1 and a one-line reason."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        run(flag_values, mem_saving)
    except user_errors() as error:
        cli.fail(error, name=argv[0])  # one line (a traceback too with --verbose)

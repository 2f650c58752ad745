"""Recomputes a checkpoint's batch-norm moving statistics over training images, weights frozen.

Example (the PSPNet stage of the two-stage recipe, 50 batches of its training input):
  python recalibrate_bn.py \
      --config_path configs/two_stage_icnet_1.0_1025_resnet_v1_stage_1.config \
      --input_checkpoint train_dir --output_dir recalibrated --num_batches 50

Runs the model in training mode (batch statistics normalise, as in training) over --num_batches
batches of the config's train_input_reader with its preprocessing, and sets every BN layer's
moving mean and variance to the population statistics of its input ("precise BN"). Writes
recalibrated/model.ckpt (same variable names; eval.py, export.py and compress.py read it) and
recalibrated/pipeline.config; see runners/recalibrate.py and docs/training.md.
"""

from __future__ import annotations

from absl import flags, logging

from runners import cli

flags.DEFINE_string("config_path", None, "Pipeline .config the checkpoint was trained with.")
flags.DEFINE_string("input_checkpoint", None, "Checkpoint prefix or training directory.")
flags.DEFINE_string("output_dir", None, "Directory for model.ckpt and pipeline.config.")
flags.DEFINE_integer("num_batches", 50, "Batches of training images to run.")
flags.DEFINE_integer(
    "batch_size", None, "Images per batch (default: train_config.batch_size of the config)."
)
flags.mark_flags_as_required(["config_path", "input_checkpoint", "output_dir"])
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.INFO)
    from runners import recalibrate as recalibration  # noqa: PLC0415 - after flag checks

    result = recalibration.recalibrate(
        config_path=FLAGS.config_path,
        input_checkpoint=FLAGS.input_checkpoint,
        output_dir=FLAGS.output_dir,
        num_batches=FLAGS.num_batches,
        batch_size=FLAGS.batch_size,
    )
    print(
        f"Recalibrated batch norm on {result.num_images} images; checkpoint: "
        f"{result.checkpoint}; config: {result.pipeline_config}"
    )


if __name__ == "__main__":
    # Its ValueErrors name the bad value; a bad training record is one line, before TensorFlow.
    cli.run_main(main, extra_errors=(ValueError,), check_records=("train_input_reader",))

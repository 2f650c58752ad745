r"""Evaluates segmentation checkpoints: per-class IoU and mIoU over the eval split.

By default it watches --train_dir and evaluates each new checkpoint once, as
the original did (waiting forever unless --eval_timeout_secs is set; it also
stops after the checkpoint of train_config.num_steps). With
--evaluate_all_from_checkpoint it evaluates that checkpoint and every later
one kept in --train_dir, then exits.

Results per checkpoint: a per-class table on the console,
<eval_dir>/metrics_<step>.json (and metrics_latest.json) and TensorBoard
summaries in --eval_dir (EvalMetrics/mIoU, per-class IoU,
Losses/EvalValidationLoss; images with --image_summaries). With
--write_predictions_dir, one Cityscapes labelId PNG per image, named
<city>_<seq>_<frame>_leftImg8bit.png like its input image, for the official
cityscapesScripts evaluation or the benchmark server.

Example:
  python eval.py \
      --config_path configs/two_stage_icnet_1.0_1025_resnet_v1_stage_1.config \
      --train_dir tmp/icnet_train --eval_dir tmp/icnet_eval \
      --evaluate_all_from_checkpoint model.ckpt-60000
"""

from __future__ import annotations

from absl import flags, logging

from runners import cli

flags.DEFINE_string("train_dir", None, "Directory of the training checkpoints.")
flags.DEFINE_string("eval_dir", None, "Directory for the results and TensorBoard summaries.")
flags.DEFINE_string("config_path", None, "Path of the pipeline config file.")
flags.DEFINE_multi_string(
    "config_override", [], "Text-format PipelineConfig snippet applied over the config; repeatable."
)
flags.DEFINE_bool(
    "image_summaries", False, "Write input, ground truth and prediction images to TensorBoard."
)
flags.DEFINE_string(
    "evaluate_all_from_checkpoint",
    None,
    "Evaluate this checkpoint (path, name like model.ckpt-1000, or step) and every later one "
    "listed in --train_dir, then exit.",
)
flags.DEFINE_bool(
    "verbose", False, "Log the running mIoU every 10 images; print tracebacks of errors."
)
flags.DEFINE_float(
    "eval_timeout_secs",
    None,
    "Stop waiting for a new checkpoint after this many seconds (default: wait forever).",
)
flags.DEFINE_string(
    "write_predictions_dir",
    None,
    "Write each prediction there as a Cityscapes labelId PNG (class ids for other datasets).",
)
flags.DEFINE_integer(
    "num_examples", None, "Evaluate at most this many images (default: eval_config.num_examples)."
)
flags.DEFINE_bool("limit_gpu_mem", False, "Allocate GPU memory as needed instead of all of it.")
flags.mark_flags_as_required(["train_dir", "eval_dir", "config_path"])

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.INFO)
    # Imported here: a flag or config mistake is reported before the TensorFlow import.
    from core.evaluation import evaluator  # noqa: PLC0415
    from runners import eval_loop  # noqa: PLC0415

    options = evaluator.EvalOptions(
        image_summaries=FLAGS.image_summaries,
        verbose=FLAGS.verbose,
        write_predictions_dir=FLAGS.write_predictions_dir,
        num_examples=FLAGS.num_examples,
    )
    eval_loop.run(
        FLAGS.config_path,
        FLAGS.train_dir,
        FLAGS.eval_dir,
        config_override=FLAGS.config_override,
        options=options,
        evaluate_all_from_checkpoint=FLAGS.evaluate_all_from_checkpoint,
        timeout_secs=FLAGS.eval_timeout_secs,
        limit_gpu_memory=FLAGS.limit_gpu_mem,
    )


if __name__ == "__main__":
    # Config, checkpoint and data errors (ValueError, evaluator.USER_ERRORS) say what to fix.
    cli.run_main(
        main,
        name="eval.py",
        extra_errors=(ValueError,),
        check_records=("eval_input_reader",),  # a bad record is one line, before TensorFlow
    )

"""Scores checkpoints with three kinds of batch-norm statistics (examples/bn_recalibration_*.sh).

For each ``--model name=pipeline.config:checkpoint`` it reports the mIoU on the config's eval
reader (``eval_config.num_examples`` images) with

* ``moving``: the checkpoint's moving averages (eval-mode forward, what eval.py computes);
* ``recalibrated``: the moving statistics recomputed over ``--num_batches`` batches of the
  config's training input, seeded, with the weights frozen
  (``core.training.recalibration.recalibrate_batch_norm``, as train.py
  ``--recalibrate_bn_batches``, compress.py and recalibrate_bn.py do);
* ``batch``: every eval image normalised by its own batch statistics (training-mode forward,
  batch 1): the score the weights have when the statistics are not the problem.

Example:
  python examples/bn_statistics_eval.py --num_batches 50 --output measure.json \
      --model pspnet=out/pspnet/train/pipeline.config:out/pspnet/train/model.ckpt-100
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from builders import config_util, dataset_builder  # noqa: E402
from core.evaluation.evaluators import SegmentationEvaluator  # noqa: E402
from core.evaluation.inference import EvalForward, inference_on_dataset  # noqa: E402
from core.training.losses import resize_logits  # noqa: E402
from core.training.recalibration import recalibrate_batch_norm  # noqa: E402
from models import outputs as model_outputs  # noqa: E402
from runners.common import load_model  # noqa: E402
from runners.recalibrate import training_batches  # noqa: E402

flags.DEFINE_multi_string("model", [], "name=pipeline.config:checkpoint (repeatable).")
flags.DEFINE_integer("num_batches", 50, "Training batches for the recalibration.")
flags.DEFINE_integer("seed", 0, "Seed of the recalibration batches.")
flags.DEFINE_string("output", None, "JSON file for the results.")
FLAGS = flags.FLAGS


class BatchStatisticsForward(EvalForward):
    """The eval forward with training-mode batch norm: each batch normalised by itself."""

    def _forward_fn(self, images, height, width):
        logits = self.model.predict(self.model.preprocess(images), training=True)
        logits = logits[model_outputs.LOGITS]
        if logits.shape[1:3] != images.shape[1:3]:
            logits = resize_logits(logits, tf.shape(images)[1:3])
        logits = logits[:, :height, :width, :]
        return logits, tf.argmax(logits, axis=-1, output_type=tf.int32)


def _miou(forward, pipeline, model) -> float:
    eval_config = pipeline.eval_config
    dataset = dataset_builder.build_eval_dataset(pipeline.eval_input_reader, eval_config)
    if eval_config.num_examples:
        dataset = dataset.take(eval_config.num_examples)
    evaluator = SegmentationEvaluator(model.num_classes, eval_config.ignore_label)
    return float(inference_on_dataset(forward, dataset, [evaluator])["miou"])


def measure(config_path: str, checkpoint: str) -> dict:
    """The three mIoUs of one checkpoint, and the recalibration's images and seconds."""
    pipeline = config_util.load_pipeline_config(config_path)
    model, _ = load_model(pipeline, checkpoint)
    row = {"moving": _miou(EvalForward(model), pipeline, model)}
    batches = training_batches(pipeline, pipeline.train_config.batch_size, FLAGS.seed)
    started = time.perf_counter()
    row["recalibration_images"] = recalibrate_batch_norm(model, iter(batches), FLAGS.num_batches)
    row["recalibration_seconds"] = time.perf_counter() - started
    row["recalibrated"] = _miou(EvalForward(model), pipeline, model)
    # Last: a training-mode forward also moves the moving averages.
    row["batch"] = _miou(BatchStatisticsForward(model), pipeline, model)
    logging.info("%s: %s", checkpoint, row)
    return row


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.INFO)
    results = {"num_batches": FLAGS.num_batches, "seed": FLAGS.seed, "models": {}}
    for entry in FLAGS.model:
        name, _, paths = entry.partition("=")
        config_path, _, checkpoint = paths.partition(":")
        if not (name and config_path and checkpoint):
            raise app.UsageError(f"--model {entry!r}: expected name=pipeline.config:checkpoint")
        results["models"][name] = measure(config_path, checkpoint)
    text = json.dumps(results, indent=2)
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    app.run(main)

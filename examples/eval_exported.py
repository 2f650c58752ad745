"""mIoU of exported models (TFLite float/int8, frozen graph, SavedModel) on a config's eval reader.

Each model must have been exported at the eval input size (``eval_config.eval_input_type``,
e.g. ``export.py --input_shape 257,513,3`` for ``padded_eval_input { height: 257 width: 513 }``):
it then sees exactly the padded images ``eval.py`` feeds the checkpoint, and the same
``SegmentationEvaluator`` crops the padding off and scores ``eval_config.num_examples`` images,
so the numbers compare directly with ``eval.py``'s.

Example (the QAT table of docs/training.md):
  python examples/eval_exported.py --config_path out/train/pipeline.config --output qat.json \
      --model ptq=out/export_float/model_int8.tflite --model qat=out/export_qat/model_int8.tflite
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from builders import config_util, dataset_builder  # noqa: E402
from core import file_utils  # noqa: E402
from core.data.standard_fields import InputDataFields  # noqa: E402
from core.deploy.segmenters import open_exported  # noqa: E402
from core.evaluation.evaluators import SegmentationEvaluator  # noqa: E402

flags.DEFINE_string("config_path", None, "Pipeline config whose eval reader is scored.")
flags.DEFINE_multi_string("model", [], "name=path of an exported model (repeatable).")
flags.DEFINE_integer("num_threads", None, "TFLite interpreter threads (default: its own).")
flags.DEFINE_string("output", None, "Optional JSON file for the results.")
FLAGS = flags.FLAGS


def evaluate_exported(config, model_path: str, num_threads: int | None = None) -> dict:
    """Scores one exported model on ``config``'s eval records.

    Returns:
      ``{"miou", "pixel_accuracy", "num_images", "seconds_per_image"}``.
    """
    num_classes = getattr(config.model, config.model.WhichOneof("model")).num_classes
    segmenter = open_exported(model_path, num_classes, num_threads=num_threads)
    evaluator = SegmentationEvaluator(num_classes, config.eval_config.ignore_label)
    dataset = dataset_builder.build_eval_dataset(config.eval_input_reader, config.eval_config)
    seconds = 0.0
    for batch in dataset.take(config.eval_config.num_examples or -1):
        batch = {key: value.numpy() for key, value in batch.items()}
        image = np.clip(np.rint(batch[InputDataFields.input_image]), 0, 255).astype(np.uint8)
        if image.shape[1:3] != segmenter.input_size:
            raise SystemExit(
                f"{model_path}: exported for {segmenter.input_size}, but the eval images are "
                f"{image.shape[1:3]}; re-export with --input_shape {image.shape[1]},"
                f"{image.shape[2]},3."
            )
        ids = segmenter.run(image)
        seconds += segmenter.last_run_seconds
        evaluator.process(batch, ids[np.newaxis])
    metrics = evaluator.evaluate()
    count = metrics.get("num_images") or config.eval_config.num_examples
    return {
        "miou": metrics["miou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "num_images": count,
        "seconds_per_image": seconds / max(count, 1),
    }


def main(argv) -> None:
    del argv
    config = config_util.load_pipeline_config(FLAGS.config_path)
    results = {}
    for entry in FLAGS.model:
        name, _, path = entry.partition("=")
        started = time.monotonic()
        results[name] = evaluate_exported(config, path, FLAGS.num_threads)
        results[name]["path"] = path
        logging.info("%s: %s (%.0f s)", name, results[name], time.monotonic() - started)
    print(json.dumps(results, indent=2))
    if FLAGS.output:
        file_utils.atomic_write_text(FLAGS.output, json.dumps(results, indent=2))


if __name__ == "__main__":
    flags.mark_flag_as_required("config_path")
    app.run(main)

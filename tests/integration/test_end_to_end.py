"""End to end on synthetic records: train -> resume -> eval -> export (all formats) -> inference.

Runs the README demo at a tiny size, twice: the second run must resume from the
first run's checkpoint rather than start over.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from runners import demo
from runners.inference import load_segmenter

pytestmark = pytest.mark.slow  # runs the scripts end to end

TINY = dict(
    num_train=6,
    num_val=2,
    height=96,
    width=128,
    num_images=2,
    config_override=(
        "train_config { batch_size: 2 preprocessor_step { random_image_crop "
        "{ crop_height: 97 crop_width: 97 } } }",
        "model { icnet { filter_scale: 0.125 } }",
        "eval_config { eval_input_type { padded_eval_input { height: 97 width: 129 } } }",
    ),
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("demo"))
    first = demo.run_demo(
        demo.DemoOptions(output_dir=output_dir, num_steps=2, formats=("frozen_graph",), **TINY)
    )
    second = demo.run_demo(demo.DemoOptions(output_dir=output_dir, num_steps=3, **TINY))
    return output_dir, first, second


def test_second_run_resumes_from_the_first(runs):
    output_dir, first, second = runs
    assert first.step == 2 and second.step == 3
    state = tf.train.get_checkpoint_state(os.path.join(output_dir, "train"))
    steps = [int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths]
    # Resuming adds checkpoint 3 after 2; a fresh start would have rewritten from step 1.
    assert steps[-2:] == [2, 3]
    assert second.checkpoint_path.endswith("model.ckpt-3")


def test_evaluation_results_are_written(runs):
    _, _, second = runs
    with open(second.metrics_path) as stream:
        results = json.load(stream)
    assert results["step"] == 3 and results["num_images"] == 2
    assert len(results["classes"]) == 19
    assert 0.0 <= results["miou"] <= 1.0
    assert "road" in second.table and "mIoU" in second.table


def test_every_export_format_agrees_with_the_checkpoint(runs):
    output_dir, _, second = runs
    export = second.export_dir
    for name in (
        "frozen_inference_graph.pb",
        "saved_model",
        "model_float32.tflite",
        "model_int8.tflite",
        "model.ckpt.index",
        "pipeline.config",
    ):
        assert os.path.exists(os.path.join(export, name)), name
    image = np.asarray(Image.open(os.path.join(output_dir, "images", "scene_00.png")))
    reference = load_segmenter(
        config_path=os.path.join(export, "pipeline.config"),
        trained_checkpoint=second.checkpoint_path,
        input_shape=(96, 128, 3),
        pad_to_shape=(97, 129),
    )(image)
    for name in ("frozen_inference_graph.pb", "saved_model", "model_float32.tflite"):
        predicted = load_segmenter(model_path=os.path.join(export, name))(image)
        assert predicted.shape == (96, 128)
        assert np.mean(predicted == reference) > 0.999, name


def test_inference_wrote_overlays(runs):
    _, _, second = runs
    assert len(second.overlays) == 2
    with Image.open(second.overlays[0]) as overlay:
        # Side by side: the scene, a gap, its segmentation.
        assert overlay.size[1] == 96 and overlay.size[0] > 2 * 128
    assert second.latency_ms is not None and second.latency_ms > 0

"""Tests of runners.inference.load_segmenter: every exported format agrees with the checkpoint.

The export is the shared one of tests/runners/export_fixtures.py; references are the
checkpoint restored into a fresh model and run eagerly.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.deploy import deploy_graph, exporter
from core.visualization import palette_lut
from runners.inference import load_segmenter
from tests.runners.export_fixtures import (
    FLOAT_FORMATS,
    HEIGHT,
    PAD,
    WIDTH,
    reference_ids,
    reference_logits,
)


@pytest.mark.parametrize("fmt", sorted(FLOAT_FORMATS))
def test_float_formats_agree_with_the_checkpoint(exported, fmt):
    segmenter = load_segmenter(model_path=os.path.join(exported.output_dir, FLOAT_FORMATS[fmt]))
    assert segmenter.input_size == (HEIGHT, WIDTH) and segmenter.num_classes == 19
    agree = total = 0
    for image in exported.images:
        ids = segmenter(image)
        # Padded to 97x129 by the graph, cropped back to the image's 96x128.
        assert ids.shape == (HEIGHT, WIDTH) and ids.dtype == np.int32
        agree += int((ids == reference_ids(exported.model, image)).sum())
        total += ids.size
    print(f"{fmt}: class-id agreement with the checkpoint {agree / total:.5f}")
    assert agree / total >= 0.999


def test_int8_model_is_quantized_and_keeps_confident_pixels(exported):
    """A random-init net has many near-ties, so overall agreement is only loosely bounded.

    What must hold: the convolutions are int8, outputs are valid ids, and pixels whose top-2
    logit margin exceeds 2% of the logit range (about 5 steps of the output quantization scale)
    keep their class. Those pixels must be a sizeable share, so the check is not vacuous.
    """
    path = os.path.join(exported.output_dir, "model_int8.tflite")
    # Only the pyramid's ADD_N has no int8 kernel (mobile_ops_only removes it, tested below).
    assert exported.result.summary["int8"]["float_ops"] == ["ADD_N"]
    segmenter = load_segmenter(model_path=path)
    overall = confident = confident_total = total = 0
    for image in exported.images[:3]:  # the calibration distribution
        ids = segmenter(image)
        assert ids.min() >= 0 and ids.max() < 19
        logits = reference_logits(exported.model, image)
        top2 = np.sort(logits, axis=-1)[..., -2:]
        mask = (top2[..., 1] - top2[..., 0]) > 0.02 * (logits.max() - logits.min())
        same = ids == logits.argmax(-1)
        overall += int(same.sum())
        total += same.size
        confident += int(same[mask].sum())
        confident_total += int(mask.sum())
    print(
        f"int8: agreement {overall / total:.4f} overall, {confident / confident_total:.4f} on "
        f"the {confident_total / total:.0%} confident pixels"
    )
    assert confident_total / total > 0.3
    assert confident / confident_total >= 0.995
    assert overall / total > 0.8
    report = exported.result.summary["int8"]
    assert report["images"] == 3 and report["pixel_agreement_with_float"] > 0.8


def test_output_colours_give_palette_colours(exported, tmp_path):
    result = exporter.export_model(
        exported.model,
        str(tmp_path),
        deploy_graph.parse_input_shape("1,96,128,3"),
        PAD,
        output_colours=True,
        formats=["frozen_graph"],
    )
    assert result.summary["output"].startswith("colours")
    assert sorted(os.listdir(tmp_path)) == [
        "export_summary.json",
        "frozen_inference_graph.pb",
        "model.ckpt.data-00000-of-00001",
        "model.ckpt.index",
    ]
    segmenter = load_segmenter(model_path=str(tmp_path / "frozen_inference_graph.pb"))
    assert segmenter.output_colours and segmenter.num_classes is None  # no pipeline.config
    image = exported.images[0]
    colours = segmenter(image)
    assert colours.shape == (HEIGHT, WIDTH, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours, palette_lut()[reference_ids(exported.model, image)])

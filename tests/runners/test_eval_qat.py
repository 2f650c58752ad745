"""eval.py's path (``runners.eval_loop``) on a quantization-aware-training checkpoint of the tiny
ICNet: the config's ``quantize_with_delay`` decides the forward, recorded in the results.

The arithmetic (evaluated predictions == the model run with its quantizers on) is checked on a
small net in tests/core/evaluation/test_quantized_eval.py; this checks the wiring from a config.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from builders import config_util
from core.checkpoints import checkpoint_utils
from models import quantization
from runners import eval_loop
from tests.runners.export_fixtures import build_model

STEP = 4


@pytest.fixture(scope="module")
def qat_checkpoint(config_path, tmp_path_factory) -> str:
    """The tiny ICNet with ranges tracked by one quantized training forward, saved at STEP."""
    keras.utils.set_random_seed(5)
    model = build_model(config_path)
    state = quantization.attach(model, active=True)
    images = tf.random.stateless_uniform([1, 97, 129, 3], (5, 6), 0, 255)
    model(model.preprocess(images), training=True)
    state.active = False
    directory = str(tmp_path_factory.mktemp("qat_train"))
    return checkpoint_utils.write_model_checkpoint(model, directory, f"model.ckpt-{STEP}", STEP)


def _evaluate(config_path, checkpoint, eval_dir, override=""):
    config = config_util.load_pipeline_config(config_path, [override] if override else [])
    return eval_loop.evaluate_checkpoint(config, checkpoint, eval_dir)


def test_config_delay_decides_the_forward(config_path, qat_checkpoint, tmp_path):
    plain = _evaluate(config_path, qat_checkpoint, str(tmp_path / "plain"))
    assert plain["forward"] == "float" and "quantize_with_delay" not in plain
    past = _evaluate(
        config_path,
        qat_checkpoint,
        str(tmp_path / "past"),
        f"train_config {{ quantize_with_delay: {STEP} }}",
    )
    assert past["forward"] == "simulated_int8" and past["quantize_with_delay"] == STEP
    # Same weights, another network: the int8 simulation moves the loss.
    assert not np.isclose(past["validation_loss"], plain["validation_loss"], rtol=1e-5)
    before = _evaluate(
        config_path,
        qat_checkpoint,
        str(tmp_path / "before"),
        f"train_config {{ quantize_with_delay: {STEP + 1} }}",
    )
    assert before["forward"] == "float"
    assert before["confusion_matrix"] == plain["confusion_matrix"]
    assert before["validation_loss"] == pytest.approx(plain["validation_loss"], rel=1e-6)

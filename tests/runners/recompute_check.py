"""Shared set-up of the gradient-checkpointing tests: one training step's loss, gradients and
batch-norm statistics from fixed weights and a fixed batch, and a count of recomputations."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from builders import config_util, losses_builder, model_builder
from core.training.train_step import TrainStep
from models import recompute


def gradient_run(config_path: str):
    """``(model, run)``: ``run()`` resets the weights, takes one step's gradients and returns
    ``(total loss, [gradients], [non-trainable variables])``; the same for every call unless
    the model's recompute selection changes the numbers."""
    config = config_util.load_pipeline_config(config_path)
    tf.keras.utils.set_random_seed(3)
    model = model_builder.build(config.model)
    model.build_variables()
    loss_fn = losses_builder.build(config.model.icnet, model.output_specs(training=True))
    step = TrainStep(
        model, loss_fn, None, model.trainable_variables, tf.distribute.get_strategy(), None
    )
    images = tf.random.stateless_uniform([2, 97, 97, 3], [5, 6], 0.0, 255.0)
    labels = tf.random.stateless_uniform([2, 97, 97, 1], [7, 8], 0, 19, tf.int32)
    initial = [v.numpy() for v in model.variables]

    def run():
        for variable, value in zip(model.variables, initial, strict=True):
            variable.assign(value)
        losses, gradients = step.gradients(images, labels)
        statistics = [v.numpy() for v in model.non_trainable_variables]
        return float(losses["total"]), [g.numpy() for g in gradients], statistics

    # For a test of a whole compiled step: the batch, the step and a weight reset.
    run.batch, run.step = (images, labels), step
    run.reset = lambda: [v.assign(x) for v, x in zip(model.variables, initial, strict=True)]
    return model, run


def count_recomputations(monkeypatch) -> list:
    """A list that gains one entry each time a recomputed segment runs (forward or backprop)."""
    reruns = []

    class CountingScope(recompute.keras.StatelessScope):
        def __enter__(self):
            reruns.append(1)
            return super().__enter__()

    monkeypatch.setattr(recompute.keras, "StatelessScope", CountingScope)
    return reruns


def assert_same_step(checkpointed, plain) -> None:
    """Loss, every gradient and the BN statistics (moved once, not twice) agree to 1e-6."""
    assert checkpointed[0] == pytest.approx(plain[0], abs=1e-6)
    for a, b in zip(checkpointed[1], plain[1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(checkpointed[2], plain[2], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)

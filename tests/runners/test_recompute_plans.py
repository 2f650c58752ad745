"""train_mem_saving.py's recompute plans give the gradients of plain training (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from builders import config_util, losses_builder, model_builder
from core.training.train_step import TrainStep
from models import recompute
from models.recompute_plan import measured_groups, plan_groups, profile


@pytest.fixture(scope="module")
def gradients_setup(config_path):
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

    model.set_recompute_groups([])
    return model, run, run()


def test_profile_counts_each_step_by_its_tensor_shapes(gradients_setup):
    model = gradients_setup[0]
    result = profile(model, 2, 97, 97)
    steps = {step.scope: step for step in result.steps}
    assert list(steps) == [s for chain in model.recompute_chains() for s in chain]
    # Conv (3x3, stride 2, 'SAME', relu6): 97 -> 49, so its output is float32
    # [2, 49, 49, filters]; conv, batch norm and relu6 each make at least one such tensor.
    output = 2 * 49 * 49 * model.full_branch[0].filters * 4
    assert steps["Conv"].output_bytes == output
    assert steps["Conv"].internal_bytes >= 3 * output
    assert result.other_bytes > 0
    assert model.recompute_groups == frozenset()  # profiling selects nothing
    assert measured_groups(result.steps, model.recompute_chains())[0] in {(s,) for s in steps}


def test_sqrt_plan_gives_the_gradients_of_plain_training(gradients_setup, monkeypatch):
    model, run, plain = gradients_setup
    plan = "sqrt"
    reruns = []

    class CountingScope(recompute.keras.StatelessScope):
        def __enter__(self):
            reruns.append(1)
            return super().__enter__()

    monkeypatch.setattr(recompute.keras, "StatelessScope", CountingScope)
    groups = model.set_recompute_groups(plan_groups(model, plan, (97, 97)))
    steps = [s for chain in model.recompute_chains() for s in chain]
    assert [s for group in groups for s in group] == steps  # every step, in runs
    assert any(len(group) > 1 for group in groups) and any(len(g) == 1 for g in groups)
    try:
        checkpointed = run()
    finally:
        model.set_recompute_groups([])
    assert len(reruns) == len(groups)  # every group was recomputed once in backprop
    assert checkpointed[0] == pytest.approx(plain[0], abs=1e-6)
    for a, b in zip(checkpointed[1], plain[1], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(checkpointed[2], plain[2], strict=True):  # BN statistics moved once
        np.testing.assert_allclose(a, b, atol=1e-6)

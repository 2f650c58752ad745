"""train_mem_saving.py's recompute plans give the gradients of plain training (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core.training.optimizers import TF1MomentumOptimizer
from models.recompute_plan import measured_groups, plan_groups, profile
from tests.runners import recompute_check


@pytest.fixture(scope="module")
def gradients_setup(config_path):
    model, run = recompute_check.gradient_run(config_path)
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
    reruns = recompute_check.count_recomputations(monkeypatch)
    groups = model.set_recompute_groups(plan_groups(model, plan, (97, 97)))
    steps = [s for chain in model.recompute_chains() for s in chain]
    assert [s for group in groups for s in group] == steps  # every step, in runs
    assert any(len(group) > 1 for group in groups) and any(len(g) == 1 for g in groups)
    try:
        checkpointed = run()
    finally:
        model.set_recompute_groups([])
    assert len(reruns) == len(groups)  # every group was recomputed once in backprop
    recompute_check.assert_same_step(checkpointed, plain)  # BN statistics moved once


def test_sqrt_plan_compiled_update_is_the_plain_gradient_step(gradients_setup):
    # With one replica the optimizer updates each variable as soon as its gradient exists; a
    # variable updated before a recomputed segment re-read it would change later gradients.
    # The first TF1 momentum step is w - rate * g, with g the same compiled graph's gradients
    # (eager and compiled gradients differ by ~1e-4 here: oneDNN and Grappler fusions).
    model, run, _ = gradients_setup
    images, labels = run.batch
    variables = run.step.variables
    rate = 0.5
    optimizer = TF1MomentumOptimizer(learning_rate=rate, momentum=0.9)
    optimizer.build(variables)

    @tf.function
    def gradients():
        return run.step.gradients(images, labels)[1]

    @tf.function
    def update():
        optimizer.apply_gradients(zip(gradients(), variables, strict=True))

    run.reset()
    initial = [v.numpy() for v in variables]
    model.set_recompute_groups(plan_groups(model, "sqrt", (97, 97)))
    try:
        expected = [w - rate * g.numpy() for w, g in zip(initial, gradients(), strict=True)]
        update()
        updated = [v.numpy() for v in variables]
    finally:
        model.set_recompute_groups([])
        run.reset()
    for after, want in zip(updated, expected, strict=True):
        np.testing.assert_allclose(after, want, atol=1e-5)

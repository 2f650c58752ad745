"""Batch-norm recalibration against a numpy oracle: the population statistics of each BN input.

The oracle runs ToyNet by hand in numpy (TF 'SAME' convolutions, training-mode BN with each
batch's own statistics, ReLU) and takes the mean and variance of every BN layer's input over
all pixels of all batches at once, in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.data.standard_fields import InputDataFields
from core.training.loop import TrainLoop
from core.training.recalibration import BatchNormRecalibrationHook, recalibrate_batch_norm
from tests.models.toy_net import ToyNet
from tests.runners.bn_oracle import conv_same as _conv_same

EPSILON = 1e-5  # BatchNormParams.epsilon default (models/hyperparams.py)


def _batch_norm_train(y: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = y.mean(axis=(0, 1, 2))
    variance = y.var(axis=(0, 1, 2))
    return (y - mean) / np.sqrt(variance + EPSILON) * gamma + beta


def _oracle(weights: dict[str, np.ndarray], images: list[np.ndarray]) -> dict[str, tuple]:
    """{scope: (mean, variance)} of each BN input over all pixels of all batches."""
    inputs = {"Toy/conv1": [], "Toy/conv2": []}
    for batch in images:
        x = batch.astype(np.float64) / 255.0
        y1 = _conv_same(x, weights["Toy/conv1/weights"], 2)
        inputs["Toy/conv1"].append(y1.reshape(-1, y1.shape[-1]))
        h1 = _batch_norm_train(
            y1, weights["Toy/conv1/BatchNorm/gamma"], weights["Toy/conv1/BatchNorm/beta"]
        )
        y2 = _conv_same(np.maximum(h1, 0.0), weights["Toy/conv2/weights"], 1)
        inputs["Toy/conv2"].append(y2.reshape(-1, y2.shape[-1]))
    return {
        scope: (np.concatenate(v).mean(axis=0), np.concatenate(v).var(axis=0))
        for scope, v in inputs.items()
    }


@pytest.fixture()
def toy():
    """A built ToyNet with random gamma/beta, and 3 batches whose statistics differ."""
    rng = np.random.default_rng(0)
    model = ToyNet(num_classes=3, width=4)
    model.build_variables((12, 16))
    for layer in (model.conv1, model.conv2):
        layer.bn.gamma.assign(rng.uniform(0.5, 2.0, layer.filters).astype(np.float32))
        layer.bn.beta.assign(rng.normal(0.0, 0.5, layer.filters).astype(np.float32))
    # Different brightness and contrast per batch: the mean of the batch variances is then far
    # from the population variance, so averaging them would fail the comparison.
    images = [
        (rng.uniform(0, 255, (2, 12, 16, 3)) * scale + offset).astype(np.float32)
        for scale, offset in ((1.0, 0.0), (0.3, 100.0), (0.6, 40.0))
    ]
    return model, images


def _batches(images):
    return [{InputDataFields.input_image: image} for image in images]


def _values(model) -> dict[str, np.ndarray]:
    return {name: np.array(v.numpy()) for name, v in model.named_variables().items()}


@pytest.mark.parametrize("num_batches", [None, 2])
def test_moving_statistics_equal_numpy_population_statistics(toy, num_batches):
    model, images = toy
    before = _values(model)
    used = images[:num_batches] if num_batches else images

    count = recalibrate_batch_norm(model, iter(_batches(images)), num_batches=num_batches)

    assert count == 2 * len(used)
    expected = _oracle(before, used)
    after = _values(model)
    for scope, (mean, variance) in expected.items():
        np.testing.assert_allclose(after[f"{scope}/BatchNorm/moving_mean"], mean, rtol=1e-4)
        np.testing.assert_allclose(after[f"{scope}/BatchNorm/moving_variance"], variance, rtol=1e-4)
        # The initial moving statistics (0 and 1) are not what the oracle gives.
        assert not np.allclose(before[f"{scope}/BatchNorm/moving_variance"], variance)


def test_no_other_variable_changes(toy):
    model, images = toy
    before = _values(model)

    recalibrate_batch_norm(model, _batches(images))

    after = _values(model)
    assert after.keys() == before.keys()
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert changed == {
        f"Toy/{conv}/BatchNorm/{stat}"
        for conv in ("conv1", "conv2")
        for stat in ("moving_mean", "moving_variance")
    }
    # The observers are removed again: inference and training calls behave as before.
    assert model.conv1.statistics_observer is None and model.conv2.statistics_observer is None


def test_no_batch_or_bad_count_is_an_error(toy):
    model, images = toy
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_batch_norm(model, [])
    with pytest.raises(ValueError, match="num_batches must be at least 1"):
        recalibrate_batch_norm(model, _batches(images), num_batches=0)


def _run_with_hook(model, images, start_step, num_steps, *, fail_at=None):
    """A TrainLoop over a step that changes nothing, with the hook; returns (hook, saves)."""
    saves, calls = [], []

    def step_fn(iterator, save_request):
        if fail_at is not None and len(calls) + 1 == fail_at:
            raise KeyboardInterrupt
        calls.append(1)
        return {"losses": {"total": 1.0}}

    def batches_fn():
        calls.append("batches")
        return iter(_batches(images))

    hook = BatchNormRecalibrationHook(batches_fn, 2, saves.append)
    loop = TrainLoop(step_fn, None, start_step, num_steps, [hook], model=model)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    return hook, saves, calls


def test_hook_recalibrates_and_saves_the_last_step(toy):
    model, images = toy
    before = _values(model)

    hook, saves, calls = _run_with_hook(model, images, start_step=3, num_steps=5)

    # Resumed at 3, trained 2 steps, recalibrated once at the end, then saved step 5.
    assert saves == [5] and calls == [1, 1, "batches"] and hook.num_images == 4
    expected = _oracle(before, images[:2])
    after = _values(model)
    for scope, (mean, variance) in expected.items():
        np.testing.assert_allclose(after[f"{scope}/BatchNorm/moving_mean"], mean, rtol=1e-4)
        np.testing.assert_allclose(after[f"{scope}/BatchNorm/moving_variance"], variance, rtol=1e-4)


@pytest.mark.parametrize(
    ("start_step", "num_steps", "fail_at"),
    [(5, 5, None), (0, 5, 2), (0, 0, 2)],
    ids=["already_at_num_steps", "interrupted", "no_last_step"],
)
def test_hook_leaves_the_model_alone_unless_the_run_ends_at_num_steps(
    toy, start_step, num_steps, fail_at
):
    model, images = toy
    before = _values(model)

    hook, saves, calls = _run_with_hook(model, images, start_step, num_steps, fail_at=fail_at)

    assert saves == [] and "batches" not in calls and hook.num_images == 0
    after = _values(model)
    assert all(np.array_equal(before[name], after[name]) for name in before)


def test_hook_rejects_a_bad_count():
    with pytest.raises(ValueError, match="num_batches must be at least 1, got 0"):
        BatchNormRecalibrationHook(list, 0, print)

"""Tests of the TF1-semantics momentum optimizer against numpy and TF1's own optimizer."""

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from core.training.learning_schedules import ConstantLearningRate, PolynomialDecay
from core.training.optimizers import TF1MomentumOptimizer
from tests.snippets import run_json_snippet

# A separable quadratic: loss = sum(0.5 * curvature * (w - target) ** 2), so the
# gradient is curvature * (w - target).
INITIAL = [np.array([1.0, -2.0, 0.5], np.float32), np.array([[3.0, 0.0], [-1.0, 2.0]], np.float32)]
TARGET = [np.array([0.0, 1.0, -1.0], np.float32), np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)]
CURVATURE = [np.array([1.0, 4.0, 0.5], np.float32), np.array([[2.0, 1.0], [0.3, 3.0]], np.float32)]
NUM_STEPS = 10
MOMENTUM = 0.9


def _numpy_tf1_momentum(rates, momentum=MOMENTUM):
    """TF1 MomentumOptimizer, written out: a = m * a + g; w = w - lr_t * a."""
    weights = [w.copy() for w in INITIAL]
    accumulators = [np.zeros_like(w) for w in INITIAL]
    for rate in rates:
        for i, (target, curvature) in enumerate(zip(TARGET, CURVATURE, strict=True)):
            gradient = curvature * (weights[i] - target)
            accumulators[i] = np.float32(momentum) * accumulators[i] + gradient
            weights[i] = weights[i] - np.float32(rate) * accumulators[i]
    return weights


def _loss(variables):
    return tf.add_n(
        [
            tf.reduce_sum(0.5 * c * tf.square(v - t))
            for v, t, c in zip(variables, TARGET, CURVATURE, strict=True)
        ]
    )


def _train(optimizer, num_steps=NUM_STEPS, compiled=True):
    variables = [keras.Variable(w) for w in INITIAL]

    def step():
        with tf.GradientTape() as tape:
            loss = _loss(variables)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))

    run = tf.function(step) if compiled else step
    for _ in range(num_steps):
        run()
    return [v.numpy() for v in variables]


def _rates(schedule, num_steps=NUM_STEPS):
    return [float(schedule(step)) for step in range(num_steps)]


def test_matches_numpy_tf1_rule_under_decaying_rate():
    schedule = PolynomialDecay(0.1, decay_steps=NUM_STEPS, power=0.9)
    got = _train(TF1MomentumOptimizer(learning_rate=schedule, momentum=MOMENTUM))
    for got_w, want_w in zip(got, _numpy_tf1_momentum(_rates(schedule)), strict=True):
        np.testing.assert_allclose(got_w, want_w, atol=1e-6, rtol=0)


def test_matches_tf1_momentum_optimizer_itself():
    schedule = PolynomialDecay(0.1, decay_steps=NUM_STEPS, power=0.9)
    variables = [tf.Variable(w) for w in INITIAL]
    step = tf.Variable(0, dtype=tf.int64)
    tf1 = tf.compat.v1.train.MomentumOptimizer(
        learning_rate=lambda: schedule(step), momentum=MOMENTUM
    )
    for _ in range(NUM_STEPS):
        with tf.GradientTape() as tape:
            loss = _loss(variables)
        tf1.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        step.assign_add(1)
    ours = _train(TF1MomentumOptimizer(learning_rate=schedule, momentum=MOMENTUM), compiled=False)
    for got_w, tf1_w in zip(ours, variables, strict=True):
        np.testing.assert_allclose(got_w, tf1_w.numpy(), atol=1e-6, rtol=0)


def test_differs_from_keras_sgd_under_decaying_rate():
    # Why the class exists: Keras folds lr_t into the velocity, TF1 scales the
    # whole accumulator by the current lr_t.
    schedule = PolynomialDecay(0.1, decay_steps=NUM_STEPS, power=0.9)
    ours = _train(TF1MomentumOptimizer(learning_rate=schedule, momentum=MOMENTUM))
    keras_sgd = _train(keras.optimizers.SGD(learning_rate=schedule, momentum=MOMENTUM))
    difference = max(np.abs(a - b).max() for a, b in zip(ours, keras_sgd, strict=True))
    assert difference > 1e-2


def test_equals_keras_sgd_with_constant_rate():
    ours = _train(TF1MomentumOptimizer(learning_rate=ConstantLearningRate(0.05), momentum=0.9))
    keras_sgd = _train(keras.optimizers.SGD(learning_rate=0.05, momentum=0.9))
    for a, b in zip(ours, keras_sgd, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6)


def test_zero_momentum_is_plain_sgd_and_iterations_count():
    optimizer = TF1MomentumOptimizer(learning_rate=0.1, momentum=0.0)
    variable = keras.Variable(np.array([1.0, 2.0], np.float32))
    optimizer.apply_gradients([(tf.constant([1.0, -1.0]), variable)])
    optimizer.apply_gradients([(tf.constant([1.0, -1.0]), variable)])
    np.testing.assert_allclose(variable.numpy(), [0.8, 2.2], rtol=1e-6)
    assert int(optimizer.iterations.numpy()) == 2


def test_config_round_trip_with_schedule():
    optimizer = TF1MomentumOptimizer(
        learning_rate=PolynomialDecay(0.01, 1000, power=0.9), momentum=0.8, clipnorm=1.0
    )
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(revived, TF1MomentumOptimizer)
    assert revived.momentum == pytest.approx(0.8)
    assert revived.get_config() == optimizer.get_config()
    # The schedule came back too: the rate at step 0 is its initial value.
    assert float(revived.learning_rate) == pytest.approx(0.01)


@pytest.mark.parametrize("momentum", [-0.1, 1.5, float("nan")])
def test_invalid_momentum(momentum):
    with pytest.raises(ValueError, match="momentum"):
        TF1MomentumOptimizer(learning_rate=0.1, momentum=momentum)


def _ancestors(op: tf.Operation) -> set:
    """Every op ``op`` waits for, through data and control edges."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_single_replica_update_waits_only_for_its_own_gradient():
    # Keras all-reduces the gradients through one identity over the whole list, which keeps
    # every gradient alive until the last is computed; with one replica there is nothing to
    # sum, and each variable's update must depend on its own gradient only.
    variables = [keras.Variable(w) for w in INITIAL]
    optimizer = TF1MomentumOptimizer(learning_rate=0.1)
    optimizer.build(variables)

    @tf.function
    def apply(first, second):
        optimizer.apply_gradients(zip((first, second), variables, strict=True))

    concrete = apply.get_concrete_function(*(tf.TensorSpec(w.shape, tf.float32) for w in INITIAL))
    gradients = [tensor.op for tensor in concrete.inputs[:2]]
    updates = [op for op in concrete.graph.get_operations() if op.type == "AssignSubVariableOp"]
    assert len(updates) == 2
    waits = [{g for g in gradients if g in _ancestors(update)} for update in updates]
    assert sorted(len(w) for w in waits) == [1, 1], waits
    assert waits[0] != waits[1]


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    import keras
    from core.training.learning_schedules import PolynomialDecay
    from core.training.optimizers import TF1MomentumOptimizer

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    initial = np.array([1.0, -2.0, 0.5], np.float32)
    target = np.array([0.0, 1.0, -1.0], np.float32)
    with strategy.scope():
        variable = keras.Variable(initial)
        optimizer = TF1MomentumOptimizer(PolynomialDecay(0.1, 5, power=0.9), momentum=0.9)
        optimizer.build([variable])

    @tf.function
    def train_step():
        def replica_step():
            with tf.GradientTape() as tape:
                # Each replica sees the same data; scaling by 1/replicas makes the
                # all-reduced (summed) gradient the single-device gradient.
                loss = tf.reduce_sum(tf.square(variable - target)) / 2.0
                loss /= strategy.num_replicas_in_sync
            optimizer.apply_gradients([(tape.gradient(loss, variable), variable)])

        strategy.run(replica_step)

    for _ in range(5):
        train_step()
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "iterations": int(optimizer.iterations.numpy()),
        "weights": variable.numpy().tolist(),
    }))
    """
)


def test_mirrored_strategy_matches_numpy():
    # One MirroredStrategy per process (see the TF notes), so run it in a child.
    report = run_json_snippet(_MIRRORED_SCRIPT)
    assert report["replicas"] == 2 and report["iterations"] == 5
    weights = np.array([1.0, -2.0, 0.5], np.float32)
    target = np.array([0.0, 1.0, -1.0], np.float32)
    accumulator = np.zeros_like(weights)
    for rate in _rates(PolynomialDecay(0.1, 5, power=0.9), 5):
        accumulator = np.float32(0.9) * accumulator + (weights - target)
        weights = weights - np.float32(rate) * accumulator
    np.testing.assert_allclose(report["weights"], weights, atol=1e-6, rtol=0)

"""``quantize_with_delay``: the training forward is the float one before the delay step and the
fake-quantized one from it on; the trainer honours the config field."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core.checkpoints import checkpoint_utils
from core.training.loop import TrainLoop
from core.training.quantization import QuantizationDelayHook, attach_for_training
from models.hyperparams import BatchNormParams, ConvHyperparams
from tests.models.toy_net import ToyNet

DELAY = 3


class ForwardStep:
    """A step that runs the model's training-mode forward, compiled, and records it."""

    def __init__(self, model, images):
        self.model = model
        self.images = images
        self.retraces = 0
        self.outputs = []
        self.quantized_graphs = []
        self.retrace()
        self.retraces = 0

    def retrace(self):
        self.retraces += 1
        self.compiled = tf.function(lambda x: self.model(x, training=True)["logits"])

    def __call__(self, iterator, save_request):
        del iterator, save_request
        graph = self.compiled.get_concrete_function(self.images).graph
        types = {op.type for op in graph.get_operations()}
        self.quantized_graphs.append("FakeQuantWithMinMaxVars" in types)
        self.outputs.append(self.compiled(self.images).numpy())
        return {"losses": {"total": 0.0}}


def _model():
    # Frozen BN: the float training forward is then a fixed function of the weights, so every
    # float step must give the same logits as the model before quantizers were attached.
    hyperparams = ConvHyperparams(batch_norm=BatchNormParams(train=False))
    model = ToyNet(5, hyperparams=hyperparams)
    model.build_variables((16, 16))
    return model


def test_delay_zero_attaches_nothing():
    model = _model()
    names = set(model.named_variables())
    assert attach_for_training(model, 0) is None
    assert all(layer.quantizer is None for layer in model.scoped_layers())
    assert set(model.named_variables()) == names


def test_forward_changes_exactly_at_the_delay_step():
    model = _model()
    images = tf.random.stateless_uniform([2, 16, 16, 3], (3, 4))
    float_logits = model(images, training=True)["logits"].numpy()
    state = attach_for_training(model, DELAY)
    step = ForwardStep(model, images)
    loop = TrainLoop(
        step, None, num_steps=6, hooks=[QuantizationDelayHook(state, DELAY, step.retrace)]
    )
    loop.run()
    # Steps 1..DELAY start from global steps 0..DELAY-1 < DELAY: float. Then quantized.
    assert step.quantized_graphs == [False] * DELAY + [True] * 3
    assert step.retraces == 1
    for output in step.outputs[:DELAY]:
        np.testing.assert_allclose(output, float_logits, rtol=1e-5, atol=1e-6)
    for output in step.outputs[DELAY:]:
        assert np.abs(output - float_logits).max() > 1e-4
    # The quantized logits lie on the output range's 8-bit grid.
    quant = model.predictions.quantizer.output
    scale = (quant.max.numpy() - min(quant.min.numpy(), 0.0)) / 255.0
    levels = step.outputs[-1] / scale
    np.testing.assert_allclose(levels, np.round(levels), atol=2e-2)


def test_resumed_run_past_the_delay_is_quantized_from_its_first_step():
    model = _model()
    images = tf.random.stateless_uniform([1, 16, 16, 3], (5, 6))
    state = attach_for_training(model, DELAY)
    step = ForwardStep(model, images)
    hook = QuantizationDelayHook(state, DELAY, step.retrace)
    TrainLoop(step, None, start_step=DELAY + 1, num_steps=DELAY + 2, hooks=[hook]).run()
    assert step.quantized_graphs == [True]


@pytest.mark.slow  # two traces of a training step (~50 s on 2 cores)
def test_trainer_honours_quantize_with_delay(tiny_config_path, tmp_path):
    from builders import config_util
    from runners.trainer import TrainOptions, train

    config = config_util.load_pipeline_config(
        tiny_config_path, "train_config { num_steps: 2 quantize_with_delay: 1 }"
    )
    options = TrainOptions(seed=1, save_summaries_steps=0)
    result = train(config, str(tmp_path / "train"), options)
    names = checkpoint_utils.checkpoint_shapes(result.checkpoint_path)
    ranges = checkpoint_utils.read_named_tensors(
        result.checkpoint_path, [name for name in names if name.endswith("/act_quant/max")]
    )
    # Step 2 ran quantized and set the ranges of every non-auxiliary conv output.
    assert len(ranges) > 60
    assert all(value > 0 for name, value in ranges.items() if "Aux" not in name)

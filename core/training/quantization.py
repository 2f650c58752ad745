"""``train_config.quantize_with_delay``: quantization-aware training from a given step on.

The original called ``tf.contrib.quantize.create_training_graph(quant_delay=N)``, which put
fake-quant ops into the graph that stayed pass-through until the global step reached N. Here the
fake quantization is attached to the model before training (:func:`models.quantization.attach`,
so the range variables are in every checkpoint of the run) but switched off, and
:class:`QuantizationDelayHook` switches it on before the first step whose global step is >= N
and makes the training step trace the model again. From then on every forward pass is the int8
model TFLite will run (BN folded on its moving statistics, which stop updating; weights and
activations fake-quantized), and ``export.py`` writes the int8 TFLite from the learned ranges.
"""

from __future__ import annotations

from collections.abc import Callable

from absl import logging

from core.training.loop import HookBase
from models import quantization
from models.layers.fake_quant import QuantizationState


def attach_for_training(model, delay: int) -> QuantizationState | None:
    """Attaches (inactive) fake quantization when ``delay`` > 0; None otherwise.

    Call it under the distribution strategy's scope, after the model's variables exist and
    before its checkpoint object is made.

    Args:
      model: a built ``SegmentationModel``.
      delay: ``quantize_with_delay``; 0 (or unset) means never: the model is left untouched.
    """
    if delay <= 0:
        return None
    return quantization.attach(model, active=False)


class QuantizationDelayHook(HookBase):
    """Switches quantization-aware training on before the step with global step >= ``delay``.

    Args:
      state: from :func:`attach_for_training`.
      delay: the first global step (completed steps before it) trained quantized.
      retrace: makes the compiled training step trace the model again (the switch is a Python
        value read while tracing), e.g. ``TrainStep.retrace``.
    """

    def __init__(self, state: QuantizationState, delay: int, retrace: Callable[[], None]):
        self.state = state
        self.delay = delay
        self.retrace = retrace

    def before_step(self) -> None:
        # loop.step is the global step the coming step starts from (contrib's quant_delay test).
        if not self.state.active and self.loop.step >= self.delay:
            self.state.active = True
            self.retrace()
            logging.info(
                "Step %d: quantization-aware training on (quantize_with_delay %d); batch norm "
                "statistics are frozen from here.",
                self.loop.step + 1,
                self.delay,
            )

"""Evaluating a quantization-aware-training checkpoint as the network it deploys.

A run with ``train_config.quantize_with_delay: N`` trains the float model before global step N
and the simulated int8 model from then on (fake quantization, batch norm folded on its moving
statistics; :mod:`core.training.quantization`), and ``export.py`` turns the trained ranges into
the int8 TFLite. The original's eval never rewrote its graph for quantization
(``tf.contrib.quantize.create_eval_graph`` was not called), so it scored such a checkpoint as a
float model: not what was deployed. :class:`QuantizedEvaluation` attaches the training's
quantizers to the evaluation model and, for each checkpoint, runs what training runs at the
checkpoint's step:

* step >= N: the fake-quantized forward, the ranges read from the checkpoint (inference mode:
  they are not updated by the evaluation images);
* step < N: the float forward, as training was still float there.

The float forward is also used, with a warning, where there is nothing quantized to evaluate:
a checkpoint without ranges (trained without ``quantize_with_delay``), or one whose ranges are
still unset (written at step N exactly, before the first quantized step set them). A checkpoint
without a recorded step is quantized when its ranges are set.
"""

from __future__ import annotations

from absl import logging

from core.checkpoints import checkpoint_utils
from models import quantization

# What the evaluation ran: the ``forward`` of the results JSON.
FLOAT = "float"
SIMULATED_INT8 = "simulated_int8"


class QuantizedEvaluation:
    """Restores checkpoints of a QAT run into an evaluation model and picks its forward.

    Args:
      model: the evaluation ``SegmentationModel`` (built, or buildable by
        ``build_variables()``), without quantizers: they are attached here, switched off.
      delay: ``train_config.quantize_with_delay`` (>= 1).

    Attributes:
      state: the quantizers' shared switch; :meth:`restore` sets it. A ``tf.function`` reads it
        while tracing, so keep one traced forward per setting.

    Raises:
      ValueError: ``delay`` < 1, or the model already has quantizers.
    """

    def __init__(self, model, delay: int):
        if delay < 1:
            raise ValueError(
                f"quantize_with_delay must be >= 1 to evaluate quantized, got {delay}; leave it "
                "unset (or 0) for a float model."
            )
        checkpoint_utils.ensure_named_variables(model)
        self.model = model
        self.delay = int(delay)
        self.state = quantization.attach(model, active=False)

    def restore(self, checkpoint_path: str) -> tuple[str, int | None, str]:
        """Restores a checkpoint and switches the quantizers to what training ran at its step.

        Args:
          checkpoint_path: a checkpoint prefix, or a directory (its latest checkpoint).

        Returns:
          ``(prefix, step, forward)``: the prefix read, its global step (None if unknown) and
          :data:`FLOAT` or :data:`SIMULATED_INT8`.

        Raises:
          CheckpointError: the checkpoint is missing or does not fit the model.
        """
        prefix = checkpoint_utils.resolve_checkpoint(checkpoint_path)
        step = checkpoint_utils.checkpoint_step(prefix)
        ranges = quantization.range_variables(self.model)
        self.state.active = False
        if not quantization.has_ranges(checkpoint_utils.checkpoint_shapes(prefix)):
            checkpoint_utils.restore_model(self.model, prefix, exclude=ranges)
            for variable in ranges.values():
                variable.assign(0.0)
            logging.warning(
                "%s has no quantization ranges (trained without quantize_with_delay?): "
                "evaluating the float model although the config sets quantize_with_delay %d.",
                prefix,
                self.delay,
            )
            return prefix, step, FLOAT
        checkpoint_utils.restore_model(self.model, prefix)
        ranges_set = any(float(variable.numpy()) != 0.0 for variable in ranges.values())
        if step is not None and step < self.delay:
            logging.info(
                "%s: step %d < quantize_with_delay %d, trained float there: evaluating the "
                "float model.",
                prefix,
                step,
                self.delay,
            )
            return prefix, step, FLOAT
        if not ranges_set:
            logging.warning(
                "%s (step %s): its quantization ranges are not set yet (no quantized training "
                "step ran before it; the first one starts at global step %d): evaluating the "
                "float model.",
                prefix,
                step,
                self.delay,
            )
            return prefix, step, FLOAT
        self.state.active = True
        logging.info(
            "%s (step %s >= quantize_with_delay %d): evaluating the simulated int8 model "
            "(fake quantization with the checkpoint's ranges, batch norm folded), as deployed.",
            prefix,
            step,
            self.delay,
        )
        return prefix, step, SIMULATED_INT8

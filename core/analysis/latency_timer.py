"""Timers of the latency model: TensorFlow on the CPU, and what identifies the machine.

:class:`TFCPUTimer` implements the two methods of
:class:`core.analysis.latency_model.LayerTimer` (``time_layer``, ``time_model``); a TFLite
interpreter or GPU timer would implement the same two. Its optional ``time_pair`` times a model
against a reference round-robin, the reference traced once by ``prepare``
(:class:`core.analysis.relative_latency.RelativeMeasurer` uses them when a timer has them: the
latency search's end-to-end checks, the calibration's mixes and ``runners.latency_table``).
:func:`machine_key` is the part of the latency tables' cache key that names the machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from core.analysis import latency

if TYPE_CHECKING:  # only for hints: latency_model imports this module
    from core.analysis.latency_model import LayerShape

STATISTICS = ("median", "min")
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "asimd")


class TFCPUTimer:
    """TensorFlow on the CPU: a statistic of ``runs`` timed calls after ``warmup`` untimed ones.

    A layer runs as :class:`models.layers.conv_bn.ConvBN` runs at inference: the conv
    (``keras.ops.conv``, so a dilated conv uses the same kernels) with a kernel scaled by the
    folded batch norm, a bias add and the activation, in a ``tf.function`` placed on the CPU.
    A small layer runs several times in a ``tf.while_loop`` inside one call (enough to fill
    ``min_call_ms``) and its time is divided by the count: the cost of calling a function
    (about 0.2 ms here, more on a busy machine) would otherwise swamp it.

    Args:
      runs: timed calls per measurement.
      warmup: untimed calls first (the first one traces).
      statistic: ``median`` (as compress.py reports latency) or ``min`` (steadier on a
        shared machine, where other processes only ever add time).
      min_call_ms: a layer call is repeated until it lasts about this long.
    """

    def __init__(
        self, runs: int = 5, warmup: int = 2, statistic: str = "median", min_call_ms: float = 2.0
    ):
        if runs < 1 or warmup < 0:
            raise ValueError(f"need runs >= 1 and warmup >= 0, got {runs} and {warmup}.")
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}.")
        self.name = f"tf-cpu/{statistic}"
        self.runs = runs
        self.warmup = warmup
        self.statistic = statistic
        self.min_call_ms = min_call_ms

    def _pick(self, stats: latency.LatencyStats) -> float:
        return stats.min_ms if self.statistic == "min" else stats.median_ms

    def time_layer(self, layer: LayerShape, in_channels: int, out_channels: int) -> float:
        import keras
        import tensorflow as tf

        height, width = layer.input_hw
        generator = tf.random.Generator.from_seed(0)
        images = generator.normal([1, height, width, in_channels])
        depthwise = layer.kind == "depthwise"
        shape = [
            layer.kernel_size,
            layer.kernel_size,
            in_channels,
            1 if depthwise else out_channels,
        ]
        kernel = generator.normal(shape) * 0.05
        channels = in_channels if depthwise else out_channels
        scale, bias = generator.uniform([channels], 0.5, 1.5), generator.normal([channels])
        common = dict(strides=layer.stride, padding="same", dilation_rate=layer.rate)

        def block(x):
            if layer.kind == "prediction":
                y = keras.ops.conv(x, kernel, **common)
            elif depthwise:
                y = keras.ops.depthwise_conv(x, kernel * scale[None, None, :, None], **common)
            else:
                y = keras.ops.conv(x, kernel * scale, **common)
            y = tf.nn.bias_add(y, bias)
            if layer.activation == "relu":
                y = tf.nn.relu(y)
            elif layer.activation == "relu6":
                y = tf.nn.relu6(y)
            return y

        signature = [tf.TensorSpec(images.shape, tf.float32), tf.TensorSpec([], tf.int32)]

        @tf.function(input_signature=signature)
        def forward(x, repeats):
            with tf.device("/CPU:0"):
                first = block(x)
                # Each iteration recomputes the block (nothing hoists it out of the loop).
                return tf.while_loop(
                    lambda i, y: i < repeats,
                    lambda i, y: (i + 1, block(x)),
                    (tf.constant(1), first),
                    parallel_iterations=1,
                )[1]

        once = tf.constant(1)
        probe = latency.measure(lambda: forward(images, once).numpy(), warmup=1, runs=1)
        repeats = int(min(64, max(1, np.ceil(self.min_call_ms / max(probe.min_ms, 1e-3)))))
        count = tf.constant(repeats)
        stats = latency.measure(
            lambda: forward(images, count).numpy(), warmup=self.warmup, runs=self.runs
        )
        return self._pick(stats) / repeats

    def time_model(self, model, input_size: tuple[int, int]) -> float:
        from core.pruning import compression  # noqa: PLC0415 - core.pruning imports this package

        return self._pick(compression.measure_latency(model, input_size, self.runs))

    def prepare(self, model, input_size: tuple[int, int]) -> PreparedModel:
        """``model``'s traced forward call, warmed up: a reference to time many models against.

        Tracing a model costs a second or two (ICNet), far more than timing it; a caller that
        compares many models with the same one (the full model) prepares it once.
        """
        from core.pruning import compression  # noqa: PLC0415 - as in time_model

        call = compression.forward_call(model, input_size)
        for _ in range(self.warmup):
            call()
        return PreparedModel(call, tuple(int(n) for n in input_size))

    def time_pair(self, model, reference, input_size: tuple[int, int]) -> tuple[float, float]:
        """``(model's ms, reference's ms)``, the two timed round-robin.

        Args:
          model: a built model; traced and warmed up here.
          reference: a built model, or :meth:`prepare`'s result for one (kept traced and warm
            across calls: only ``model`` is traced).
          input_size: (height, width).
        """
        if not isinstance(reference, PreparedModel):
            reference = self.prepare(reference, input_size)
        elif reference.input_size != tuple(int(n) for n in input_size):
            raise ValueError(
                f"the reference was prepared at {list(reference.input_size)}, not at "
                f"{list(input_size)}; prepare it at the size the models are timed at."
            )
        call = self.prepare(model, input_size).call
        stats = latency.measure_interleaved(
            {"model": call, "reference": reference.call}, warmup=0, runs=self.runs
        )
        return self._pick(stats["model"]), self._pick(stats["reference"])

    def time_relative(self, model, reference, input_size: tuple[int, int]) -> float:
        """``model``'s latency over ``reference``'s, the two timed round-robin (:meth:`time_pair`).

        A ratio of two interleaved timings hardly moves when other processes load the
        machine, where either timing alone can double.
        """
        model_ms, reference_ms = self.time_pair(model, reference, input_size)
        return model_ms / reference_ms


@dataclasses.dataclass(frozen=True)
class PreparedModel:
    """A model's traced, warmed-up forward call (:meth:`TFCPUTimer.prepare`).

    Attributes:
      call: runs one batch-1 forward pass to completion.
      input_size: (height, width) it was traced at.
    """

    call: Callable[[], object]
    input_size: tuple[int, int]


def machine_key() -> dict:
    """What a CPU latency depends on: CPU model, vector extensions, TensorFlow's threads."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or platform.machine() or "unknown"
    return {
        "cpu_model": model,
        "vector_extensions": [f for f in VECTOR_EXTENSIONS if f in flags],
        "threads": latency.cpu_threads(),
    }

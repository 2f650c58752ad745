"""A latency model of a prunable network: measured per-layer cost tables plus a fixed part.

NetAdapt (Yang et al., ECCV 2018) searches per-layer widths against a latency *lookup table*
instead of timing every candidate network. This module builds such a table on the machine the
model will run on:

* **Layers.** Every conv block that runs at inference (``model.named_layers()``; auxiliary heads
  are training-only) is recorded with its input size at the deploy input size (one trace, nothing
  runs): kernel, stride, dilation, activation, and which channel groups (the prunable units of
  :mod:`core.pruning.dependency`, ties merged) its input and output channels belong to.
* **Per-layer tables.** Each layer is timed alone, as the model runs it at inference (a conv with
  the batch norm folded into its kernel, the bias and the activation), on a grid of kept input
  and output widths (``ratios`` of its full widths, ``int(n * r)`` as the pruner keeps).
  Layers of the same shape (most ResNet units) share one table. A conv's cost depends on its
  input *and* output widths, so a layer's part is read from its table by bilinear
  interpolation in (input channels, output channels); below the smallest grid width it is
  taken as constant.
* **Prediction.** ``latency(widths) = fixed + sum(layer parts)``, where ``fixed`` is the
  measured end-to-end latency of the full model minus the sum of its layers' parts at full
  width: everything that no width changes (preprocessing, resizes, pooling, the final
  classifier's bias ...), plus the per-call overhead that timing layers alone adds (a constant
  per layer, so it cancels). Each part is attributed to the channel group the layer writes
  (:meth:`LatencyModel.breakdown`), which gives a per-unit view of the cost.

Timing goes through a :class:`LayerTimer`; :class:`TFCPUTimer` times TensorFlow on the CPU with
:func:`core.analysis.latency.measure`. A TFLite-interpreter or GPU timer implements the same two
methods. Tables are cached in a JSON file keyed by the model config, the input size, the machine
(CPU model, vector extensions, threads), the grid and the timer (:func:`load_or_build`), so a
search, or a second search, does not re-time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np
from absl import logging

from core import file_utils
from core.analysis.latency_timer import STATISTICS, TFCPUTimer, machine_key

__all__ = ["STATISTICS", "LatencyModel", "LayerShape", "LayerTimer", "TFCPUTimer", "machine_key"]

DEFAULT_RATIOS = (1.0, 0.75, 0.5, 0.25, 0.125)
TABLE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One conv block as it runs at the deploy input size, and the groups its channels belong to.

    Attributes:
      scope: the conv's slim scope.
      kind: ``conv`` (conv + folded BN + activation), ``depthwise`` or ``prediction``
        (1x1 classifier with a bias).
      kernel_size, stride, rate: the conv's geometry.
      activation: ``relu``, ``relu6`` or None.
      input_hw: (height, width) of its input at the deploy size.
      in_segments: its input channels, in concatenation order: ``(group name, channels)``,
        group None for channels no pruning changes (the image).
      out_group: the group its output channels belong to, None when fixed (a classifier).
      out_channels: output channels at full width.
    """

    scope: str
    kind: str
    kernel_size: int
    stride: int
    rate: int
    activation: str | None
    input_hw: tuple[int, int]
    in_segments: tuple[tuple[str | None, int], ...]
    out_group: str | None
    out_channels: int

    def signature(self) -> str:
        """Layers with one signature cost the same at every width: they share a table."""
        segments = ",".join(f"{'v' if g else 'f'}{n}" for g, n in self.in_segments)
        return (
            f"{self.kind}:k{self.kernel_size}:s{self.stride}:r{self.rate}:{self.activation}:"
            f"{self.input_hw[0]}x{self.input_hw[1]}:in[{segments}]:"
            f"out{'v' if self.out_group else 'f'}{self.out_channels}"
        )

    def channels(self, widths: Mapping[str, int]) -> tuple[int, int]:
        """(input, output) channels when the groups have ``widths`` (missing: full)."""
        cin = sum(widths.get(g, n) if g else n for g, n in self.in_segments)
        if self.kind == "depthwise":
            return cin, cin
        cout = (
            widths.get(self.out_group, self.out_channels) if self.out_group else self.out_channels
        )
        return cin, cout

    def grid(self, ratios: Sequence[float]) -> tuple[list[int], list[int]]:
        """Input and output channel counts to time: ``int(n * r)`` (at least 1) per ratio."""

        def kept(n: int, r: float) -> int:
            return max(1, int(n * r))

        ratios = {1.0, *ratios}  # the full width anchors the fixed part

        cin = sorted({sum(kept(n, r) if g else n for g, n in self.in_segments) for r in ratios})
        if self.kind == "depthwise":
            return cin, [0]  # output follows input; one column
        if self.out_group is None:
            return cin, [self.out_channels]
        return cin, sorted({kept(self.out_channels, r) for r in ratios})


class LayerTimer(Protocol):
    """Times layers alone and whole models; milliseconds, one batch-1 inference pass."""

    name: str

    def time_layer(self, layer: LayerShape, in_channels: int, out_channels: int) -> float: ...

    def time_model(self, model, input_size: tuple[int, int]) -> float: ...


def collect_layers(model, graph, input_size: Sequence[int]) -> list[LayerShape]:
    """Every conv block an inference pass runs, with its input size and channel groups.

    Traces ``preprocess -> predict`` (eval mode) once at ``[1, height, width, 3]``, recording
    each block's input shape; nothing is executed.

    Args:
      model: a ``SegmentationModel`` with its variables built.
      graph: its :class:`core.pruning.dependency.ChannelGraph` (ties applied).
      input_size: (height, width) of the deploy input.
    """
    import tensorflow as tf

    layers = model.named_layers()
    seen: dict[str, tuple[int, int]] = {}
    for scope, layer in layers.items():
        call = layer.call

        def recording(x, *args, _scope=scope, _call=call, **kwargs):
            seen[_scope] = (int(x.shape[1]), int(x.shape[2]))
            return _call(x, *args, **kwargs)

        layer.call = recording  # instance attribute: Keras calls self.call
    try:
        height, width = (int(n) for n in input_size)

        @tf.function(autograph=False)
        def inference(images):
            return model.predict(model.preprocess(images), training=False)["logits"]

        inference.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32))
    finally:
        for layer in layers.values():
            del layer.call
    segments: dict[str, list[tuple[int, str]]] = {}
    for group in graph.groups:
        for consumer in group.consumers:
            segments.setdefault(consumer.scope, []).append((consumer.offset, group.name))
    prediction = set(model.prediction_scopes())
    sizes = {group.name: group.size for group in graph.groups}
    shapes = []
    for scope, layer in layers.items():
        if scope not in seen:
            continue  # training-only (auxiliary heads)
        in_segments, offset = [], 0
        for start, name in sorted(segments.get(scope, [])):
            if start > offset:
                in_segments.append((None, start - offset))
            in_segments.append((name, sizes[name]))
            offset = start + sizes[name]
        if graph.input_channels[scope] > offset:
            in_segments.append((None, graph.input_channels[scope] - offset))
        depthwise = bool(getattr(layer, "depthwise", False))
        group = graph.group_of.get(scope)
        kind = "prediction" if scope in prediction else "depthwise" if depthwise else "conv"
        shapes.append(
            LayerShape(
                scope=scope,
                kind=kind,
                kernel_size=int(layer.kernel_size),
                stride=int(layer.stride),
                rate=int(layer.rate),
                activation=getattr(layer, "activation", None),
                input_hw=seen[scope],
                in_segments=tuple(in_segments),
                out_group=None if kind == "prediction" or group is None else group.name,
                out_channels=int(graph.input_channels[scope]) if depthwise else int(layer.filters),
            )
        )
    return shapes


def _interpolate(table: dict, cin: int, cout: int) -> float:
    ms = np.asarray(table["ms"], dtype=np.float64)
    cout_grid = table["cout"]
    by_row = [np.interp(cout, cout_grid, row) if len(cout_grid) > 1 else row[0] for row in ms]
    return float(np.interp(cin, table["cin"], by_row) if len(table["cin"]) > 1 else by_row[0])


class LatencyModel:
    """Predicted latency of the model at any group widths (module docstring).

    Args:
      layers: the model's layers (:func:`collect_layers`).
      tables: layer signature -> ``{"cin": [..], "cout": [..], "ms": [[..]]}`` (rows: cin).
      full_ms: measured end-to-end latency of the full model.
      key: what the tables were measured for (cache key, reported).
    """

    def __init__(
        self, layers: Sequence[LayerShape], tables: Mapping[str, dict], full_ms: float, key
    ):
        self.layers = list(layers)
        self.tables = dict(tables)
        self.full_ms = float(full_ms)
        self.key = dict(key)
        self._by_group: dict[str, list[LayerShape]] = {}
        for layer in self.layers:
            for group in {layer.out_group, *(g for g, _ in layer.in_segments)} - {None}:
                self._by_group.setdefault(group, []).append(layer)
        self.fixed_ms = self.full_ms - sum(self.layer_ms(layer, {}) for layer in self.layers)

    def layer_ms(self, layer: LayerShape, widths: Mapping[str, int]) -> float:
        """One layer's part at ``widths`` (group name -> kept channels; missing: full)."""
        cin, cout = layer.channels(widths)
        return _interpolate(self.tables[layer.signature()], cin, cout)

    def predict(self, widths: Mapping[str, int]) -> float:
        """``fixed + sum of the layers' parts`` at ``widths``, in milliseconds."""
        return self.fixed_ms + sum(self.layer_ms(layer, widths) for layer in self.layers)

    def delta(self, widths: Mapping[str, int], changed: Mapping[str, int]) -> float:
        """Predicted change when the groups in ``changed`` take those widths (others as
        ``widths``); only the layers touching them are evaluated, so a search can scan widths."""
        touched = {id(layer): layer for g in changed for layer in self._by_group.get(g, [])}
        after = {**widths, **changed}
        return sum(
            self.layer_ms(layer, after) - self.layer_ms(layer, widths) for layer in touched.values()
        )

    def breakdown(self, widths: Mapping[str, int]) -> dict[str, float]:
        """Milliseconds per channel group its layers write, plus ``fixed`` and ``unpruned``
        (layers writing no group, e.g. the classifier); they sum to :meth:`predict`."""
        parts = {"fixed": self.fixed_ms}
        for layer in self.layers:
            name = layer.out_group or "unpruned"
            parts[name] = parts.get(name, 0.0) + self.layer_ms(layer, widths)
        return parts


def table_key(model_config_text: str, input_size: Sequence[int], ratios, timer_name: str) -> dict:
    """The cache key: model config, input size, machine, width grid and timer."""
    return {
        "version": TABLE_VERSION,
        "model_config_sha256": hashlib.sha256(model_config_text.encode()).hexdigest(),
        "input_size": [int(n) for n in input_size],
        "ratios": [float(r) for r in ratios],
        "timer": timer_name,
        "machine": machine_key(),
    }


def cache_path(cache_dir: str, key: Mapping) -> str:
    """``<cache_dir>/latency_table_<hash of the key>.json``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"latency_table_{digest}.json")


def build_tables(
    layers: Sequence[LayerShape],
    ratios: Sequence[float],
    timer: LayerTimer,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict]:
    """Times every distinct layer signature on its width grid (see the module docstring)."""
    unique = {layer.signature(): layer for layer in layers}
    tables, done = {}, 0
    total = sum(len(a) * len(b) for a, b in (layer.grid(ratios) for layer in unique.values()))
    for signature, layer in unique.items():
        cin_grid, cout_grid = layer.grid(ratios)
        rows = []
        for cin in cin_grid:
            rows.append([timer.time_layer(layer, cin, cout or cin) for cout in cout_grid])
            done += len(cout_grid)
            if progress:
                progress(done, total)
        tables[signature] = {"cin": cin_grid, "cout": cout_grid, "ms": rows}
    return tables


def load_or_build(
    model,
    graph,
    *,
    model_config_text: str,
    input_size: Sequence[int],
    cache_dir: str | None,
    timer: LayerTimer | None = None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
) -> tuple[LatencyModel, str | None, bool]:
    """The latency model of ``model`` at ``input_size``, from the cache file when it matches.

    Args:
      model: the full (unpruned) model, variables built.
      graph: its channel graph, ties applied.
      model_config_text: the model's config as text (part of the cache key).
      input_size: deploy (height, width).
      cache_dir: folder of the cached tables, None: do not cache.
      timer: the :class:`LayerTimer` (default :class:`TFCPUTimer`).
      ratios: width grid, fractions of each layer's full widths.

    Returns:
      ``(latency model, cache file or None, whether it came from the cache)``.
    """
    timer = timer or TFCPUTimer()
    key = table_key(model_config_text, input_size, ratios, timer.name)
    layers = collect_layers(model, graph, input_size)
    path = cache_path(cache_dir, key) if cache_dir else None
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as stream:
            cached = json.load(stream)
        wanted = {layer.signature() for layer in layers}
        if cached.get("key") == key and wanted <= set(cached.get("tables", {})):
            logging.info("Latency table read from %s (no timing).", path)
            return LatencyModel(layers, cached["tables"], cached["full_ms"], key), path, True
        logging.info("Latency table %s is for another model or machine; timing again.", path)

    def progress(done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            logging.info("Latency table: %d of %d layer timings.", done, total)

    tables = build_tables(layers, ratios, timer, progress)
    full_ms = timer.time_model(model, tuple(int(n) for n in input_size))
    latency_model = LatencyModel(layers, tables, full_ms, key)
    if path:
        document = {"key": key, "full_ms": full_ms, "tables": tables}
        file_utils.atomic_write_text(path, json.dumps(document, indent=1) + "\n")
        logging.info("Latency table written to %s.", path)
    return latency_model, path, False


def uniform_and_random_widths(graph, seed: int = 0, mixes: int = 3) -> dict[str, dict[str, int]]:
    """Named width sets for :func:`compare`: uniform 1.0, 0.75, 0.5, 0.25 and random mixes."""
    sets = {}
    for ratio in (1.0, 0.75, 0.5, 0.25):
        sets[f"uniform {ratio}"] = {g.name: max(1, int(g.size * ratio)) for g in graph.groups}
    rng = np.random.default_rng(seed)
    for index in range(mixes):
        sets[f"random mix {index + 1}"] = {
            g.name: max(1, int(g.size * rng.choice([1.0, 0.75, 0.5, 0.25]))) for g in graph.groups
        }
    return sets


def compare(
    predictor: LatencyModel,
    build: Callable[[Mapping[str, int]], object],
    width_sets: Mapping[str, Mapping[str, int]],
    timer: LayerTimer,
    input_size: tuple[int, int],
) -> list[dict]:
    """Predicted against measured end-to-end latency for each width set.

    Args:
      predictor: the latency model.
      build: group widths -> a built model with those widths.
      width_sets: name -> group widths.
      timer: times the built models.
      input_size: deploy (height, width).

    Returns:
      One row per set: ``name``, ``predicted_ms``, ``measured_ms``, ``error`` (relative).
    """
    rows = []
    for name, widths in width_sets.items():
        measured = timer.time_model(build(widths), input_size)
        predicted = predictor.predict(widths)
        rows.append(
            {
                "name": name,
                "predicted_ms": predicted,
                "measured_ms": measured,
                "error": (predicted - measured) / measured,
            }
        )
    return rows

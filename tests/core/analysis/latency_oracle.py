"""A deterministic stand-in for the CPU timer of the latency model (tests only).

It charges each conv ``A * k^2 * cin * cout + B`` milliseconds and a whole model ``FIXED`` plus
the same charge for every conv it has, computed from the built model's kernels (not from the
latency model's own wiring). The cost is bilinear in the channel counts, so the latency model's
bilinear interpolation is exact and its prediction of any model inside the grid must equal
``time_model`` of that model: an independent oracle that no machine load can move.
"""

from __future__ import annotations

A, B, FIXED = 1e-3, 0.05, 2.0


class OracleTimer:
    """Implements the latency model's timer interface (``name``, ``time_layer``, ``time_model``)."""

    name = "oracle"
    statistic = "oracle"

    def __init__(self, **_unused):
        self.layer_calls = 0
        self.model_calls = 0

    def time_layer(self, layer, in_channels: int, out_channels: int) -> float:
        self.layer_calls += 1
        return A * layer.kernel_size**2 * in_channels * out_channels + B

    def time_model(self, model, input_size) -> float:
        self.model_calls += 1
        variables = model.named_variables()
        aux = set(model.aux_scopes())
        total = FIXED
        for scope in model.named_layers():
            if scope in aux:
                continue
            kh, _, cin, cout = variables[f"{scope}/weights"].shape
            total += A * kh * kh * cin * cout + B
        return total


class BranchOracleTimer:
    """A network that is *not* the sum of its layers: concurrent branches, per-call overhead.

    The network is described here, apart from the latency model: ``layers`` maps a conv's
    scope to ``(input, output group)``, the input a group name or a fixed channel count; each
    conv costs ``per_unit[scope] * cin * cout`` ms. Its end-to-end latency is ``fixed`` plus
    the slowest of ``branches`` (lists of scopes running one after the other, the branches
    concurrently), while a conv timed alone also pays ``alone_overhead`` (a call's dispatch).
    ``time_model`` takes the "built model" as ``{group: kept channels}`` (missing: full).
    """

    name = "branch-oracle"
    statistic = "oracle"

    def __init__(self, layers, sizes, per_unit, branches, fixed, alone_overhead=0.5):
        self.layers, self.sizes, self.per_unit = layers, sizes, per_unit
        self.branches, self.fixed, self.alone_overhead = branches, fixed, alone_overhead
        self.model_calls = []

    def time_layer(self, layer, in_channels: int, out_channels: int) -> float:
        return self.per_unit[layer.scope] * in_channels * out_channels + self.alone_overhead

    def conv_ms(self, scope, widths) -> float:
        source, group = self.layers[scope]
        cin = source if isinstance(source, int) else widths.get(source, self.sizes[source])
        return self.per_unit[scope] * cin * widths.get(group, self.sizes[group])

    def time_model(self, widths, input_size=None) -> float:
        self.model_calls.append(dict(widths))
        return self.fixed + max(
            sum(self.conv_ms(scope, widths) for scope in branch) for branch in self.branches
        )

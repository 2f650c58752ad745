"""Where the time of one inference goes: a per-op profile of the frozen deploy graph.

The model's inference function (preprocess -> network -> logits, eval mode) is frozen, loaded
into a TF1 session with one inter-op thread (ops run one after another, each on every core,
so their times add up to the run) and traced with ``RunOptions.FULL_TRACE``. The step stats
give each op's time; they are summed by op type and by model part (the first scope under the
model: backbone blocks, the ICNet branches, the fusion units, the heads).

Used by the ``profile`` section of ``make bench`` (ICNet 1.0 at the first ``--sizes``); the
table it writes is the evidence for what bounds the CPU latency (docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from core.analysis import flops, latency
from core.checkpoints import checkpoint_utils


@dataclasses.dataclass(frozen=True)
class OpProfile:
    """One traced run: milliseconds by op type and by model part, and the untraced latency."""

    input_size: tuple[int, int]
    total_ms: float
    by_type_ms: dict[str, float]
    by_part_ms: dict[str, float]
    session_latency: latency.LatencyStats
    gflops: float

    def as_dict(self) -> dict:
        result = dataclasses.asdict(self)
        result["session_latency"] = self.session_latency.as_dict()
        return result


_PART_PATTERNS = (
    (re.compile(r"resnet_v1_50[./](block\d)"), None),
    (re.compile(r"resnet_v1_50[./]conv1"), "backbone stem"),
    (re.compile(r"MobilenetV2"), "backbone (MobileNetV2)"),
    # Graph scopes add "_<n>" to each Keras layer name: CascadeFeatureFusion_1/ is the first
    # unit (layer "CascadeFeatureFusion"), CascadeFeatureFusion_1_2/ the second.
    (re.compile(r"(CascadeFeatureFusion(?:_\d+)?)(?:\.|_\d+/)"), None),
    (re.compile(r"(FastPSPModule|PSPModule)"), None),
    (re.compile(r"(Predictions|AuxOutput)"), "prediction convs"),
)


def model_part(node_name: str) -> str:
    """A coarse part of the model for a node name of the frozen graph."""
    for pattern, label in _PART_PATTERNS:
        match = pattern.search(node_name)
        if match:
            return label or match.group(1)
    if re.search(r"(^|/)Conv(_\d+)?[./]", node_name):
        return "full-resolution branch / other convs"
    if "ResizeBilinear" in node_name or "resize" in node_name.lower():
        return "resizes"
    return "other (preprocess, adds, resizes)"


def _frozen_graph(model, input_size: Sequence[int]) -> tuple[tf.compat.v1.GraphDef, str, str]:
    height, width = input_size
    checkpoint_utils.ensure_named_variables(model)

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32)])
    def inference(images):
        return model.predict(model.preprocess(images), training=False)["logits"]

    frozen = convert_variables_to_constants_v2(inference.get_concrete_function())
    return frozen.graph.as_graph_def(), frozen.inputs[0].name, frozen.outputs[0].name


def profile_model(model, input_size: Sequence[int], runs: int = 3) -> OpProfile:
    """Profiles one batch-1 float32 inference of ``model`` at ``input_size`` (H, W)."""
    graph_def, input_name, output_name = _frozen_graph(model, input_size)
    op_types = {node.name: node.op for node in graph_def.node}
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=1)
    images = np.random.default_rng(0).uniform(0, 255, (1, *input_size, 3)).astype(np.float32)
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        run = lambda: session.run(output_name, {input_name: images})  # noqa: E731
        timing = latency.measure(run, warmup=2, runs=runs)
        metadata = tf.compat.v1.RunMetadata()
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        session.run(output_name, {input_name: images}, options=options, run_metadata=metadata)
    by_type: collections.Counter = collections.Counter()
    by_part: collections.Counter = collections.Counter()
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            name = node.node_name.split(":")[0]
            if name not in op_types:
                continue
            ms = node.all_end_rel_micros / 1000.0
            by_type[op_types[name]] += ms
            by_part[model_part(name)] += ms
    report = flops.compute_flops(model, input_size, include_postprocess=False)
    return OpProfile(
        input_size=(int(input_size[0]), int(input_size[1])),
        total_ms=float(sum(by_type.values())),
        by_type_ms=dict(by_type.most_common()),
        by_part_ms=dict(by_part.most_common()),
        session_latency=timing,
        gflops=report.gflops,
    )


PROFILE_MODEL = "icnet_1.0"


def profile_key(model: str, size_label: str) -> str:
    return f"profile/{model}/{size_label}"


def measure_profile(results, store, model_key: str, size: Sequence[int], runs: int) -> None:
    """Fills ``profile/<model>/<size>`` with :func:`profile_model` of a built model."""
    from benchmarks.inference_bench import size_label

    profile = profile_model(store.model(model_key), size, runs)
    results.set(profile_key(model_key, size_label(size)), **profile.as_dict())


def profile_table(document: dict, top: int = 12) -> list[str]:
    """Time by op type and by model part of each profiled model (``profile/*`` cells)."""
    from benchmarks.markdown import cells_under, status_text, table

    lines = []
    for key, cell in cells_under(document, "profile/").items():
        _, model, size = key.split("/")
        lines += [f"## Where the time goes: {model} at {size}", ""]
        status = status_text(cell)
        if status:
            lines += [status, ""]
            continue
        total = cell["total_ms"]
        timing = cell["session_latency"]
        lines += [
            f"One traced run of the frozen inference graph (preprocess -> logits, "
            f"{cell['gflops']:.1f} GFLOPs) in a session with one inter-op thread, so op times "
            f"add up: {total:,.1f} ms in ops; untraced, the same session takes "
            f"{timing['median_ms']:,.1f} ms (median of {timing['runs']}).",
            "",
        ]
        rows = [
            [op, f"{ms:,.1f}", f"{100 * ms / total:.1f}%"]
            for op, ms in list(cell["by_type_ms"].items())[:top]
        ]
        lines += table(["Op type", "ms", "share"], rows) + [""]
        rows = [
            [part, f"{ms:,.1f}", f"{100 * ms / total:.1f}%"]
            for part, ms in cell["by_part_ms"].items()
        ]
        lines += table(["Model part", "ms", "share"], rows) + [""]
    return lines

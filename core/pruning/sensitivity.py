"""Pruning sensitivity: the mIoU a model loses when one part of it alone is pruned.

For every *unit* (below) and every keep ratio ``r``, the unit's channel groups are soft-pruned
alone, exactly as ``compress.py --soft_apply`` would prune them (summed filter L1 norms, the top
``int(n * r)`` channels kept, the others zeroed in kernel, gamma, beta and moving mean: see
:mod:`core.pruning.surgery`). The zeroing is done in place on the model's variables, the model is
scored on the first ``num_examples`` images of the pipeline's eval record (the project's
:class:`core.evaluation.evaluator.SegmentationEvaluator`, the same confusion matrix and mIoU as
``eval.py``), and the original values are assigned back (also when the evaluation raises), so no
model is rebuilt and the forward pass is traced once.

Units (``granularity``):

* ``group``: each channel group of the :class:`~core.pruning.dependency.ChannelGraph`, named by
  its first producer conv (a residual stage's group is its projection ``shortcut`` and every
  ``conv3``; a fusion group is a CFF unit's ``DilatedConv`` and ``Conv``).
* ``block``: the groups aggregated by where their first producer sits:

  - ``stem``: backbone convs before the first block (ResNet ``conv1``, MobileNetV2 ``Conv``);
  - ``block1`` .. ``block4``: a ResNet-50 block (its residual group and its units' inner convs);
  - ``expanded_conv_a-b``: a MobileNetV2 stage, the inverted-residual units ``a..b`` whose
    outputs share one residual channel group (with their ``expand`` convs);
  - ``FastPSPModule`` (ICNet) / ``PSPModule`` (PSPNet): the pyramid pooling module;
  - ``full_branch``: ICNet's full-resolution branch ``Conv`` .. ``Conv_3``;
  - ``CascadeFeatureFusion``, ``CascadeFeatureFusion_1``: ICNet's two fusion units.

Prediction and auxiliary classifiers are never pruned, so they are no unit; groups with a
skipped conv (``skip_nodes``) are left out. Besides mIoU and its drop from the unpruned baseline
(``drop = baseline - mIoU``, positive when pruning hurts), each measurement records the
parameters the same hard prune would remove (kernels of the unit's convs and of their
consumers, zoo convention: no batch norm, no auxiliary heads). FLOPs are not counted: that needs
one graph trace per unit and ratio.

Outputs (:func:`write_report`): ``sensitivity.json``, ``sensitivity.csv`` (one row per unit and
ratio), ``sensitivity.md`` (one row per unit) and ``sensitivity.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from builders import compressor_builder, config_util, dataset_builder, model_builder
from core import file_utils
from core.checkpoints import checkpoint_utils
from core.data.standard_fields import InputDataFields
from core.evaluation.evaluator import EvaluationError, SegmentationEvaluator
from core.pruning import surgery
from core.pruning.dependency import ChannelGraph, build_channel_graph
from core.training.losses import resize_logits
from models import outputs

GRANULARITIES = ("block", "group")
DEFAULT_RATIOS = (0.75, 0.5, 0.25)
# Above this many units the plot is a heatmap: more lines than this cannot be told apart.
MAX_LINE_PLOT_UNITS = 12
_STAGE = re.compile(r"^(?P<prefix>.*/)expanded_conv(?:_(?P<index>\d+))?/")


@dataclasses.dataclass(frozen=True)
class Unit:
    """One part of the model pruned alone: ``name`` and its channel groups' names."""

    name: str
    groups: tuple[str, ...]
    width: int  # channels of its groups together


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One unit pruned at one keep ratio."""

    unit: str
    ratio: float
    kept: int  # channels kept, over the unit's groups
    miou: float
    drop: float  # baseline mIoU - miou
    params_removed: int


@dataclasses.dataclass
class SensitivityResult:
    """Everything the analysis measured; :meth:`to_dict` is what ``sensitivity.json`` holds."""

    model: str
    granularity: str
    ratios: tuple[float, ...]
    baseline_miou: float
    num_images: int
    total_params: int
    units: list[Unit]
    measurements: list[Measurement]
    skipped_groups: list[str]
    seconds: float
    checkpoint: str | None = None  # set by :func:`run`

    def for_unit(self, name: str) -> dict[float, Measurement]:
        """``{ratio: measurement}`` of one unit."""
        return {m.ratio: m for m in self.measurements if m.unit == name}

    def to_dict(self) -> dict:
        units = []
        for unit in self.units:
            rows = [dataclasses.asdict(m) for m in self.for_unit(unit.name).values()]
            for row in rows:
                del row["unit"]
                row["params_removed_share"] = row["params_removed"] / max(self.total_params, 1)
            units.append({**dataclasses.asdict(unit), "results": rows})
        fields = dataclasses.asdict(self)
        fields.update(units=units, ratios=list(self.ratios))
        del fields["measurements"]
        return fields


def parse_ratios(values: Sequence[float | str]) -> tuple[float, ...]:
    """Keep ratios from numbers or flag strings, unique, largest first.

    Raises:
      ValueError: no ratio, a non-number, or a ratio outside (0, 1].
    """
    ratios = set()
    for value in values:
        try:
            ratio = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"--ratios: {value!r} is not a number; pass e.g. 0.75,0.5,0.25."
            ) from None
        if not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"--ratios: keep ratio {value!r} is not in (0, 1]; a ratio is the fraction of "
                "filters KEPT (0.75 prunes a quarter), as compress.py's --compression_factor."
            )
        ratios.add(ratio)
    if not ratios:
        raise ValueError("--ratios is empty; pass keep ratios such as 0.75,0.5,0.25.")
    return tuple(sorted(ratios, reverse=True))


def check_granularity(granularity: str) -> None:
    """Raises ValueError unless ``granularity`` is one of :data:`GRANULARITIES`."""
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"--granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}."
        )


def _block_names(model, graph: ChannelGraph) -> dict[str, str]:
    """Group name -> block name (module docstring)."""
    segments = model.recompute_segments()  # ResNet blocks, the pyramid module, the CFF units
    full_branch = {conv.scope for conv in getattr(model, "full_branch", ())}
    backbone = {layer.scope for layer in model.backbone.scoped_layers()}
    stage_units: dict[str, list[int]] = {}  # residual group of a MobileNetV2 stage -> units
    for scope in backbone:
        match = _STAGE.match(scope)
        if match and scope.endswith("/project"):
            index = int(match["index"] or 0)
            stage_units.setdefault(graph.group_of[scope].name, []).append(index)
    names = {}
    for group in graph.groups:
        scope = group.name
        name = next((s.rsplit("/", 1)[-1] for s in segments if scope.startswith(s + "/")), None)
        match = _STAGE.match(scope)
        if name is None and match and scope in backbone:
            suffix = f"_{match['index']}" if match["index"] else ""
            stage = graph.group_of[f"{match['prefix']}expanded_conv{suffix}/project"].name
            first, last = min(stage_units[stage]), max(stage_units[stage])
            name = "expanded_conv" + (f"_{first}" if first else "")
            name += f"-{last}" if last != first else ""
        if name is None and scope in full_branch:
            name = "full_branch"
        if name is None and scope in backbone:
            name = "stem"
        names[group.name] = name or scope.split("/", 1)[0]
    return names


def make_units(model, graph: ChannelGraph, granularity: str, prunable: Sequence[str]) -> list[Unit]:
    """The units of ``granularity`` over the ``prunable`` groups, in model order.

    Raises:
      ValueError: an unknown granularity.
    """
    check_granularity(granularity)
    wanted = set(prunable)
    groups = [group for group in graph.groups if group.name in wanted]
    if granularity == "group":
        return [Unit(g.name, (g.name,), g.size) for g in groups]
    blocks = _block_names(model, graph)
    members: dict[str, list] = {}
    for group in groups:
        members.setdefault(blocks[group.name], []).append(group)
    return [
        Unit(name, tuple(g.name for g in found), sum(g.size for g in found))
        for name, found in members.items()
    ]


class MiouScorer:
    """mIoU of a model's *current* variables over an eval dataset, forward pass traced once.

    The forward pass is :class:`core.evaluation.evaluator.EvalRunner`'s (eval-mode logits resized to the
    padded input if smaller, cropped to the original size, argmax); the scores come from
    :class:`~core.evaluation.evaluator.SegmentationEvaluator`.

    Args:
      model: a built ``SegmentationModel``.
      dataset: batches keyed by ``InputDataFields`` (``dataset_builder.build_eval_dataset``).
      num_classes: number of classes.
      ignore_label: ground-truth value that is not evaluated.
    """

    def __init__(self, model, dataset: tf.data.Dataset, num_classes: int, ignore_label: int):
        self._model = model
        self._dataset = dataset
        self._evaluator = SegmentationEvaluator(num_classes, ignore_label)
        self._forward = tf.function(self._classes)

    def _classes(self, images: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
        logits = self._model.predict(self._model.preprocess(images), training=False)
        logits = logits[outputs.LOGITS]
        if logits.shape[1:3] != images.shape[1:3]:
            logits = resize_logits(logits, tf.shape(images)[1:3])
        return tf.argmax(logits[:, :height, :width, :], axis=-1, output_type=tf.int32)

    def score(self) -> tuple[float, int]:
        """``(mIoU, images evaluated)``.

        Raises:
          EvaluationError: the records cannot be read, hold bad class ids, or are empty.
        """
        self._evaluator.reset()
        iterator = iter(self._dataset)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except tf.errors.InvalidArgumentError as error:
                raise EvaluationError(f"reading the eval records failed: {error.message}") from None
            height = tf.reduce_max(batch[InputDataFields.original_height])
            width = tf.reduce_max(batch[InputDataFields.original_width])
            classes = self._forward(batch[InputDataFields.input_image], height, width)
            self._evaluator.process(batch, classes.numpy())
        if not self._evaluator.num_images:
            raise EvaluationError(
                "the evaluation dataset is empty; check eval_input_reader's input_path."
            )
        return float(self._evaluator.evaluate()["miou"]), self._evaluator.num_images


def _scopes_of(graph: ChannelGraph, groups: Sequence[str]) -> tuple[set[str], set[str]]:
    """(producer and pass-through scopes, consumer scopes) of some groups."""
    by_name = {group.name: group for group in graph.groups}
    owners, consumers = set(), set()
    for name in groups:
        owners.update(by_name[name].producers, by_name[name].passthrough)
        consumers.update(c.scope for c in by_name[name].consumers)
    return owners, consumers


def _params_removed(
    graph: ChannelGraph, masks: Mapping[str, np.ndarray], tensors: Mapping[str, np.ndarray], aux
) -> int:
    """Kernel parameters a hard prune with ``masks`` removes (no BN, no auxiliary heads)."""
    owners, consumers = _scopes_of(graph, list(masks))
    kernels = {
        f"{scope}/{leaf}": tensors[f"{scope}/{leaf}"]
        for scope in (owners | consumers) - set(aux)
        for leaf in ("weights", "depthwise_weights")
        if f"{scope}/{leaf}" in tensors
    }
    pruned = surgery.hard_prune(graph, masks, kernels)
    return sum(v.size for v in kernels.values()) - sum(v.size for v in pruned.values())


def _eta(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def analyze(
    model,
    pipeline,
    *,
    ratios: Sequence[float | str] = DEFAULT_RATIOS,
    granularity: str = "block",
    num_examples: int | None = None,
    skip_nodes: Sequence[str] = (),
) -> SensitivityResult:
    """Prunes each unit alone at each ratio and scores it; the model is left as it was.

    Args:
      model: a built ICNet / PSPNet holding the trained weights (``restore_model``).
      pipeline: its ``PipelineConfig``; ``eval_input_reader`` and ``eval_config`` give the data.
      ratios: keep ratios in (0, 1] (fraction of filters kept).
      granularity: ``block`` or ``group`` (module docstring).
      num_examples: images to score; None uses ``eval_config.num_examples`` (0 there: all).
      skip_nodes: conv scopes or original node names never pruned (``--skippable_nodes``).

    Returns:
      A :class:`SensitivityResult`.

    Raises:
      ConfigError: no ``eval_input_reader``.
      ValueError: bad ratios, granularity, num_examples or skip node; EvaluationError.
    """
    started = time.perf_counter()
    ratios = parse_ratios(ratios)
    if num_examples is not None and num_examples < 1:
        raise ValueError(f"--num_examples must be >= 1 (or unset), got {num_examples}.")
    check_granularity(granularity)
    if not pipeline.HasField("eval_input_reader"):
        raise config_util.ConfigError(
            "the config has no eval_input_reader: add eval_input_reader { tf_record_input_reader "
            "{ input_path: '/path/to/val.record' } } to score the pruned models."
        )
    variables = checkpoint_utils.ensure_named_variables(model)
    original = {name: variable.numpy() for name, variable in variables.items()}
    graph = build_channel_graph(model)
    masks = {}  # ratio -> {group: keep-mask}, ranked on the original weights
    for ratio in ratios:
        pruner = compressor_builder.build(
            None,
            compression_factor=ratio,
            known_scopes=set(graph.input_channels),
            skip_nodes=skip_nodes,
        )
        masks[ratio], _ = pruner.compute_masks(graph, original)
    prunable = list(masks[ratios[0]])
    skipped = [group.name for group in graph.groups if group.name not in masks[ratios[0]]]
    units = make_units(model, graph, granularity, prunable)
    if not units:
        raise ValueError(
            f"every channel group of {model.name} is skipped (--skippable_nodes); nothing to "
            "analyse."
        )

    eval_config = pipeline.eval_config
    dataset = dataset_builder.build_eval_dataset(pipeline.eval_input_reader, eval_config)
    count = num_examples or eval_config.num_examples or None
    scorer = MiouScorer(
        model,
        dataset.take(count) if count else dataset,
        model.num_classes,
        eval_config.ignore_label,
    )
    baseline, num_images = scorer.score()
    logging.info(
        "Baseline mIoU %.4f on %d images; %d %s units x %d ratios to score.",
        baseline,
        num_images,
        len(units),
        granularity,
        len(ratios),
    )
    total_params = model.count_parameters()
    aux = model.aux_scopes()
    measurements = []
    loop_start, total, done = time.perf_counter(), len(units) * len(ratios), 0
    for unit in units:
        owners, _ = _scopes_of(graph, unit.groups)
        # Kernels and batch norms of the unit's convs: all that soft pruning changes.
        names = [n for n in original if n.rpartition("/")[0].removesuffix("/BatchNorm") in owners]
        for ratio in ratios:
            unit_masks = {group: masks[ratio][group] for group in unit.groups}
            pruned = surgery.soft_prune(graph, unit_masks, {n: original[n] for n in names})
            try:
                for name in names:
                    variables[name].assign(pruned[name])
                miou, _ = scorer.score()
            finally:
                for name in names:
                    variables[name].assign(original[name])
            done += 1
            measurements.append(
                Measurement(
                    unit=unit.name,
                    ratio=ratio,
                    kept=sum(int(m.sum()) for m in unit_masks.values()),
                    miou=miou,
                    drop=baseline - miou,
                    params_removed=_params_removed(graph, unit_masks, original, aux),
                )
            )
            remaining = (time.perf_counter() - loop_start) / done * (total - done)
            logging.info(
                "[%d/%d] %s keep %.2f: mIoU %.4f (drop %+.4f); ETA %s",
                done,
                total,
                unit.name,
                ratio,
                miou,
                baseline - miou,
                _eta(remaining),
            )
    return SensitivityResult(
        model=model.name,
        granularity=granularity,
        ratios=ratios,
        baseline_miou=baseline,
        num_images=num_images,
        total_params=total_params,
        units=units,
        measurements=measurements,
        skipped_groups=skipped,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------------- the report


def _points(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100.0 * value:.2f}"


def markdown_table(result: SensitivityResult) -> str:
    """One row per unit: width, mIoU and drop at each ratio, the worst drop, parameters saved."""
    smallest = min(result.ratios)
    header = ["unit", "groups", "width", *(f"mIoU % @{r:g} (drop)" for r in result.ratios)]
    header += ["max drop", f"params removed @{smallest:g}"]
    lines = [
        f"Pruning sensitivity of {result.model} ({result.granularity} units, "
        f"{result.num_images} image{'s' * (result.num_images != 1)}): baseline mIoU "
        f"{_points(result.baseline_miou)}%.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for unit in result.units:
        found = result.for_unit(unit.name)
        cells = [f"{_points(found[r].miou)} ({_points(found[r].drop)})" for r in result.ratios]
        worst = max(m.drop for m in found.values())
        saved = _points(found[smallest].params_removed / max(result.total_params, 1)) + "%"
        row = [unit.name, str(len(unit.groups)), str(unit.width), *cells, _points(worst), saved]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "drop = baseline mIoU - mIoU, in points (negative: the pruned model scored higher). "
        "width: channels of the unit's groups. params removed: kernel parameters the hard prune "
        f"of this unit alone removes, of the model's {result.total_params}.",
    ]
    return "\n".join(lines) + "\n"


def csv_text(result: SensitivityResult) -> str:
    """One row per unit and ratio."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(
        [
            "unit",
            "groups",
            "width",
            "ratio",
            "kept",
            "miou",
            "drop",
            "params_removed",
            "params_removed_share",
        ]
    )
    widths = {unit.name: unit for unit in result.units}
    for m in result.measurements:
        unit = widths[m.unit]
        share = m.params_removed / max(result.total_params, 1)
        writer.writerow(
            [
                m.unit,
                len(unit.groups),
                unit.width,
                m.ratio,
                m.kept,
                m.miou,  # full precision: the numbers of sensitivity.json
                m.drop,
                m.params_removed,
                share,
            ]
        )
    return stream.getvalue()


def plot(result: SensitivityResult, path: str) -> str:
    """mIoU vs kept ratio, one line per unit; a heatmap of the drops when there are many units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [unit.name for unit in result.units]
    title = f"{result.model}: mIoU when one {result.granularity} alone is pruned"
    if len(names) <= MAX_LINE_PLOT_UNITS:
        figure, axes = plt.subplots(figsize=(9, 5))
        xs = [1.0, *(r for r in result.ratios if r != 1.0)]
        for name in names:
            found = result.for_unit(name)
            ys = [found[r].miou if r in found else result.baseline_miou for r in xs]
            axes.plot(xs, [100 * y for y in ys], marker="o", label=name)
        axes.axhline(100 * result.baseline_miou, color="black", linestyle="--", label="unpruned")
        axes.set_xlabel("fraction of filters kept")
        axes.set_ylabel("mIoU (%)")
        axes.invert_xaxis()  # more pruning to the right
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        drops = np.array([[100 * result.for_unit(n)[r].drop for r in result.ratios] for n in names])
        figure, axes = plt.subplots(figsize=(5 + 0.8 * len(result.ratios), 1.5 + 0.2 * len(names)))
        image = axes.imshow(drops, aspect="auto", cmap="Reds", vmin=min(0.0, drops.min()))
        for (row, column), drop in np.ndenumerate(drops):
            colour = "white" if drop > 0.6 * drops.max() > 0 else "black"
            axes.text(column, row, f"{drop:.1f}", ha="center", va="center", fontsize=6, c=colour)
        axes.set_xticks(range(len(result.ratios)), [f"{r:g}" for r in result.ratios])
        # The backbone prefix is the same on every row; the rest tells the groups apart.
        labels = [re.sub(r"^SharedFeatureExtractor/[^/]+/|/bottleneck_v1", "", n) for n in names]
        axes.set_yticks(range(len(names)), labels, fontsize=7)
        title = f"{result.model}: mIoU drop (points) when one {result.granularity} alone is pruned"
        axes.set_xlabel("fraction of filters kept")
        figure.colorbar(image, ax=axes, label="mIoU drop (points)")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    with file_utils.atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, dpi=100)
    plt.close(figure)
    return path


def write_report(result: SensitivityResult, output_dir: str) -> dict[str, str]:
    """Writes ``sensitivity.{json,md,csv,png}`` into ``output_dir``; returns ``{ext: path}``."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {ext: os.path.join(output_dir, f"sensitivity.{ext}") for ext in ("json", "md", "csv")}
    file_utils.atomic_write_text(paths["json"], json.dumps(result.to_dict(), indent=2) + "\n")
    file_utils.atomic_write_text(paths["md"], markdown_table(result))
    file_utils.atomic_write_text(paths["csv"], csv_text(result))
    paths["png"] = plot(result, os.path.join(output_dir, "sensitivity.png"))
    return paths


def run(
    *,
    config_path: str,
    input_checkpoint: str,
    output_dir: str,
    ratios: Sequence[float | str] = DEFAULT_RATIOS,
    granularity: str = "block",
    num_examples: int | None = None,
    skippable_nodes: Sequence[str] = (),
) -> tuple[SensitivityResult, dict[str, str]]:
    """What ``sensitivity.py`` runs: load, restore, :func:`analyze`, :func:`write_report`.

    Raises:
      ConfigError, CheckpointError, ValueError: naming the flag, file or value to fix.
    """
    ratios = parse_ratios(ratios)  # fail before the model is built
    check_granularity(granularity)
    pipeline = config_util.load_pipeline_config(config_path)
    model = model_builder.build(pipeline.model)
    prefix = checkpoint_utils.restore_model(model, input_checkpoint)
    result = analyze(
        model,
        pipeline,
        ratios=ratios,
        granularity=granularity,
        num_examples=num_examples,
        skip_nodes=skippable_nodes,
    )
    result.checkpoint = prefix
    paths = write_report(result, output_dir)
    logging.info("Sensitivity of %d units written to %s", len(result.units), output_dir)
    return result, paths

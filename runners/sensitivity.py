"""What ``sensitivity.py`` runs: load, restore, analyse each unit, write the report.

Config in, files out: reads the pipeline config, restores the checkpoint, resolves the
``--skippable_nodes`` names, builds the eval dataset from ``eval_input_reader`` and hands plain
values to :func:`core.pruning.sensitivity.analyze`; the report goes to ``output_dir``
(:func:`core.pruning.sensitivity_report.write_report`). With ``recalibrate_bn_batches`` N the
baseline and every candidate are scored after recalibrating batch norm over the same N seeded
training batches (``runners.recalibrate.make_recalibrator``). It is off by default: it costs N
training-mode batches per candidate (units x ratios of them), and it answers another question
than the default (how much a unit matters once its statistics are refreshed, instead of how
much pruning it alone costs as it is).
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import logging

from builders import compressor_builder, config_util, dataset_builder
from core.pruning import sensitivity
from core.pruning.sensitivity import SensitivityResult
from runners import recalibrate as recalibration
from runners.common import load_model


def analyze(
    model,
    pipeline,
    *,
    ratios: Sequence[float | str] = sensitivity.DEFAULT_RATIOS,
    granularity: str = "block",
    num_examples: int | None = None,
    skip_nodes: Sequence[str] = (),
    recalibrate_bn_batches: int = 0,
) -> SensitivityResult:
    """:func:`core.pruning.sensitivity.analyze` on the eval data of a pipeline config.

    Args:
      model: a built model holding the trained weights (``runners.common.load_model``).
      pipeline: its ``PipelineConfig``; ``eval_input_reader`` and ``eval_config`` give the data.
      ratios: keep ratios in (0, 1] (fraction of filters kept).
      granularity: ``block`` or ``group``.
      num_examples: images to score; None uses ``eval_config.num_examples`` (0 there: all).
      skip_nodes: conv scopes or original node names never pruned (``--skippable_nodes``).
      recalibrate_bn_batches: recalibrate batch norm over this many seeded training batches
        of the config before each score (the baseline's too); 0: off.

    Raises:
      ConfigError: no ``eval_input_reader``.
      ValueError: bad ratios, granularity, num_examples or skip node; a recalibration count
        without training records; EvaluationError.
    """
    ratios = sensitivity.parse_ratios(ratios)
    if num_examples is not None and num_examples < 1:
        raise ValueError(f"--num_examples must be >= 1 (or unset), got {num_examples}.")
    sensitivity.check_granularity(granularity)
    # Off unless asked for (module docstring); a count needs the config's training records.
    num_batches, _ = recalibration.resolve_num_batches(
        pipeline, recalibrate_bn_batches or 0, "--recalibrate_bn_batches"
    )
    if not pipeline.HasField("eval_input_reader"):
        raise config_util.ConfigError(
            "the config has no eval_input_reader: add eval_input_reader { tf_record_input_reader "
            "{ input_path: '/path/to/val.record' } } to score the pruned models."
        )
    known = set(model.named_layers())
    skip_scopes = [
        compressor_builder.resolve_node(name, "", known, "--skippable_nodes")
        for name in skip_nodes
        if name
    ]
    eval_config = pipeline.eval_config
    dataset = dataset_builder.build_eval_dataset(pipeline.eval_input_reader, eval_config)
    return sensitivity.analyze(
        model,
        dataset,
        ignore_label=eval_config.ignore_label,
        ratios=ratios,
        granularity=granularity,
        num_examples=num_examples or eval_config.num_examples or None,
        skip_scopes=skip_scopes,
        recalibrate=(
            recalibration.make_recalibrator(model, pipeline, num_batches) if num_batches else None
        ),
    )


def run(
    *,
    config_path: str,
    input_checkpoint: str,
    output_dir: str,
    ratios: Sequence[float | str] = sensitivity.DEFAULT_RATIOS,
    granularity: str = "block",
    num_examples: int | None = None,
    skippable_nodes: Sequence[str] = (),
    recalibrate_bn_batches: int = 0,
) -> tuple[SensitivityResult, dict[str, str]]:
    """What ``sensitivity.py`` runs: load, restore, :func:`analyze`, write the report.

    Returns:
      ``(result, {ext: path})`` of ``sensitivity.{json,md,csv,png}``.

    Raises:
      ConfigError, CheckpointError, ValueError: naming the flag, file or value to fix.
    """
    ratios = sensitivity.parse_ratios(ratios)  # fail before the model is built
    sensitivity.check_granularity(granularity)
    pipeline = config_util.load_pipeline_config(config_path)
    model, prefix = load_model(pipeline, input_checkpoint)
    result = analyze(
        model,
        pipeline,
        ratios=ratios,
        granularity=granularity,
        num_examples=num_examples,
        skip_nodes=skippable_nodes,
        recalibrate_bn_batches=recalibrate_bn_batches,
    )
    result.checkpoint = prefix
    paths = sensitivity.write_report(result, output_dir)
    logging.info("Sensitivity of %d units written to %s", len(result.units), output_dir)
    return result, paths

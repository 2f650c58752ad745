"""Sensitivity analysis with batch-norm recalibration (``--recalibrate_bn_batches``).

Oracle: each score equals eval.py's mIoU (``eval_loop.evaluate_checkpoint``) of a checkpoint
built here independently: the block1 groups soft-pruned with numpy (summed filter L1 norms),
then ``recalibrate_batch_norm`` over the same seeded training batch, then written; the baseline
is the unpruned checkpoint recalibrated the same way.
"""

from __future__ import annotations

import numpy as np
import pytest

from builders import config_util, dataset_builder, model_builder
from core.checkpoints import checkpoint_utils
from core.data.standard_fields import InputDataFields
from core.evaluation.evaluator import EvalOptions
from core.pruning import sensitivity
from core.training.recalibration import recalibrate_batch_norm
from runners import eval_loop
from runners import sensitivity as sensitivity_runner
from tests.conftest import TINY_CONFIG
from tests.core.pruning.test_sensitivity import _soft_prune_block1

NUM_EXAMPLES = 1


@pytest.fixture(scope="module")
def analysed(synthetic_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sensitivity_recalibrated")
    config_path = folder / "tiny_icnet.config"
    config_path.write_text(TINY_CONFIG.format(**synthetic_records))
    pipeline = config_util.load_pipeline_config(str(config_path))
    model = model_builder.build(pipeline.model)
    model.build_variables()
    prefix = str(folder / "train" / "model.ckpt-1")
    checkpoint_utils.make_checkpoint(model).write(prefix)
    before = {name: v.numpy() for name, v in model.named_variables().items()}
    result = sensitivity_runner.analyze(
        model,
        pipeline,
        ratios=[0.5],
        num_examples=NUM_EXAMPLES,
        recalibrate_bn_batches=1,
    )
    return model, pipeline, prefix, before, result


def _evaluate(pipeline, tensors, tmp_path, name: str, recalibrate: bool) -> float:
    """eval.py's mIoU of a model holding ``tensors``, recalibrated first if asked."""
    model = model_builder.build(pipeline.model)
    model.build_variables()
    checkpoint_utils.assign_named_tensors(model.named_variables(), tensors, "test tensors")
    if recalibrate:
        dataset = dataset_builder.build_train_dataset(pipeline, 2, 255, 0)
        batch = next(iter(dataset))
        images = recalibrate_batch_norm(
            model, [{InputDataFields.input_image: batch[InputDataFields.input_image]}]
        )
        assert images == 2
    prefix = str(tmp_path / name / "model.ckpt-1")
    checkpoint_utils.make_checkpoint(model).write(prefix)
    options = EvalOptions(num_examples=NUM_EXAMPLES)
    return eval_loop.evaluate_checkpoint(pipeline, prefix, str(tmp_path / f"{name}_eval"), options)[
        "miou"
    ]


def test_each_score_is_the_recalibrated_models_eval(analysed, tmp_path):
    model, pipeline, prefix, before, result = analysed
    tensors = checkpoint_utils.read_named_tensors(prefix)
    pruned = _soft_prune_block1(tensors, 0.5)

    baseline = _evaluate(pipeline, tensors, tmp_path, "baseline", recalibrate=True)
    block1 = _evaluate(pipeline, pruned, tmp_path, "block1", recalibrate=True)
    stale = _evaluate(pipeline, pruned, tmp_path, "stale", recalibrate=False)

    assert result.baseline_miou == baseline
    measured = result.for_unit("block1")[0.5]
    assert measured.miou == block1
    assert measured.drop == pytest.approx(baseline - block1, abs=1e-12)
    # Not vacuous: the same pruned weights score otherwise with their sliced statistics.
    assert block1 != stale
    assert result.recalibration_images == 2
    assert "recalibrated on 2 training images" in sensitivity.markdown_table(result)


def test_every_variable_is_restored(analysed):
    model, _, _, before, _ = analysed
    after = model.named_variables()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name].numpy(), value, err_msg=name)


def test_recalibration_without_training_records_is_an_error(analysed):
    model, pipeline, _, _, _ = analysed
    no_reader = type(pipeline)()
    no_reader.CopyFrom(pipeline)
    no_reader.ClearField("train_input_reader")
    with pytest.raises(ValueError, match="--recalibrate_bn_batches=1 recalibrates"):
        sensitivity_runner.analyze(model, no_reader, ratios=[0.5], recalibrate_bn_batches=1)

"""Sensitivity analysis with batch-norm recalibration (``--recalibrate_bn_batches``).

Oracle: each score equals eval.py's mIoU (``eval_loop.evaluate_checkpoint``) of a checkpoint
built here independently: the block1 groups soft-pruned with numpy (summed filter L1 norms),
then ``recalibrate_batch_norm`` over the same seeded training batch, then written; the baseline
is the unpruned checkpoint recalibrated the same way.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.checkpoints import checkpoint_utils
from core.pruning import sensitivity
from runners import sensitivity as sensitivity_runner
from tests.core.pruning.soft_prune import evaluate_tensors, soft_prune_block1

NUM_EXAMPLES = 1


@pytest.fixture(scope="module")
def analysed(tiny_checkpoint):
    tiny = tiny_checkpoint
    result = sensitivity_runner.analyze(
        tiny.model,
        tiny.pipeline,
        ratios=[0.5],
        num_examples=NUM_EXAMPLES,
        recalibrate_bn_batches=1,
    )
    return tiny.model, tiny.pipeline, tiny.checkpoint, tiny.before, result


def _evaluate(pipeline, tensors, tmp_path, name: str, recalibrate: bool) -> float:
    """eval.py's mIoU of a model holding ``tensors``, recalibrated first if asked."""
    return evaluate_tensors(pipeline, tensors, tmp_path, name, NUM_EXAMPLES, recalibrate)["miou"]


def test_each_score_is_the_recalibrated_models_eval(analysed, tmp_path):
    model, pipeline, prefix, before, result = analysed
    tensors = checkpoint_utils.read_named_tensors(prefix)
    pruned = soft_prune_block1(tensors, 0.5)

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

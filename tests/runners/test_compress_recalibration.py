"""compress.py's batch-norm recalibration: on by default when the config has training records.

Oracles: the rule written out case by case; for the recalibrated checkpoint, a numpy
computation of the full branch's first BN input (a stride-2 'SAME' 3x3 conv of the
mean-subtracted image, the pruned kernel) over the same seeded training batches, and
``recalibrate_batch_norm`` run separately on the pruned weights for every other BN layer (that
recalibration changes nothing but the moving statistics is tested in
tests/core/training/test_recalibration.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from builders import config_util, dataset_builder, model_builder
from core.checkpoints import checkpoint_utils
from core.data.standard_fields import InputDataFields
from core.training.recalibration import recalibrate_batch_norm
from runners import compress as compression
from runners import recalibrate
from runners.common import load_model
from tests.runners.bn_oracle import full_branch_statistics

FLAG = "--recalibrate_bn_batches"
MOVING = ("moving_mean", "moving_variance")


def _without_train_reader(config_path: str, tmp_path) -> str:
    config = config_util.load_pipeline_config(config_path)
    config.ClearField("train_input_reader")
    return config_util.write_pipeline_config(config, str(tmp_path / "no_train_reader"))


def _missing_records(config_path: str):
    config = config_util.load_pipeline_config(config_path)
    paths = config.train_input_reader.tf_record_input_reader.input_path
    del paths[:]
    paths.append("/nonexistent/train-*.record")
    return config


def test_default_rule(tiny_config_path, tmp_path):
    config = config_util.load_pipeline_config(tiny_config_path)
    no_reader = config_util.load_pipeline_config(_without_train_reader(tiny_config_path, tmp_path))
    missing = _missing_records(tiny_config_path)

    # Default (None): on with training records, skipped (with the reason) without them.
    assert recalibrate.resolve_num_batches(config, None, FLAG) == (50, "")
    assert recalibrate.resolve_num_batches(no_reader, None, FLAG) == (
        0,
        "the config has no train_input_reader",
    )
    count, reason = recalibrate.resolve_num_batches(missing, None, FLAG)
    assert count == 0 and "/nonexistent/train-*.record" in reason
    # 0 is off whatever the config; a count is honoured, and needs records.
    assert recalibrate.resolve_num_batches(config, 0, FLAG) == (0, f"{FLAG}=0")
    assert recalibrate.resolve_num_batches(no_reader, 0, FLAG) == (0, f"{FLAG}=0")
    assert recalibrate.resolve_num_batches(config, 3, FLAG) == (3, "")
    with pytest.raises(ValueError, match=rf"{FLAG}=3 .* no train_input_reader.*{FLAG}=0"):
        recalibrate.resolve_num_batches(no_reader, 3, FLAG)
    with pytest.raises(ValueError, match=rf"{FLAG} must be >= 0"):
        recalibrate.resolve_num_batches(config, -1, FLAG)


@pytest.fixture()
def checkpoint(tiny_config_path, tmp_path) -> str:
    model = model_builder.build(config_util.load_pipeline_config(tiny_config_path).model)
    model.build_variables()
    prefix = str(tmp_path / "train" / "model.ckpt-1")
    checkpoint_utils.make_checkpoint(model).write(prefix)
    return prefix


def _compress(config_path: str, checkpoint: str, output_dir, **kwargs):
    return compression.compress(
        config_path=config_path,
        input_checkpoint=checkpoint,
        output_dir=str(output_dir),
        flops_input_size=None,
        **kwargs,
    )


def test_recalibrated_checkpoint_holds_population_statistics(
    tiny_config_path, checkpoint, tmp_path
):
    on = _compress(tiny_config_path, checkpoint, tmp_path / "on", recalibrate_bn_batches=2)

    assert on.summary["bn_recalibration"] == {
        "ran": True,
        "num_batches": 2,
        "num_images": 4,  # 2 batches of train_config.batch_size 2
        "reason": "",
    }
    written = json.loads((tmp_path / "on" / "compression_summary.json").read_text())
    assert written["bn_recalibration"] == on.summary["bn_recalibration"]

    pipeline = config_util.load_pipeline_config(on.pipeline_config)
    pruned, _ = load_model(pipeline, on.checkpoint)
    final = {name: v.numpy() for name, v in pruned.named_variables().items()}
    moving = [name for name in final if name.endswith(MOVING)]
    dataset = dataset_builder.build_train_dataset(pipeline, 2, 255, 0)
    images = [batch[InputDataFields.input_image].numpy() for batch in dataset.take(2)]
    mean, variance = full_branch_statistics(images, final["Conv/weights"])
    np.testing.assert_allclose(final["Conv/BatchNorm/moving_mean"], mean, rtol=1e-4)
    np.testing.assert_allclose(final["Conv/BatchNorm/moving_variance"], variance, rtol=1e-4)
    # Every other BN layer: the same batches run separately over the pruned weights.
    recalibrate_batch_norm(pruned, [{InputDataFields.input_image: b} for b in images])
    for name in moving:
        separately = pruned.named_variables()[name].numpy()
        np.testing.assert_allclose(final[name], separately, rtol=1e-4, atol=1e-6, err_msg=name)


def test_no_train_reader_skips_with_one_log_line(tiny_config_path, checkpoint, tmp_path, caplog):
    config_path = _without_train_reader(tiny_config_path, tmp_path)
    caplog.set_level("INFO", logger="absl")  # absl's own level, whatever earlier tests set

    output = _compress(config_path, checkpoint, tmp_path / "out")

    assert output.summary["bn_recalibration"] == {
        "ran": False,
        "num_batches": 0,
        "num_images": 0,
        "reason": "the config has no train_input_reader",
    }
    lines = [r.getMessage() for r in caplog.records if "recalibrated" in r.getMessage()]
    assert lines == [
        "Batch norm of the pruned model is not recalibrated: the config has no train_input_reader."
    ]
    with pytest.raises(ValueError, match=f"{FLAG}=2 recalibrates"):
        _compress(config_path, checkpoint, tmp_path / "asked", recalibrate_bn_batches=2)

"""The synthetic two-stage recipe: its configs and script fit together.

configs/two_stage_synthetic/ holds stage 0 (PSPNet 0.5) and stage 1 (ICNet 0.5, initialised
from the PSPNet); examples/two_stage_synthetic.sh runs them, compress.py and stage 2. Models are
built from the configs at their smallest input; nothing is trained.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import numpy as np
import pytest

from builders import compressor_builder, config_util, model_builder
from core.checkpoints import checkpoint_init, checkpoint_utils
from runners import compress as compression

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs", "two_stage_synthetic")
STAGE_0 = os.path.join(CONFIG_DIR, "pspnet_0.5_synthetic_stage_0.config")
STAGE_1 = os.path.join(CONFIG_DIR, "icnet_0.5_synthetic_stage_1.config")
SCRIPT = os.path.join(ROOT, "examples", "two_stage_synthetic.sh")
BACKBONE = checkpoint_init.BACKBONE_SCOPE + "/"


def _configs() -> list[str]:
    return sorted(glob.glob(os.path.join(CONFIG_DIR, "*.config")))


def test_the_recipe_has_its_configs():
    assert {os.path.basename(p) for p in _configs()} >= {
        os.path.basename(STAGE_0),
        os.path.basename(STAGE_1),
    }


@pytest.mark.parametrize("path", _configs(), ids=os.path.basename)
def test_config_parses_and_validates(path):
    config = config_util.load_pipeline_config(path)
    assert config.model.WhichOneof("model") in ("icnet", "pspnet")
    assert config.train_config.num_steps > 0


def test_stages_match():
    stage_0 = config_util.load_pipeline_config(STAGE_0)
    stage_1 = config_util.load_pipeline_config(STAGE_1)
    assert stage_0.model.WhichOneof("model") == "pspnet"
    assert stage_1.model.WhichOneof("model") == "icnet"
    # Same backbone widths, or the PSPNet checkpoint could not initialise the ICNet backbone.
    assert stage_0.model.pspnet.filter_scale == stage_1.model.icnet.filter_scale == 0.5
    assert stage_0.model.pspnet.feature_extractor.type == stage_1.model.icnet.feature_extractor.type
    assert stage_1.train_config.fine_tune_checkpoint_type == "segmentation"
    assert not stage_0.train_config.fine_tune_checkpoint  # from scratch


@pytest.fixture(scope="module")
def stage_1_model():
    model = model_builder.build(config_util.load_pipeline_config(STAGE_1).model)
    model.build_variables()
    return model


def test_pspnet_checkpoint_initialises_the_whole_icnet_backbone(tmp_path, stage_1_model):
    pspnet = model_builder.build(config_util.load_pipeline_config(STAGE_0).model)
    pspnet.build_variables()
    prefix = checkpoint_utils.make_checkpoint(pspnet).write(str(tmp_path / "model.ckpt"))
    source = {name: v.numpy() for name, v in pspnet.named_variables().items()}

    report = checkpoint_init.initialize_from_fine_tune_checkpoint(
        stage_1_model, prefix, checkpoint_init.SEGMENTATION
    )

    variables = stage_1_model.named_variables()
    backbone = {name for name in variables if name.startswith(BACKBONE)}
    assert backbone
    assert set(report.restored) == backbone  # the backbone, nothing more and nothing less
    for name in backbone:
        np.testing.assert_array_equal(variables[name].numpy(), source[name])
    # ICNet's heads are new; its classifier shares PSPNet's name but not its input width.
    assert not any(name.startswith(BACKBONE) for name in report.missing)
    assert set(report.skipped_shape_mismatch) == {
        "Predictions/Conv/weights",
        "Predictions/Conv/biases",
    }
    assert not report.excluded
    # What stays behind in the PSPNet checkpoint: its pyramid module and classifiers.
    heads = ("PSPModule/", "AuxPredictions/", "Predictions/")
    assert report.unused
    assert all(name.startswith(heads) for name in report.unused)


def test_pruning_stage_1_by_half_gives_icnet_0_25(stage_1_model):
    """compress.py --compression_factor 0.5 writes a pipeline.config with filter_scale 0.25."""
    pipeline = config_util.load_pipeline_config(STAGE_1)
    pruner = compressor_builder.build(
        None, compression_factor=0.5, known_scopes=set(stage_1_model.named_layers())
    )
    result = pruner.prune(stage_1_model)
    pruned = compression.pruned_model_config(pipeline, result.layer_widths, 0.5)
    assert pruned.model.icnet.filter_scale == 0.25
    assert not pruned.model.icnet.layer_widths


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_is_valid_bash():
    subprocess.run(["bash", "-n", SCRIPT], check=True)
    with open(SCRIPT) as handle:
        text = handle.read()
    assert "set -euo pipefail" in text
    for path in (STAGE_0, STAGE_1):
        assert os.path.relpath(path, ROOT) in text.replace(
            "$CONFIGS", "configs/two_stage_synthetic"
        )

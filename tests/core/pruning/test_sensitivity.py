"""Pruning sensitivity analysis on a tiny ICNet (filter_scale 0.125) and the synthetic records.

Oracles: the variables snapshotted before the analysis; an mIoU from eval.py's own path
(``eval_loop.evaluate_checkpoint``) on a checkpoint soft-pruned here with numpy (summed L1 norms
of the hand-listed ResNet block1 groups, top ``int(n * r)`` kept); widths and parameter counts
worked out from the ResNet-50 layout at filter_scale 0.125.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from core.checkpoints import checkpoint_utils
from core.pruning import sensitivity
from models import ICNet
from runners import sensitivity as sensitivity_runner
from tests.core.pruning.soft_prune import RESNET, evaluate_tensors, soft_prune_block1
from tests.snippets import REPO_ROOT

REPO = REPO_ROOT
ICNET_BLOCKS = [
    "stem",
    "block1",
    "block2",
    "block3",
    "block4",
    "FastPSPModule",
    "full_branch",
    "CascadeFeatureFusion",
    "CascadeFeatureFusion_1",
]
NUM_EXAMPLES = 2
RATIOS = (1.0, 0.5)


@pytest.fixture(scope="module")
def analysed(tiny_checkpoint):
    """A restored tiny ICNet, its config and checkpoint, the variables before, the result."""
    tiny = tiny_checkpoint
    result = sensitivity_runner.analyze(
        tiny.model, tiny.pipeline, ratios=RATIOS, granularity="block", num_examples=NUM_EXAMPLES
    )
    return {
        "model": tiny.model,
        "pipeline": tiny.pipeline,
        "config_path": tiny.config_path,
        "checkpoint": tiny.checkpoint,
        "before": tiny.before,
        "result": result,
        "folder": tiny.folder,
    }


def test_variables_are_restored_exactly(analysed):
    after = analysed["model"].named_variables()
    assert set(after) == set(analysed["before"])
    for name, value in analysed["before"].items():
        np.testing.assert_array_equal(after[name].numpy(), value, err_msg=name)


def test_block_units_and_widths(analysed):
    result = analysed["result"]
    assert [unit.name for unit in result.units] == ICNET_BLOCKS
    units = {unit.name: unit for unit in result.units}
    # block1 at filter_scale 0.125: the 32-channel residual group + 3 units x (conv1, conv2) of 8.
    assert units["block1"].width == 32 + 6 * 8
    assert len(units["block1"].groups) == 7
    assert units["full_branch"].groups == ("Conv", "Conv_1", "Conv_2", "Conv_3")
    assert result.num_images == NUM_EXAMPLES


def test_keep_ratio_one_gives_the_baseline(analysed):
    result = analysed["result"]
    assert result.baseline_miou > 0
    for unit in result.units:
        measured = result.for_unit(unit.name)[1.0]
        assert measured.miou == result.baseline_miou, unit.name
        assert measured.drop == 0.0
        assert measured.kept == unit.width
        assert measured.params_removed == 0


def test_params_removed_by_pruning_the_stem(analysed):
    # conv1 [7, 7, 3, 8] keeps 4 filters; block1/unit_1's shortcut [1, 1, 8, 32] and conv1
    # [1, 1, 8, 8] lose 4 input channels each.
    stem = analysed["result"].for_unit("stem")[0.5]
    assert stem.kept == 4
    assert stem.params_removed == 7 * 7 * 3 * 4 + 4 * 32 + 4 * 8


def test_reported_miou_equals_eval_of_a_soft_pruned_checkpoint(analysed, tmp_path):
    result = analysed["result"]
    tensors = checkpoint_utils.read_named_tensors(analysed["checkpoint"])
    pruned = soft_prune_block1(tensors, 0.5)
    evaluated = evaluate_tensors(analysed["pipeline"], pruned, tmp_path, "pruned", NUM_EXAMPLES)
    measured = result.for_unit("block1")[0.5]
    assert evaluated["num_images"] == NUM_EXAMPLES
    assert measured.miou == evaluated["miou"]
    assert measured.drop == pytest.approx(result.baseline_miou - evaluated["miou"], abs=1e-12)
    # Not vacuous: pruning block1 changes the predictions.
    assert evaluated["miou"] != result.baseline_miou


def test_report_files(analysed):
    result = analysed["result"]
    output_dir = str(analysed["folder"] / "report")
    paths = sensitivity.write_report(result, output_dir)
    assert sorted(os.listdir(output_dir)) == [
        f"sensitivity.{e}" for e in ("csv", "json", "md", "png")
    ]

    rows = [line for line in open(paths["md"]).read().splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| unit | groups | width |")
    assert [row.split(" | ")[0].lstrip("| ") for row in rows[1:]] == ICNET_BLOCKS

    with open(paths["csv"]) as stream:
        table = list(csv.DictReader(stream))
    assert len(table) == len(ICNET_BLOCKS) * len(RATIOS)
    block1 = {float(row["ratio"]): row for row in table if row["unit"] == "block1"}
    assert float(block1[0.5]["miou"]) == result.for_unit("block1")[0.5].miou

    payload = json.loads(open(paths["json"]).read())
    assert payload["baseline_miou"] == result.baseline_miou
    assert [u["name"] for u in payload["units"]] == ICNET_BLOCKS
    assert payload["ratios"] == list(RATIOS)

    with open(paths["png"], "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"


def test_variables_are_restored_when_an_evaluation_raises(analysed, monkeypatch):
    model = analysed["model"]
    before = analysed["before"]
    calls = []

    def failing_score(self):
        calls.append(1)
        if len(calls) == 1:
            return 0.5, 1  # the baseline
        changed = [
            name
            for name, v in model.named_variables().items()
            if not np.array_equal(v.numpy(), before[name])
        ]
        assert changed  # the unit really is pruned while it is scored
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(sensitivity.MiouScorer, "score", failing_score)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        sensitivity_runner.analyze(model, analysed["pipeline"], ratios=[0.5], num_examples=1)
    assert len(calls) == 2
    for name, variable in model.named_variables().items():
        np.testing.assert_array_equal(variable.numpy(), before[name], err_msg=name)


def test_block_units_of_mobilenet_icnet():
    model = ICNet(5, 0.25, backbone="dilated_mobilenet")
    model.build_variables()
    graph = sensitivity.build_channel_graph(model)
    units = sensitivity.make_units(model, graph, "block", [g.name for g in graph.groups])
    # Stages: the inverted-residual units whose outputs are summed into one residual group.
    assert [unit.name for unit in units] == [
        "stem",
        "expanded_conv",
        "expanded_conv_1-2",
        "expanded_conv_3-5",
        "expanded_conv_6-9",
        "expanded_conv_10-12",
        "expanded_conv_13-15",
        "expanded_conv_16",
        *ICNET_BLOCKS[5:],
    ]
    # Every group is in exactly one block.
    grouped = [name for unit in units for name in unit.groups]
    assert sorted(grouped) == sorted(g.name for g in graph.groups)


@pytest.mark.parametrize("ratios", [[0.0], [1.5], ["half"], []])
def test_bad_ratios_are_named(ratios):
    with pytest.raises(ValueError, match="--ratios"):
        sensitivity.parse_ratios(ratios)


def _script(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "sensitivity.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_script_runs_group_granularity_end_to_end(analysed, tmp_path):
    output_dir = tmp_path / "out"
    run = _script(
        f"--config_path={analysed['config_path']}",
        f"--input_checkpoint={analysed['checkpoint']}",
        f"--output_dir={output_dir}",
        "--granularity=group",
        "--ratios=0.5",
        "--num_examples=1",
        # Skipping one conv3 skips the whole block1 residual group it is summed into.
        f"--skippable_nodes=FastPSPModule/Conv,{RESNET}/block1/unit_2/bottleneck_v1/conv3",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    payload = json.loads((output_dir / "sensitivity.json").read_text())
    # Tiny ICNet groups: root 1; blocks of 3/4/6/3 units: 1 residual + 2 per unit each (36);
    # the pyramid conv 1; the full branch 4; the two fusion sums 2: 44, less the 2 skipped.
    assert len(payload["units"]) == 42
    assert payload["skipped_groups"] == [
        f"{RESNET}/block1/unit_1/bottleneck_v1/shortcut",
        "FastPSPModule/Conv",
    ]
    rows = [r for r in (output_dir / "sensitivity.md").read_text().splitlines() if r[:2] == "| "]
    assert len(rows) == 1 + 42
    assert (output_dir / "sensitivity.png").stat().st_size > 0


def test_script_rejects_a_bad_ratio(analysed, tmp_path):
    run = _script(
        f"--config_path={analysed['config_path']}",
        f"--input_checkpoint={analysed['checkpoint']}",
        f"--output_dir={tmp_path / 'out'}",
        "--ratios=0.5,0",
    )
    assert run.returncode != 0
    assert "error: --ratios: keep ratio '0' is not in (0, 1]" in run.stderr
    assert not (tmp_path / "out").exists()

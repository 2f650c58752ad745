"""Recompute plans: measured step costs, sqrt(n) runs, the original's node names."""

from __future__ import annotations

import pytest

from models import ICNet
from models.recompute_plan import StepCost, measured_groups, sqrt_groups

PREFIX = "SharedFeatureExtractor/resnet_v1_50"


def test_sqrt_groups_cut_runs_at_total_over_sqrt_n():
    chains = [("a", "b", "c", "d"), ("e",), ("f", "g", "h", "i")]
    costs = [StepCost(s, 10, 1) for s in "abcdefghi"]
    # 9 steps of 10 bytes: budget 90 / 3 = 30 bytes, so runs of 3 that never cross a chain end.
    assert sqrt_groups(costs, chains) == (("a", "b", "c"), ("d",), ("e",), ("f", "g", "h"), ("i",))
    big = [StepCost("a", 100, 1), *costs[1:]]  # 180 / 3 = 60: "a" alone, b..d fit together
    assert sqrt_groups(big, chains)[:2] == (("a",), ("b", "c", "d"))


def test_measured_groups_take_the_largest_savings_first():
    chains = [("a", "b"), ("c",), ("d",)]
    costs = [
        StepCost("a", 100, 10),
        StepCost("b", 12, 10),
        StepCost("c", 50, 5),
        StepCost("d", 4, 4),
    ]
    # Savings 90, 2, 45, 0: 90% of 137 = 123.3 needs a and c; b is not worth recomputing.
    assert measured_groups(costs, chains) == (("a",), ("c",))
    assert measured_groups(costs, chains, share=1.0) == (("a",), ("b",), ("c",))
    with pytest.raises(ValueError, match="share"):
        measured_groups(costs, chains, share=0)


def test_original_node_names_still_select_whole_blocks():
    model = ICNet(5, 0.125)
    selected = model.set_recompute_scopes(
        [f"{PREFIX}/block1/unit_3/bottleneck_v1/Relu", "CascadeFeatureFusion/Relu", "Conv_1"]
    )
    assert selected == (f"{PREFIX}/block1", "CascadeFeatureFusion", "Conv_1")
    block1 = tuple(f"{PREFIX}/block1/unit_{i}" for i in (1, 2, 3))
    assert model.recompute_groups == {block1, ("CascadeFeatureFusion",), ("Conv_1",)}
    with pytest.raises(ValueError, match="not a run of consecutive steps"):
        model.set_recompute_groups([("Conv", "Conv_2")])

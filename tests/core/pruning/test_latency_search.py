"""The latency search: ties, skips, legal widths, NetAdapt's step rule, unreachable targets.

An additive latency oracle (``fixed + sum(cost[group] * width)``) replaces the measured tables,
so every expected figure is computed by hand from it.
"""

from __future__ import annotations

import pytest

from core.pruning import latency_search, surgery
from core.pruning.sensitivity_units import Unit, make_units
from tests.core.pruning.tied_model import BLOCK1, SKIPPED, tiny_tied_model


class AdditiveLatency:
    def __init__(self, fixed, costs):
        self.fixed, self.costs = fixed, costs

    def predict(self, widths):
        return self.fixed + sum(c * widths[g] for g, c in self.costs.items())

    def delta(self, widths, changed):
        return sum(self.costs[g] * (w - widths[g]) for g, w in changed.items())


def test_allowed_widths_are_the_full_width_then_multiples():
    assert latency_search.allowed_widths(10, 4) == [10, 8, 4]
    assert latency_search.allowed_widths(3, 1) == [3, 2, 1]
    assert latency_search.allowed_widths(3, 8) == [3]
    with pytest.raises(ValueError, match="at least 1"):
        latency_search.allowed_widths(3, 0)


@pytest.fixture(scope="module")
def tied_graph():
    tied = tiny_tied_model()
    graph = tied.graph
    sizes = {g.name: g.size for g in graph.groups if g.name in tied.prunable}
    return tied.model, graph, tied.tensors, sizes


def test_the_search_respects_ties_skips_and_legal_widths(tied_graph):
    model, graph, tensors, sizes = tied_graph
    assert graph.group_of[SKIPPED].name not in sizes
    costs = {g: 0.01 * (i % 5 + 1) for i, g in enumerate(sizes)}
    oracle = AdditiveLatency(3.0, costs)
    start = oracle.predict(sizes)
    target = 3.0 + 0.6 * (start - 3.0)
    # A fake mIoU that prefers keeping channels of the later groups.
    order = {g: i for i, g in enumerate(sizes)}
    scored = []

    def score(widths):
        scored.append(dict(widths))
        return sum(order[g] * widths[g] / sizes[g] for g in sizes) / len(sizes)

    units = make_units(model, graph, "group", list(sizes))
    result = latency_search.search(oracle, units, sizes, target, score, steps=3, width_multiple=2)
    assert result.predicted_ms == pytest.approx(oracle.predict(result.widths))
    assert result.predicted_ms <= target + 1e-9
    assert set(result.widths) == set(sizes)
    for widths in [result.widths, *scored]:
        for group, kept in widths.items():
            assert 1 <= kept <= sizes[group]
            assert kept == sizes[group] or kept % 2 == 0
    masks = latency_search.keep_masks(graph, result.widths, tensors)
    layer_widths = surgery.pruned_widths(graph, masks)
    assert layer_widths[f"{BLOCK1}/conv1"] == layer_widths[f"{BLOCK1}/conv2"]
    assert layer_widths[SKIPPED] == graph.group_of[SKIPPED].size
    for candidate in result.candidates:
        assert len(candidate.widths) == 1  # one unit (channel group) changes per candidate


def test_each_candidate_is_the_largest_width_making_the_steps_cut():
    sizes = {"a": 10, "b": 8}
    oracle = AdditiveLatency(1.0, {"a": 1.0, "b": 0.5})  # start: 1 + 10 + 4 = 15 ms
    units = [Unit("a", ("a",), 10), Unit("b", ("b",), 8)]
    result = latency_search.search(
        oracle, units, sizes, 12.0, lambda w: w["b"] / 8.0 + w["a"] / 100.0, steps=1
    )
    # The cut is 3 ms: a needs 3 filters fewer (7), b needs 6 fewer (2); b's score prefers a.
    step1 = {c.unit: c for c in result.candidates if c.step == 1}
    assert step1["a"].widths == {"a": 7} and step1["a"].predicted_ms == pytest.approx(12.0)
    assert step1["b"].widths == {"b": 2} and step1["b"].predicted_ms == pytest.approx(12.0)
    assert result.widths == {"a": 7, "b": 8} and result.steps == 1


def test_an_unreachable_target_names_the_closest_reachable_latency():
    sizes = {"a": 10, "b": 8}
    oracle = AdditiveLatency(1.0, {"a": 1.0, "b": 0.5})
    units = [Unit("a", ("a",), 10), Unit("b", ("b",), 8)]
    # Smallest widths with a multiple of 4: a -> 4 (not 10), b -> 4: 1 + 4 + 2 = 7 ms.
    with pytest.raises(ValueError, match=r"closest reachable latency is 7\.00 ms"):
        latency_search.search(oracle, units, sizes, 6.5, lambda w: 0.0, width_multiple=4)
    with pytest.raises(ValueError, match="not below the unpruned model's 15.00 ms"):
        latency_search.search(oracle, units, sizes, 20.0, lambda w: 0.0)


def test_with_measurements_the_search_goes_on_until_the_measured_latency_meets_the_target():
    sizes = {"a": 10, "b": 8}
    oracle = AdditiveLatency(1.0, {"a": 1.0, "b": 0.5})  # predicts 15 ms unpruned
    units = [Unit("a", ("a",), 10), Unit("b", ("b",), 8)]
    measured_calls = []

    def measure(widths):
        # The real model saves only half of what the latency model predicts.
        measured_calls.append(dict(widths))
        return 15.0 - 0.5 * (15.0 - oracle.predict(widths))

    result = latency_search.search(
        oracle, units, sizes, 12.0, lambda w: w["b"] / 8.0 + w["a"] / 100.0, steps=1,
        measure=measure,
    )  # fmt: skip
    # Step 1 is the predictions-only search's (a -> 7, predicted 12, measured 13.5); step 2
    # needs another 1.5 ms: a -> 5.5 is not a width, so a -> 5 (predicted 10, measured 12.5);
    # step 3: 0.5 ms more, a -> 4 (predicted 9, measured 12.0).
    chosen = [c for c in result.candidates if c.chosen]
    assert [c.widths for c in chosen] == [{"a": 7}, {"a": 5}, {"a": 4}]
    assert [c.measured_ms for c in chosen] == pytest.approx([13.5, 12.5, 12.0])
    assert all(c.measured_ms is None for c in result.candidates if not c.chosen)
    assert measured_calls == [{"a": 7, "b": 8}, {"a": 5, "b": 8}, {"a": 4, "b": 8}]
    assert result.widths == {"a": 4, "b": 8} and result.measured_ms == pytest.approx(12.0)
    assert result.predicted_ms == pytest.approx(9.0)
    # A model that never gets faster ends in a clear error, not an endless search.
    with pytest.raises(ValueError, match="cannot be reached|was not reached"):
        latency_search.search(
            oracle, units, sizes, 12.0, lambda w: 0.0, steps=1, measure=lambda w: 15.0
        )

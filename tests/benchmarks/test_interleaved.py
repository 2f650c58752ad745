"""Round-robin timing (benchmarks.interleaved) and the side-by-side runtimes table."""

from __future__ import annotations

import pytest

from benchmarks import interleaved
from benchmarks.inference_tables import runtimes_table


def test_each_round_rotates_the_order():
    assert interleaved.round_robin_order(["a", "b", "c"], 4) == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert interleaved.round_robin_order([], 3) == []


def test_time_interleaved_charges_each_call_to_its_runtime():
    # A fake clock that advances only inside the calls: runtime "a" takes 2 s, "b" 5 s.
    now = [0.0]
    calls = []

    def runtime(name, cost):
        def call():
            calls.append(name)
            now[0] += cost

        return call

    seconds = interleaved.time_interleaved(
        {"a": runtime("a", 2.0), "b": runtime("b", 5.0)}, warmup=1, runs=3, clock=lambda: now[0]
    )
    assert seconds == {"a": [2.0, 2.0, 2.0], "b": [5.0, 5.0, 5.0]}
    # One warm-up round, then rounds a-b, b-a, a-b.
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    with pytest.raises(ValueError, match="runs >= 1"):
        interleaved.time_interleaved({"a": runtime("a", 1.0)}, warmup=0, runs=0)


def test_ratios_divide_by_the_fastest_median():
    ratios = interleaved.ratios_to_fastest({"tf": 30.0, "ort": 12.0, "ov": 15.0})
    assert ratios == pytest.approx({"tf": 2.5, "ort": 1.0, "ov": 1.25})
    assert interleaved.ratios_to_fastest({}) == {}


def _row(median, ratio, precision="float32"):
    return {
        "median_ms": median,
        "p25_ms": median - 1,
        "p75_ms": median + 1,
        "ratio_to_fastest": ratio,
        "precision": precision,
    }


def test_runtimes_table_lists_rows_fastest_first_with_the_vector_extensions():
    document = {
        "machine": {
            "cpu_model": "Test CPU",
            "tf_threads": 2,
            "vector_extensions": ["AVX2", "AVX-512F"],
            "load_average_start": [3.5, 2.0, 1.0],
        },
        "cells": {
            "runtimes/icnet_1.0/65x129": {
                "status": "ok",
                "rows": {
                    "checkpoint": _row(30.0, 2.5),
                    "onnxruntime": _row(12.0, 1.0),
                    "openvino": _row(15.0, 1.25),
                },
                "fastest": "onnxruntime",
                "not_timed": ["tflite_int8"],
            },
            "latency/icnet_1.0/tflite_int8/65x129": {"status": "failed", "reason": "no kernel"},
        },
    }
    lines = runtimes_table(document)
    text = "\n".join(lines)
    assert "AVX2, AVX-512F" in text and "load average at the start 3.5" in text
    rows = [line for line in lines if line.startswith("| icnet_1.0")]
    assert [row.split("|")[3].strip() for row in rows] == [
        "ONNX Runtime (.onnx)",
        "OpenVINO (.onnx), f32",
        "checkpoint model",
        "TFLite int8",
    ]
    assert "| **1.00** |" in rows[0] and "| 1.25 |" in rows[1] and "| 2.50 |" in rows[2]
    assert "12.0 (11.0–13.0)" in rows[0]
    assert "failed: no kernel" in rows[3]
    assert runtimes_table({"machine": {}, "cells": {}}) == []

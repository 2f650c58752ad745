"""Roofline arithmetic against hand-computed values; CPU flags parsed from fixture texts."""

from __future__ import annotations

import pytest

from benchmarks import inference_bench as ib
from benchmarks import report, roofline
from benchmarks.plan import Results

# Abridged /proc/cpuinfo of an AVX-512 EPYC (two processors, the same flags) and of an ARM board.
EPYC_CPUINFO = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 ssse3 fma sse4_1 avx avx2 avx512f avx512dq avx512bw avx512_bf16 \
avx512_vnni avx512vl sha_ni
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse2 ssse3 fma sse4_1 avx avx2 avx512f avx512dq avx512bw avx512_bf16 \
avx512_vnni avx512vl sha_ni
"""
SAPPHIRE_RAPIDS_FLAGS = "flags : avx2 fma avx_vnni avx512f avx512_fp16 amx_bf16 amx_tile amx_int8"
ARM_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve\nCPU implementer\t: 0x41\n"


def test_cpu_flags_come_from_the_first_flags_line():
    flags = roofline.cpu_flags(EPYC_CPUINFO)
    assert "avx512_vnni" in flags and "sha_ni" in flags and "fpu" in flags
    assert "sysret_ss_attrs" not in flags  # the bugs line is not a flags line
    assert roofline.cpu_flags("processor : 0\nmodel name : x\n") == frozenset()


def test_vector_extensions_are_named_in_table_order():
    epyc = roofline.vector_extensions(roofline.cpu_flags(EPYC_CPUINFO))
    assert epyc == ["AVX2", "FMA", "AVX-512F", "AVX-512BW", "AVX-512 VNNI", "AVX-512 BF16"]
    spr = roofline.vector_extensions(roofline.cpu_flags(SAPPHIRE_RAPIDS_FLAGS))
    assert spr == ["AVX2", "FMA", "AVX-VNNI", "AVX-512F", "AVX-512 FP16", "AMX", "AMX-BF16",
                   "AMX-INT8"]  # fmt: skip
    assert roofline.vector_extensions(roofline.cpu_flags(ARM_CPUINFO)) == ["NEON", "SVE"]


def test_read_vector_extensions_from_a_file(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(EPYC_CPUINFO)
    assert roofline.read_vector_extensions(str(path))[:3] == ["AVX2", "FMA", "AVX-512F"]
    assert roofline.read_vector_extensions(str(tmp_path / "missing")) is None


def test_rate_arithmetic_against_hand_computed_values():
    # 2048^3 multiply-adds = 17,179,869,184 FLOPs; in 100 ms that is 171.8 GFLOP/s.
    assert roofline.matmul_flops(2048) == 17_179_869_184
    assert roofline.gflops_per_s(17_179_869_184, 100.0) == pytest.approx(171.79869184)
    assert roofline.gflops_per_s(213.67e9, 1670.0) == pytest.approx(127.94610778)
    assert roofline.percent_of(96.0, 160.0) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="positive"):
        roofline.gflops_per_s(1e9, 0.0)


def _results_with(formats: dict[str, float]) -> Results:
    results = Results()
    results.set(
        ib.MATMUL_KEY, n=2048, gflops_per_s=100.0, peak_gflops_per_s=200.0, runs=5, min_ms=86.0,
        median_ms=172.0, by_size={"2048": 100.0}, threads=2,
    )  # fmt: skip
    results.set(ib.params_key("m"), flops={"64x128": 60e9})
    for fmt, ms in formats.items():
        results.set(ib.latency_key("m", fmt, (64, 128)), median_ms=ms)
    return results


def test_derive_roofline_rates_every_timed_format():
    results = _results_with({"checkpoint": 500.0, "frozen_graph": 400.0, "tflite_int8": 200.0})
    roofline.derive_roofline(results, ["m"], [(64, 128)])
    cell = results.get(ib.roofline_key("m", (64, 128)))
    # 60 GFLOPs in 0.5 s = 120 GFLOP/s: 120% of the median matmul rate, 60% of its peak.
    assert cell["gflops_per_s"] == pytest.approx(120.0)
    assert cell["percent_of_matmul"] == pytest.approx(120.0)
    assert cell["percent_of_peak"] == pytest.approx(60.0)
    assert list(cell["by_format"]) == ["checkpoint", "frozen_graph", "tflite_int8"]
    assert cell["by_format"]["frozen_graph"]["gflops_per_s"] == pytest.approx(150.0)
    assert cell["by_format"]["frozen_graph"]["percent_of_peak"] == pytest.approx(75.0)
    assert cell["by_format"]["tflite_int8"]["percent_of_peak"] == pytest.approx(150.0)


def test_derive_roofline_skips_a_model_without_latency():
    results = _results_with({"frozen_graph": 400.0})  # no checkpoint latency
    roofline.derive_roofline(results, ["m"], [(64, 128)])
    cell = results.cells[ib.roofline_key("m", (64, 128))]
    assert cell["status"] == "skipped" and "latency" in cell["reason"]


def test_report_shows_the_peak_the_formats_and_the_vector_extensions():
    results = _results_with({"checkpoint": 500.0, "saved_model": 600.0})
    roofline.derive_roofline(results, ["m"], [(64, 128)])
    document = {
        "machine": {
            "cpu_model": "AMD EPYC", "usable_cores": 2, "cpu_count": 2, "tf_threads": 2,
            "vector_extensions": ["AVX2", "AVX-512F"], "tensorflow": "2.21.0", "python": "3.11",
            "platform": "Linux", "git_commit": "abc", "date_utc": "today",
        },
        "settings": {"command": "python -m benchmarks.run", "total_time": "1 min", "quick": False,
                     "sizes": ["64x128"]},
        "cells": results.cells,
    }  # fmt: skip
    # The machine table and the roofline section, as render_markdown joins them.
    markdown = "\n".join(report._machine(document) + roofline.roofline_table(document))
    assert "| Vector extensions | AVX2, AVX-512F |" in markdown
    assert "float32 matmul peak: **200.0 GFLOP/s**" in markdown
    assert "| m | checkpoint | 64x128 | 60.00 | 500.0 | 120.0 | 60% |" in markdown
    assert "| m | saved_model | 64x128 | 60.00 | 600.0 | 100.0 | 50% |" in markdown

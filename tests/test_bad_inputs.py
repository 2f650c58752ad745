"""Fuzz table of user mistakes: every entry script must end each with exactly one clear line.

Each case of ``tests/bad_inputs_table.py`` (its docstring lists them) runs a real script at the
root or in ``dataset_tools/`` in a subprocess. For each the test asserts: a non-zero exit status,
exactly one stderr line containing ``error:``, that line naming the problem (a substring per
case), no ``Traceback``, and nothing left in the case's output directory.

The cases run once for the module, two at a time: on 2 idle cores the table took 118 s one at a
time and 58 s two at a time (most cases fail before TensorFlow is imported, in ~0.3 s; the ones
marked ``imports_tf`` take 6-10 s each).
The inputs are made once: a valid tiny config, record files (truncated, not a record, labels
outside the classes), image folders with odd images and fake model files.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from tests.bad_inputs_table import CASES, Case
from tests.conftest import TINY_CONFIG

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 2


def _write_records(path: str, label_value: int) -> None:
    from dataset_tools import tfrecord_utils

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    label = np.zeros((96, 128), np.uint8)
    label[10:20, 10:20] = label_value
    examples = [
        tfrecord_utils.make_example_from_arrays(image, label, f"scene_{i}.png") for i in range(2)
    ]
    tfrecord_utils.write_sharded((e for e in examples), path, 1)


def _inputs(root, synthetic_records) -> dict[str, str]:
    """Every file a case refers to, as ``{placeholder: path}``."""
    paths = {"root": str(root), **{k: str(v) for k, v in synthetic_records.items()}}
    config = root / "tiny.config"
    config.write_text(TINY_CONFIG.format(**synthetic_records))
    paths["config"] = str(config)
    train = open(synthetic_records["train"], "rb").read()
    (root / "truncated.record").write_bytes(train[: len(train) // 2 + 7])
    (root / "text.record").write_bytes(b"this is not a TFRecord file, just text\n" * 4)
    _write_records(str(root / "bad_labels.record"), label_value=40)
    for name, record in (
        ("truncated", "truncated.record"),
        ("notrecord", "text.record"),
        ("badlabels", "bad_labels.record"),
    ):
        text = TINY_CONFIG.format(train=root / record, val=root / record)
        (root / f"{name}.config").write_text(text)
        paths[f"{name}_config"] = str(root / f"{name}.config")
    (root / "garbage.config").write_bytes(bytes(range(256)) * 4)
    paths["garbage_config"] = str(root / "garbage.config")
    placeholder = TINY_CONFIG.format(train="PATH/MODIFY_THIS_FIELD", val=synthetic_records["val"])
    (root / "placeholder.config").write_text(
        placeholder.replace('"PATH/MODIFY_THIS_FIELD"', '"MODIFY_THIS_FIELD"')
    )
    paths["placeholder_config"] = str(root / "placeholder.config")
    (root / "empty_dir").mkdir()
    paths["empty_dir"] = str(root / "empty_dir")
    export = root / "export"
    export.mkdir()
    (export / "pipeline.config").write_text(TINY_CONFIG.format(**synthetic_records))
    paths["export_dir"] = str(export)
    (root / "model.pb").write_bytes(b"\x00not a graph" * 10)
    (root / "model.tflite").write_bytes(b"TFL3 not a flatbuffer" * 10)
    (root / "model.onnx").write_bytes(b"onnx")
    (root / "notes.txt").write_text("not an image")
    for name in ("model_pb", "model_tflite", "model_onnx", "notes_txt"):
        paths[name] = str(root / name.replace("_", "."))
    rgb = np.zeros((8, 8, 3), np.uint8)
    for kind in ("nonimage", "zerosize", "rgblabel", "bigvalue"):
        images, labels = root / kind / "images", root / kind / "labels"
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        Image.fromarray(rgb).save(images / "b.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(labels / "b.png")
        label = np.zeros((8, 8), np.uint8)
        if kind == "nonimage":
            (images / "a.png").write_bytes(b"definitely not a PNG")
        elif kind == "zerosize":
            (images / "a.png").write_bytes(b"")
        else:
            Image.fromarray(rgb).save(images / "a.png")
        if kind == "rgblabel":
            Image.fromarray(rgb).save(labels / "a.png")
        else:
            label[0, 0] = 9 if kind == "bigvalue" else 0
            Image.fromarray(label).save(labels / "a.png")
        paths[f"{kind}_images"], paths[f"{kind}_labels"] = str(images), str(labels)
    return paths


# Runs a script as ``python script args`` would, then writes into $TF_IMPORT_MARKER whether
# TensorFlow was imported (atexit runs after the script's SystemExit too). Not a timing: a busy
# machine cannot make it flaky.
_WRAPPER = """
import atexit, os, runpy, sys
marker = os.environ["TF_IMPORT_MARKER"]
atexit.register(lambda: open(marker, "w").write(str("tensorflow" in sys.modules)))
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(case: Case, paths: dict[str, str], root) -> dict:
    out = root / "outputs" / case.id
    out.parent.mkdir(exist_ok=True)
    (root / "markers").mkdir(exist_ok=True)
    marker = root / "markers" / case.id
    args = [arg.format(out=out, **paths) for arg in case.args]
    env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", TF_IMPORT_MARKER=str(marker)
    )
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-c", _WRAPPER, os.path.join(REPO, case.script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    leftovers = sorted(
        os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs
    )
    return {
        "process": process,
        "leftovers": leftovers,
        "seconds": time.perf_counter() - started,
        "imported_tf": marker.read_text() if marker.exists() else "no marker",
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory, synthetic_records) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("bad_inputs")
    paths = _inputs(root, synthetic_records)
    # The slow (TensorFlow-importing) cases first, so that the pool ends evenly.
    ordered = sorted(CASES, key=lambda case: not case.imports_tf)
    with ThreadPoolExecutor(WORKERS) as pool:
        runs = pool.map(lambda case: _run(case, paths, root), ordered)
        return {case.id: run for case, run in zip(ordered, runs, strict=True)}


def test_table_is_big_and_ids_unique():
    assert len(CASES) >= 50
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_one_clear_line(case: Case, results):
    result = results[case.id]
    process = result["process"]
    output = process.stdout + process.stderr
    assert process.returncode != 0, output
    assert "Traceback" not in output, output
    error_lines = [line for line in process.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, output
    assert case.expect in error_lines[0], output
    assert not result["leftovers"], result["leftovers"]
    if not case.imports_tf:  # a flag, config or record mistake is found before the import
        assert result["imported_tf"] == "False", (result["imported_tf"], output)


def test_verbose_adds_the_traceback(tmp_path):
    process = subprocess.run(
        [
            sys.executable,
            "eval.py",
            f"--config_path={tmp_path}/no.config",
            "--train_dir=t",
            f"--eval_dir={tmp_path}/e",
            "--verbose",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 1
    assert "Traceback" in process.stderr and "ConfigError" in process.stderr
    assert process.stderr.strip().splitlines()[-1].startswith("eval.py: error: config file not")


def _literal(script: str, name: str):
    """The literal a script assigns to ``name`` (importing it would define its flags here)."""
    tree = ast.parse(open(os.path.join(REPO, script), encoding="utf-8").read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{script} assigns no {name}")


def test_scripts_flag_choices_match_the_library():
    from core.deploy import exporter, inference_runner
    from core.pruning import sensitivity_units

    assert _literal("export.py", "FORMATS") == exporter.FORMATS
    assert _literal("inference.py", "OVERLAYS") == inference_runner.OVERLAYS
    assert _literal("sensitivity.py", "GRANULARITIES") == sensitivity_units.GRANULARITIES

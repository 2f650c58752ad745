"""A custom dataset from a label map: its class names and colours reach every output.

Folders of images and raw-valued labels -> create_tfrecord_from_folders (the label map remaps
raw 10/20/30/40 to classes 0..3) -> train.py (2 steps) -> eval.py (per-class table and metrics
JSON name the custom classes) -> inference.py (overlays drawn in the custom colours, label-id
PNGs in the raw values), each script run as a user runs it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dataset_tools.create_tfrecord_from_folders import convert_folders
from tests.conftest import TINY_CONFIG
from tests.snippets import REPO_ROOT

pytestmark = pytest.mark.slow  # runs the scripts end to end

NAMES = ("grass", "sand", "deep water", "rock")
COLOURS = ((0, 200, 0), (230, 200, 60), (20, 60, 220), (120, 120, 120))
RAW = (10, 20, 30, 40)


def _run(script, *flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.run(
        [sys.executable, script, *flags],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process


def _write_folders(root):
    """4 scenes 96x128: four horizontal bands of the four classes, in a rotating order."""
    images, labels = root / "images", root / "labels"
    images.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        raw = np.zeros((96, 128), np.uint8)
        image = np.zeros((96, 128, 3), np.uint8)
        for band in range(4):
            cls = (band + index) % 4
            raw[band * 24 : (band + 1) * 24] = RAW[cls]
            image[band * 24 : (band + 1) * 24] = COLOURS[cls]
        noisy = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(images / f"scene_{index}.png")
        Image.fromarray(raw).save(labels / f"scene_{index}.png")
    return str(images), str(labels)


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom_dataset")
    label_map = root / "terrain.txt"
    label_map.write_text(
        "# raw class name colour\n"
        + "".join(
            f"{raw} {cls} {name} {','.join(map(str, colour))}\n"
            for cls, (raw, name, colour) in enumerate(zip(RAW, NAMES, COLOURS, strict=True))
        )
    )
    images, labels = _write_folders(root)
    record = str(root / "terrain.record")
    convert_folders(images, labels, record, label_map_path=str(label_map), num_classes=4)
    config = (
        TINY_CONFIG.format(train=record, val=record)
        .replace("num_classes: 19", "num_classes: 4")
        .replace("num_steps: 4", "num_steps: 2")
    )
    config_path = root / "terrain.config"
    config_path.write_text(config + f'dataset {{ label_map_path: "{label_map}" }}\n')
    logdir = root / "train"
    _run("train.py", f"--config_path={config_path}", f"--logdir={logdir}")
    return root, str(config_path), str(logdir), images


def test_eval_table_and_metrics_json_use_the_custom_names(custom):
    root, config_path, logdir, _ = custom
    eval_dir = root / "eval"
    process = _run(
        "eval.py",
        f"--config_path={config_path}",
        f"--train_dir={logdir}",
        f"--eval_dir={eval_dir}",
        "--evaluate_all_from_checkpoint=model.ckpt-2",
    )
    saved = json.loads((eval_dir / "metrics_2.json").read_text())
    assert saved["class_names"] == list(NAMES)
    assert sorted(saved["classes"]) == sorted(NAMES)
    assert saved["dataset"] == "terrain" and saved["num_images"] == 3
    table = process.stderr[process.stderr.index("Results of") :].splitlines()
    rows = {line.split("  ")[0].strip() for line in table}  # first column of the table
    assert set(NAMES) <= rows


def test_inference_overlays_use_the_custom_colours(custom):
    root, config_path, logdir, images = custom
    common = [
        f"--input_path={os.path.join(images, 'scene_1.png')}",
        f"--config_path={config_path}",
        f"--trained_checkpoint={logdir}",
        "--input_shape=96,128,3",
        "--pad_to_shape=97,129",
        "--warmup=0",
    ]
    _run("inference.py", *common, f"--output_dir={root / 'overlay'}")
    _run("inference.py", *common, f"--output_dir={root / 'ids'}", "--label_ids")
    ids = np.array(Image.open(root / "ids" / "scene_1.png"))
    overlay = np.array(Image.open(root / "overlay" / "scene_1.png"))
    assert ids.shape == (96, 128) and set(np.unique(ids)) <= set(RAW)  # the raw label ids
    # Oracle: label id -> class (the label map) -> colour (the label map), pixel by pixel.
    expected = np.zeros((96, 128, 3), np.uint8)
    for raw, colour in zip(RAW, COLOURS, strict=True):
        expected[ids == raw] = colour
    assert overlay.shape == (96, 128 + 4 + 128, 3)  # image | gap | colours
    np.testing.assert_array_equal(overlay[:, 132:], expected)

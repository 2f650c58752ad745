"""export.py and inference.py end to end, and the inference runner on every model format.

The scripts run in subprocesses (their absl flags are process-global); the runner tests call
the library the scripts call, in process, on the export shared with tests/runners/export_fixtures.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.deploy import inference_runner
from core.deploy.deploy_graph import ExportError
from core.deploy.inference_runner import InferenceError
from runners.inference import load_segmenter
from tests.runners.export_fixtures import HEIGHT, WIDTH, reference_ids
from tests.snippets import read_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FILES = {
    "frozen_graph": "frozen_inference_graph.pb",
    "saved_model": "saved_model",
    "tflite_float32": "model_float32.tflite",
    "tflite_int8": "model_int8.tflite",
}


@pytest.fixture()
def image_folder(exported, tmp_path):
    """Two eval scenes as PNGs at the network size, and a smaller JPEG in a subfolder."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(exported.images[0]).save(folder / "a.png")
    Image.fromarray(exported.images[1]).save(folder / "b.PNG")
    Image.fromarray(exported.images[2][:60, :80]).save(folder / "sub" / "c.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, name), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --------------------------------------------------------------------------- scripts


def test_export_script(exported, tmp_path):
    output = tmp_path / "out"
    done = _script(
        "export.py",
        f"--config_path={exported.config_path}",
        f"--trained_checkpoint={exported.checkpoint}",
        f"--output_dir={output}",
        "--input_shape=96,128,3",
        "--pad_to_shape=97,129",
        "--formats=frozen_graph",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Exported to" in done.stdout
    assert sorted(os.listdir(output)) == [
        "export_summary.json",
        "frozen_inference_graph.pb",
        "labels.txt",
        "metadata.json",
        "model.ckpt.data-00000-of-00001",
        "model.ckpt.index",
        "pipeline.config",
    ]
    segmenter = load_segmenter(model_path=str(output / "frozen_inference_graph.pb"))
    image = exported.images[0]
    np.testing.assert_array_equal(segmenter(image), reference_ids(exported.model, image))

    failed = _script(
        "export.py",
        f"--config_path={exported.config_path}",
        f"--trained_checkpoint={tmp_path / 'missing.ckpt'}",
        f"--output_dir={tmp_path / 'failed'}",
        "--input_shape=96,128,3",
    )
    assert failed.returncode != 0
    assert "missing.ckpt' not found" in failed.stderr and "Traceback" not in failed.stderr
    assert not os.path.exists(tmp_path / "failed")


def test_inference_script_from_a_checkpoint_on_a_folder(exported, image_folder, tmp_path):
    output = tmp_path / "out"
    done = _script(
        "inference.py",
        f"--input_path={image_folder}",
        f"--config_path={exported.config_path}",
        f"--trained_checkpoint={exported.checkpoint}",
        "--input_shape=96,128,3",
        "--pad_to_shape=97,129",
        f"--output_dir={output}",
        "--warmup=1",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 image(s), 0 frame(s); latency per image: median" in done.stdout
    assert "p90" in done.stdout
    # Side by side: image | 4-pixel gap | colours, at each image's own size.
    assert Image.open(output / "a.png").size == (2 * WIDTH + 4, HEIGHT)
    assert Image.open(output / "b.png").size == (2 * WIDTH + 4, HEIGHT)
    assert Image.open(output / "sub" / "c.png").size == (2 * 80 + 4, 60)
    assert sorted(os.listdir(output)) == ["a.png", "b.png", "sub"]


def test_inference_script_on_a_video_with_tflite(exported, tmp_path):
    import cv2

    video = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (WIDTH, HEIGHT))
    for frame in exported.images[:3]:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    output = tmp_path / "out"
    done = _script(
        "inference.py",
        f"--input_path={video}",
        f"--model_path={os.path.join(exported.output_dir, 'model_float32.tflite')}",
        f"--output_dir={output}",
        "--overlay=blend",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 image(s), 3 frame(s)" in done.stdout
    frames, _ = read_video(str(output / "clip.mp4"))
    assert len(frames) == 3 and frames[0].shape == (HEIGHT, WIDTH, 3)  # blended: image size
    assert os.listdir(output) == ["clip.mp4"]  # no temporary file left

    # Video frames as label-id PNGs, in process.
    segmenter = load_segmenter(
        model_path=os.path.join(exported.output_dir, "frozen_inference_graph.pb")
    )
    report = inference_runner.run_inference(segmenter, video, str(tmp_path / "ids"), label_ids=True)
    assert report.frames == 3 and len(report.latencies_ms) == 3
    assert sorted(os.listdir(tmp_path / "ids" / "clip")) == [
        "000000.png",
        "000001.png",
        "000002.png",
    ]


# --------------------------------------------------------------------------- runner


def test_label_id_table_maps_train_ids_to_cityscapes_ids():
    table = inference_runner.label_id_table(19)
    assert table[0] == 7 and table[13] == 26 and table[18] == 33  # road, car, bicycle
    assert table[255] == 255
    assert inference_runner.label_id_table(3) is None
    assert inference_runner.label_id_table(None) is None


@pytest.mark.parametrize("source", ["checkpoint", *MODEL_FILES])
def test_label_ids_from_every_model_format(exported, image_folder, tmp_path, source):
    if source == "checkpoint":
        segmenter = load_segmenter(
            config_path=exported.config_path,
            trained_checkpoint=exported.checkpoint,
            input_shape="96,128,3",
            pad_to_shape="97,129",
        )
    else:
        path = os.path.join(exported.output_dir, MODEL_FILES[source])
        segmenter = load_segmenter(model_path=path)
    assert segmenter.num_classes == 19  # from pipeline.config next to an exported model
    report = inference_runner.run_inference(
        segmenter, str(image_folder), str(tmp_path), label_ids=True, warmup=1
    )
    assert report.images == 3 and len(report.latencies_ms) == 3 and report.p90_ms > 0
    table = inference_runner.label_id_table(19)
    written = np.asarray(Image.open(tmp_path / "a.png"))
    assert written.ndim == 2 and written.dtype == np.uint8  # one-channel label ids
    assert set(np.unique(written)) <= set(table[:19].tolist())
    expected = table[reference_ids(exported.model, exported.images[0])]
    agreement = float((written == expected).mean())
    print(f"{source}: label-id agreement with the checkpoint {agreement:.5f}")
    assert agreement >= (0.8 if source == "tflite_int8" else 0.999)
    assert np.asarray(Image.open(tmp_path / "sub" / "c.png")).shape == (60, 80)


def test_images_are_resized_to_the_network_and_back(exported):
    segmenter = load_segmenter(
        model_path=os.path.join(exported.output_dir, "frozen_inference_graph.pb")
    )
    image = exported.images[1]
    large = np.asarray(Image.fromarray(image).resize((2 * WIDTH, 2 * HEIGHT), Image.NEAREST))
    ids = segmenter(large)
    assert ids.shape == (2 * HEIGHT, 2 * WIDTH) and ids.dtype == np.int32
    # The documented contract: bilinear resize to the network input, nearest resize back.
    network_input = np.asarray(Image.fromarray(large).resize((WIDTH, HEIGHT), Image.BILINEAR))
    small = segmenter.run(network_input[np.newaxis])
    np.testing.assert_array_equal(ids[::2, ::2], small)
    np.testing.assert_array_equal(ids[1::2, 1::2], small)


def test_blend_overlay(exported, tmp_path):
    segmenter = load_segmenter(model_path=os.path.join(exported.output_dir, "saved_model"))
    path = tmp_path / "one.png"
    Image.fromarray(exported.images[0]).save(path)
    inference_runner.run_inference(segmenter, str(path), str(tmp_path / "out"), overlay="blend")
    blended = np.asarray(Image.open(tmp_path / "out" / "one.png"))
    colours = inference_runner.render(exported.images[0], segmenter(exported.images[0]), "blend")
    np.testing.assert_array_equal(blended, colours)
    assert blended.shape == (HEIGHT, WIDTH, 3)


def test_inference_errors_name_the_flag(exported, tmp_path):
    frozen = os.path.join(exported.output_dir, "frozen_inference_graph.pb")
    with pytest.raises(ExportError, match="exactly one of --model_path"):
        load_segmenter()
    with pytest.raises(ExportError, match="--trained_checkpoint needs --config_path"):
        load_segmenter(trained_checkpoint=exported.checkpoint)
    with pytest.raises(ExportError, match="--pad_to_shape applies to checkpoints only"):
        load_segmenter(model_path=frozen, pad_to_shape="97,129")
    with pytest.raises(ExportError, match="--input_shape 64x64 differs .* 96x128"):
        load_segmenter(model_path=frozen, input_shape="64,64,3")
    with pytest.raises(ExportError, match="not found"):
        load_segmenter(model_path=str(tmp_path / "none.tflite"))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="not a loadable TFLite model"):
        load_segmenter(model_path=str(bad))
    segmenter = load_segmenter(model_path=frozen)
    with pytest.raises(InferenceError, match="--input_path .* does not exist"):
        inference_runner.run_inference(segmenter, str(tmp_path / "nothing"), str(tmp_path))
    with pytest.raises(InferenceError, match="unsupported file type"):
        inference_runner.run_inference(segmenter, str(bad), str(tmp_path))
    image = tmp_path / "in" / "x.png"
    image.parent.mkdir()
    Image.fromarray(exported.images[0]).save(image)
    with pytest.raises(InferenceError, match="would overwrite the input"):
        inference_runner.run_inference(segmenter, str(image), str(image.parent))
    with pytest.raises(InferenceError, match="--overlay 'mix'"):
        inference_runner.run_inference(segmenter, str(image), str(tmp_path), overlay="mix")
    segmenter.output_colours = True  # as a model exported with --output_colours
    with pytest.raises(InferenceError, match="--label_ids needs class ids"):
        inference_runner.run_inference(segmenter, str(image), str(tmp_path), label_ids=True)

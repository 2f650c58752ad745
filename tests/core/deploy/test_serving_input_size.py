"""The SavedModel serves images of any size; its fixed-size signature still checks the size first.

The export is a tiny random-init ICNet at 257x513, written as TF Serving version 1
(``saved_model/1/``). Any-size answers are compared with two references: the checkpoint model
(``inference.py --trained_checkpoint``'s segmenter, the same in-graph path: exact), and a numpy
oracle that does the resizes itself around the eager network (>= 99.9%: float32 vs float64
near-ties of a random-init net).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from builders import config_util
from core.checkpoints import checkpoint_utils
from runners.common import build_model
from runners.export import export_inference_graph
from runners.inference import load_segmenter, resolve_model_path
from tests.conftest import TINY_CONFIG

NET = (257, 513)


class Served:
    def __init__(self, root, config_path, prefix, model):
        self.export_dir = str(root / "exported")
        self.saved_model = os.path.join(self.export_dir, "saved_model", "1")
        loaded = tf.saved_model.load(self.saved_model)
        self.loaded = loaded  # keeps the signatures' variables alive
        self.any_size = loaded.signatures["serving_default"]
        self.fixed = loaded.signatures["serving_fixed_size"]
        self.config_path, self.prefix, self.model = config_path, prefix, model


@pytest.fixture(scope="module")
def served(tmp_path_factory, synthetic_records) -> Served:
    root = tmp_path_factory.mktemp("any_size")
    config_path = str(root / "tiny_icnet.config")
    with open(config_path, "w") as stream:
        stream.write(TINY_CONFIG.format(**synthetic_records))
    keras.utils.set_random_seed(1)
    model = build_model(config_util.load_pipeline_config(config_path))
    prefix = checkpoint_utils.make_checkpoint(model).save(str(root / "train" / "model.ckpt"))
    export_inference_graph(
        config_path,
        prefix,
        str(root / "exported"),
        f"{NET[0]},{NET[1]},3",
        formats=["saved_model"],
        serving_version=1,
    )
    return Served(root, config_path, prefix, model)


@pytest.fixture(scope="module")
def checkpoint_segmenter(served):
    """``inference.py --trained_checkpoint``'s segmenter at the export's size."""
    return load_segmenter(
        config_path=served.config_path,
        trained_checkpoint=served.prefix,
        input_shape=f"{NET[0]},{NET[1]},3",
    )


def _scene(size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w, 3]: smooth blobs plus noise, so ids vary across the image."""
    state = np.random.RandomState(size[0])
    coarse = state.randint(0, 256, (6, 9, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize(size[::-1], Image.BILINEAR), np.int16)
    return np.clip(image + state.randint(-20, 21, image.shape), 0, 255).astype(np.uint8)


def _axis(in_size: int, out_size: int, aligned: bool):
    """Source rows (lower, upper) and the upper's weight of a bilinear resize along one axis."""
    out = np.arange(out_size, dtype=np.float64)
    if aligned:
        source = out * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:  # half-pixel centres
        source = np.clip((out + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
    lower = np.floor(source).astype(int)
    return lower, np.minimum(lower + 1, in_size - 1), source - lower


def _resize(x: np.ndarray, size: tuple[int, int], aligned: bool = False) -> np.ndarray:
    """Numpy bilinear resize of [H, W, C] (float64)."""
    lower, upper, weight = _axis(x.shape[0], size[0], aligned)
    x = x[lower] * (1 - weight)[:, None, None] + x[upper] * weight[:, None, None]
    lower, upper, weight = _axis(x.shape[1], size[1], aligned)
    return x[:, lower] * (1 - weight)[None, :, None] + x[:, upper] * weight[None, :, None]


def _oracle_ids(model, image: np.ndarray) -> np.ndarray:
    """Resize to the network (numpy), run it eagerly, resize the logits back (numpy), argmax."""
    network_input = _resize(image.astype(np.float64), NET)[None].astype(np.float32)
    logits = model.predict(model.preprocess(tf.constant(network_input)), training=False)
    logits = logits["logits"].numpy()[0].astype(np.float64)
    logits = _resize(_resize(logits, NET, aligned=True), image.shape[:2])
    return logits.argmax(-1)


def test_serving_signature_takes_any_size(served):
    spec = served.any_size.structured_input_signature[1]["inputs"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    fixed = served.fixed.structured_input_signature[1]["inputs"]
    assert fixed.shape.as_list() == [None, *NET, 3]


@pytest.mark.parametrize("size", [(200, 300), (513, 1025)])
def test_other_sizes_get_ids_at_their_size_equal_to_the_checkpoint(
    served, checkpoint_segmenter, size
):
    image = _scene(size)
    ids = served.any_size(inputs=tf.constant(image[None]))["predictions"].numpy()
    assert ids.shape == (1, *size, 1) and ids.dtype == np.int32
    ids = ids[0, ..., 0]
    # The same in-graph path: exact.
    np.testing.assert_array_equal(checkpoint_segmenter(image), ids)
    oracle = _oracle_ids(served.model, image)
    agreement = float((oracle == ids).mean())
    print(f"{size}: agreement with the numpy oracle {agreement:.5f}")
    assert agreement >= 0.999
    assert len(np.unique(ids)) > 1  # not a constant map, which would agree trivially


def test_the_network_size_gives_the_fixed_signature_ids(served):
    image = _scene(NET)[None]
    any_size = served.any_size(inputs=tf.constant(image))["predictions"].numpy()
    fixed = served.fixed(inputs=tf.constant(image))["predictions"].numpy()
    np.testing.assert_array_equal(any_size, fixed)


def test_inference_finds_the_latest_serving_version(served):
    assert resolve_model_path(served.export_dir) == served.saved_model
    segmenter = load_segmenter(model_path=served.export_dir)
    assert segmenter.any_size and segmenter.input_size == NET
    assert segmenter.num_classes == 19  # pipeline.config two levels up
    image = _scene((120, 170))
    expected = served.any_size(inputs=tf.constant(image[None]))["predictions"].numpy()[0, ..., 0]
    np.testing.assert_array_equal(segmenter(image), expected)


@pytest.mark.parametrize("size", [(129, 193), (257, 514), (65, 129)])
def test_another_size_names_the_export_size(served, size):
    image = tf.zeros((1, *size, 3), tf.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        served.fixed(inputs=image)
    message = str(error.value)
    assert "must be 257x513 images, the --input_shape of this export" in message
    assert "Incompatible shapes" not in message

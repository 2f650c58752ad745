"""One export of a tiny random-init ICNet, shared by the export, segmenter and script tests.

The model (96x128 inputs padded to 97x129, as the tiny config's eval) is checkpointed and
exported in every format once per test session by ``runners.export.export_inference_graph``.
The reference is the checkpoint restored into a fresh model and run eagerly (pad, predict,
argmax, crop), not the exporter's own graph. Tests take it as the ``exported`` fixture of
tests/conftest.py, which calls :func:`exported_model`.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from builders import config_util, dataset_builder, model_builder
from core.checkpoints import checkpoint_utils
from core.deploy import exporter
from runners.export import export_inference_graph
from tests.conftest import TINY_CONFIG

HEIGHT, WIDTH = 96, 128
PAD = (97, 129)
FLOAT_FORMATS = {
    "frozen_graph": exporter.FROZEN_GRAPH_NAME,
    "saved_model": exporter.SAVED_MODEL_DIR,
    "tflite_float32": exporter.TFLITE_FLOAT_NAME,
}


@dataclasses.dataclass
class Exported:
    config_path: str
    checkpoint: str
    output_dir: str
    model: object  # the checkpoint restored into a fresh model
    images: list  # uint8 [H, W, 3]: the 3 eval scenes and one noise image
    result: exporter.ExportResult


_CACHE: dict[str, Exported] = {}


def build_model(config_path: str, checkpoint: str | None = None):
    model = model_builder.build(config_util.load_pipeline_config(config_path).model)
    model.build_variables()
    if checkpoint:
        checkpoint_utils.restore_model(model, checkpoint)
    return model


def reference_ids(model, image: np.ndarray, pad=PAD) -> np.ndarray:
    """int32 [H, W] class ids of the model run eagerly on a padded image."""
    batch = tf.image.pad_to_bounding_box(tf.constant(image[None], tf.float32), 0, 0, *pad)
    logits = model.predict(model.preprocess(batch), training=False)["logits"]
    return tf.argmax(logits, -1, output_type=tf.int32).numpy()[
        0, : image.shape[0], : image.shape[1]
    ]


def reference_logits(model, image: np.ndarray, pad=PAD) -> np.ndarray:
    batch = tf.image.pad_to_bounding_box(tf.constant(image[None], tf.float32), 0, 0, *pad)
    logits = model.predict(model.preprocess(batch), training=False)["logits"].numpy()
    return logits[0, : image.shape[0], : image.shape[1]]


def exported_model(tmp_path_factory, synthetic_records) -> Exported:
    """Checkpoint a random-init tiny ICNet and export every format once per test session."""
    if "all" not in _CACHE:
        try:
            _CACHE["all"] = _export_all(tmp_path_factory, synthetic_records)
        except Exception as error:  # fail every dependent test at once, not one export each
            _CACHE["all"] = error
    if isinstance(_CACHE["all"], Exception):
        raise _CACHE["all"]
    return _CACHE["all"]


def _export_all(tmp_path_factory, synthetic_records) -> Exported:
    root = tmp_path_factory.mktemp("export")
    config_path = str(root / "tiny_icnet.config")
    with open(config_path, "w") as stream:
        stream.write(TINY_CONFIG.format(**synthetic_records))
    keras.utils.set_random_seed(0)  # a reproducible random-init model: stable int8 numbers
    source = build_model(config_path)
    prefix = checkpoint_utils.make_checkpoint(source).save(str(root / "train" / "model.ckpt"))
    result = export_inference_graph(
        config_path, prefix, str(root / "exported"), "96,128,3", "97,129"
    )
    config = config_util.load_pipeline_config(config_path)
    dataset = dataset_builder.build_eval_dataset(config.eval_input_reader, config.eval_config)
    images = [b["input_image"][0, :HEIGHT, :WIDTH].numpy().astype(np.uint8) for b in dataset]
    noise = np.random.RandomState(0).randint(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    model = build_model(config_path, prefix)
    return Exported(config_path, prefix, str(root / "exported"), model, [*images, noise], result)

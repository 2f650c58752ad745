"""A SavedModel served an image of another size than its export's fails first, with a clear message.

A loaded signature does not enforce its input spec's height and width; without the check such an
image ran into the graph and failed at a cascade fusion's add (``Incompatible shapes``).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from builders import config_util
from core.checkpoints import checkpoint_utils
from runners.common import build_model
from runners.export import export_inference_graph
from tests.conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, synthetic_records):
    root = tmp_path_factory.mktemp("size_check")
    config_path = str(root / "tiny_icnet.config")
    with open(config_path, "w") as stream:
        stream.write(TINY_CONFIG.format(**synthetic_records))
    model = build_model(config_util.load_pipeline_config(config_path))
    prefix = checkpoint_utils.make_checkpoint(model).save(str(root / "train" / "model.ckpt"))
    export_inference_graph(
        config_path, prefix, str(root / "exported"), "97,129,3", formats=["saved_model"]
    )
    return tf.saved_model.load(str(root / "exported" / "saved_model")).signatures["serving_default"]


def test_the_export_size_serves(saved_model):
    image = np.random.RandomState(0).randint(0, 256, (1, 97, 129, 3)).astype(np.uint8)
    ids = saved_model(inputs=tf.constant(image))["predictions"].numpy()
    assert ids.shape == (1, 97, 129, 1)


@pytest.mark.parametrize("size", [(129, 193), (97, 130), (65, 129)])
def test_another_size_names_the_export_size(saved_model, size):
    image = tf.zeros((1, *size, 3), tf.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        saved_model(inputs=image)
    message = str(error.value)
    assert "must be 97x129 images, the --input_shape of this export" in message
    assert "Incompatible shapes" not in message

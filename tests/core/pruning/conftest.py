"""The tiny ICNet checkpoint the sensitivity tests analyse (one per test module)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import TINY_CONFIG


@dataclasses.dataclass
class TinyCheckpoint:
    """A random-init tiny ICNet written as ``<folder>/train/model.ckpt-1``.

    Attributes:
      folder: the module's own temporary folder.
      config_path: the tiny config on the session's synthetic records.
      pipeline: that config, parsed.
      model: the built model, holding the checkpoint's values.
      checkpoint: the checkpoint prefix.
      before: ``{name: numpy value}`` of every variable, read right after writing.
    """

    folder: object
    config_path: str
    pipeline: object
    model: object
    checkpoint: str
    before: dict


@pytest.fixture(scope="module")
def tiny_checkpoint(synthetic_records, tmp_path_factory) -> TinyCheckpoint:
    from builders import config_util, model_builder  # noqa: PLC0415 - loads TensorFlow
    from core.checkpoints import checkpoint_utils  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("sensitivity")
    config_path = folder / "tiny_icnet.config"
    config_path.write_text(TINY_CONFIG.format(**synthetic_records))
    pipeline = config_util.load_pipeline_config(str(config_path))
    model = model_builder.build(pipeline.model)
    model.build_variables()
    prefix = str(folder / "train" / "model.ckpt-1")
    checkpoint_utils.make_checkpoint(model).write(prefix)
    before = {name: v.numpy() for name, v in model.named_variables().items()}
    return TinyCheckpoint(folder, str(config_path), pipeline, model, prefix, before)

"""Resuming a logdir whose checkpoint already reaches num_steps; a symlinked logdir."""

from __future__ import annotations

import logging
import math
import os

import pytest

from builders import config_util
from runners import trainer

pytestmark = [
    pytest.mark.filterwarnings("ignore:Even though the `tf.config"),
    pytest.mark.usefixtures("eager_steps"),
]


def test_a_symlinked_logdir_trains_into_its_target_and_a_finished_one_says_so(
    config_path, tmp_path, caplog
):
    config = config_util.load_pipeline_config(config_path)
    real = tmp_path / "real_logdir"
    link = tmp_path / "logdir_link"
    link.symlink_to(real, target_is_directory=True)
    real.mkdir()
    options = trainer.TrainOptions(seed=7, save_summaries_steps=0, num_steps=2)
    first = trainer.train(config, str(link), options)
    assert first.step == 2
    # The symlink is followed: the files are in its target, the paths keep the link's name.
    assert first.checkpoint_path == os.path.join(str(link), "model.ckpt-2")
    assert os.path.isfile(real / "model.ckpt-2.index") and not os.path.islink(real)
    assert sorted(os.listdir(real)) == sorted(os.listdir(link))

    # An older command (num_steps 1) over the resumed logdir: one line, no nan loss.
    older = trainer.TrainOptions(seed=7, save_summaries_steps=0, num_steps=1)
    with caplog.at_level(logging.INFO, logger="absl"):
        result = trainer.train(config, str(real), older)
    messages = [record.getMessage() for record in caplog.records if record.name == "absl"]
    expected = (
        f"Checkpoint {real}/model.ckpt-2 at step 2 already reaches num_steps 1; nothing to "
        "train (raise num_steps to train further)."
    )
    assert expected in messages
    assert not any("nan" in message or "Finished" in message for message in messages)
    assert result.step == 2 and result.losses == {} and math.isnan(result.loss)
    assert result.checkpoint_path == os.path.join(str(real), "model.ckpt-2")
    # Nothing was saved again (default interval: only the end of the first run).
    assert sorted(name for name in os.listdir(real) if name.endswith(".index")) == [
        "model.ckpt-2.index"
    ]

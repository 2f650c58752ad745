"""train.py --recalibrate_bn_batches: the final checkpoint holds population BN statistics.

The oracle recomputes, in numpy, the input of the ICNet full branch's first conv (``Conv``, a
stride-2 'SAME' 3x3 conv of the mean-subtracted image) over the same seeded training batches,
and takes its mean and variance over all pixels of all batches. Every other BN layer is
checked against ``recalibrate_batch_norm`` run separately on a model restored from the final
checkpoint. That the other weights stay, and when the hook does not run (Ctrl-C, a run already
at num_steps), is tested with a fake loop in tests/core/training/test_recalibration.py.
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import pytest
from absl import flags

from builders import config_util, dataset_builder
from core.data.standard_fields import InputDataFields
from core.training.recalibration import recalibrate_batch_norm
from runners import train_flags, trainer
from runners.common import load_model
from tests.runners.bn_oracle import full_branch_statistics

pytestmark = [
    pytest.mark.filterwarnings("ignore:Even though the `tf.config"),
    pytest.mark.usefixtures("eager_steps"),
]

SEED = 7
NUM_BATCHES = 2
OPTIONS = trainer.TrainOptions(seed=SEED, save_summaries_steps=0, num_steps=2)
MOVING = ("moving_mean", "moving_variance")


def _seeded_images(config) -> list[np.ndarray]:
    """The batches the option runs over: the training input seeded as the run was."""
    keras.utils.set_random_seed(SEED)  # the global seed train() set; shuffles depend on it
    dataset = dataset_builder.build_train_dataset(config, 2, 255, SEED)
    return [batch[InputDataFields.input_image].numpy() for batch in dataset.take(NUM_BATCHES)]


def _variables(model) -> dict[str, np.ndarray]:
    return {name: v.numpy() for name, v in model.named_variables().items()}


@pytest.fixture(scope="module")
def run(config_path, tmp_path_factory):
    """(config, logdir) of a 2-step run with --recalibrate_bn_batches=2."""
    config = config_util.load_pipeline_config(config_path)
    logdir = str(tmp_path_factory.mktemp("recalibrated"))
    trainer.train(config, logdir, dataclasses.replace(OPTIONS, recalibrate_bn_batches=2))
    return config, logdir


def test_final_checkpoint_holds_population_statistics(run):
    config, logdir = run
    model, prefix = load_model(config, logdir)
    assert prefix == os.path.join(logdir, "model.ckpt-2")
    final = _variables(model)

    # Numpy oracle for the full branch's first BN: its input is a conv of the image.
    images = _seeded_images(config)
    mean, variance = full_branch_statistics(images, final["Conv/weights"])
    np.testing.assert_allclose(final["Conv/BatchNorm/moving_mean"], mean, rtol=1e-4)
    np.testing.assert_allclose(final["Conv/BatchNorm/moving_variance"], variance, rtol=1e-4)
    # (Two steps of decay-0.9 averages from 0 and 1 would hold about a fifth of these.)

    # Every BN layer: the recalibration of the final weights over the same batches, run
    # separately (it does not read the moving statistics it replaces).
    moving = [name for name in final if name.endswith(MOVING)]
    assert len(moving) > 20
    for name in moving:
        model.named_variables()[name].assign(np.zeros_like(final[name]))
    recalibrate_batch_norm(model, [{InputDataFields.input_image: b} for b in images])
    separately = _variables(model)
    for name in moving:
        np.testing.assert_allclose(final[name], separately[name], rtol=1e-4, atol=1e-6)


def test_negative_count_is_a_train_error():
    with pytest.raises(trainer.TrainError, match="--recalibrate_bn_batches must be >= 0"):
        trainer.TrainOptions(recalibrate_bn_batches=-1)


@pytest.mark.parametrize("mem_saving", [False, True])
def test_flag_sets_the_option(mem_saving):
    values = flags.FlagValues()
    train_flags.define_flags(mem_saving=mem_saving, flag_values=values)
    values(["train.py", "--config_path=c", "--logdir=l", "--recalibrate_bn_batches=3"])
    assert train_flags.options_from_flags(values, mem_saving).recalibrate_bn_batches == 3
    values.unparse_flags()
    values(["train.py", "--config_path=c", "--logdir=l"])
    assert train_flags.options_from_flags(values, mem_saving).recalibrate_bn_batches == 0

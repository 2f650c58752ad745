"""Trains an ICNet or PSPNet from a pipeline config.

Example:
  python train.py --config_path=configs/single_stage_icnet_1.0_1025_resnet_v1.config --logdir=train_dir

Running the same command again resumes from the newest checkpoint in --logdir. Multi-GPU:
--num_clones=N; several machines: set TF_CONFIG on each. See runners/train_flags.py for all flags.
"""

from absl import flags

from runners import cli, train_flags

train_flags.define_flags(mem_saving=False)
flags.adopt_module_key_flags(train_flags)  # list them in --helpshort


def main(argv):
    train_flags.main(argv, mem_saving=False)


if __name__ == "__main__":
    cli.run_main(main, name="train.py", check_records=("train_input_reader",))

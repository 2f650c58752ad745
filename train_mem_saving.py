"""Trains like train.py with gradient checkpointing, for larger batches or crops per GPU.

What --checkpoint_nodes selects runs under tf.recompute_grad: its activations are recomputed in
backprop instead of kept. The default plan, 'sqrt', recomputes every step in sqrt(n) runs (the
least memory, measured); 'measured' recomputes the steps that hold the most activation bytes;
'original' recomputes each backbone block and the fusion units; names select segments or steps. Gradients
are the same as train.py's. --log_memory reports the peak memory.

Example:
  python train_mem_saving.py --logdir=train_dir --log_memory
      --config_path=configs/single_stage_icnet_1.0_1025_resnet_v1.config
"""

from absl import flags

from runners import cli, train_flags

train_flags.define_flags(mem_saving=True)
flags.adopt_module_key_flags(train_flags)  # list them in --helpshort


def main(argv):
    train_flags.main(argv, mem_saving=True)


if __name__ == "__main__":
    cli.run_main(main, name="train_mem_saving.py", check_records=("train_input_reader",))

r"""The README demo: trains, evaluates, exports and runs ICNet on synthetic street scenes.

Usage, from the repository root (``make demo`` runs it with the defaults)::

    python demo.py [--output_dir demo_output] [--num_steps 1500] [--num_train 400]

Everything it writes lands under ``--output_dir``; see ``runners/demo.py``.
"""

from __future__ import annotations

from absl import flags, logging

from runners import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_output", "Folder for everything the demo writes.")
flags.DEFINE_string(
    "config_path", None, "Pipeline config to train (default: configs/icnet_synthetic_demo.config)."
)
# Bounds are checked when the flags are parsed, before any scene is generated.
flags.DEFINE_integer("num_train", 400, "Synthetic training scenes.", lower_bound=1)
flags.DEFINE_integer("num_val", 50, "Synthetic validation scenes.", lower_bound=1)
flags.DEFINE_integer("height", 256, "Scene height in pixels.", lower_bound=1)
flags.DEFINE_integer("width", 512, "Scene width in pixels.", lower_bound=1)
flags.DEFINE_integer(
    "num_steps", None, "Training steps (default: the config's num_steps).", lower_bound=1
)
flags.DEFINE_integer(
    "num_images", 4, "Held-out scenes to segment with the exported model.", lower_bound=0
)
flags.DEFINE_integer("seed", 0, "Seed of the data and of training.")
flags.DEFINE_multi_string("config_override", [], "Text-format PipelineConfig overrides.")


def main(argv):
    del argv
    logging.set_verbosity(logging.INFO)
    from runners import demo  # noqa: PLC0415 - after the flag checks

    options = demo.DemoOptions(
        output_dir=FLAGS.output_dir,
        config_path=FLAGS.config_path or demo.DEFAULT_CONFIG,
        num_train=FLAGS.num_train,
        num_val=FLAGS.num_val,
        height=FLAGS.height,
        width=FLAGS.width,
        num_steps=FLAGS.num_steps,
        num_images=FLAGS.num_images,
        seed=FLAGS.seed,
        config_override=tuple(FLAGS.config_override),
    )
    demo.run_demo(options)


if __name__ == "__main__":
    cli.run_main(main, name="demo.py", extra_errors=(ValueError,))

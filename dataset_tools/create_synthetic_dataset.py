r"""Writes a synthetic street-scene segmentation dataset (the built-in demo data).

Usage, from the repository root::

    python dataset_tools/create_synthetic_dataset.py --output_dir=data/synthetic \
        --height=256 --width=512 --num_train=200 --num_val=40 --seed=0 \
        [--preview_dir=data/synthetic/previews]

writes ``synthetic_train.record`` and ``synthetic_val.record`` in the record
format of the Cityscapes tool, with labels in Cityscapes train-id space.
``python -m dataset_tools.create_synthetic_dataset`` works too.

The scenes themselves are drawn by :mod:`dataset_tools.synthetic_scene`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from core import visualization  # noqa: E402
from dataset_tools import tfrecord_utils  # noqa: E402
from dataset_tools.synthetic_scene import generate_scene  # noqa: E402


def _scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # One independent stream per (seed, split, index): train and val never share scenes,
    # and any example can be regenerated alone.
    return np.random.default_rng([seed, 0 if split == "train" else 1, index])


def _examples(split: str, count: int, height: int, width: int, seed: int) -> Iterator:
    progress = tfrecord_utils.ProgressLogger(count, what=f"{split} scenes")
    for index in range(count):
        image, label = generate_scene(height, width, _scene_rng(seed, split, index))
        filename = f"synthetic/{split}/{index:06d}.png"
        yield tfrecord_utils.make_example_from_arrays(image, label, filename)
        progress.step()


def write_previews(preview_dir: str, count: int, height: int, width: int, seed: int) -> list[str]:
    """Saves ``count`` training scenes as PNGs: image | colourised label side by side.

    Returns:
      The paths of the written previews.
    """
    os.makedirs(preview_dir, exist_ok=True)
    paths = []
    for index in range(count):
        image, label = generate_scene(height, width, _scene_rng(seed, "train", index))
        path = os.path.join(preview_dir, f"synthetic_train_{index:06d}.png")
        visualization.save_png(visualization.side_by_side(image, label, gap=0), path)
        paths.append(path)
    return paths


def write_synthetic_dataset(
    output_dir: str,
    num_train: int,
    num_val: int,
    height: int = 256,
    width: int = 512,
    seed: int = 0,
    preview_dir: str | None = None,
    num_previews: int = 4,
) -> dict[str, str]:
    """Writes ``synthetic_train.record`` and ``synthetic_val.record``.

    Args:
      output_dir: folder for the records; created if missing.
      num_train: number of training scenes.
      num_val: number of validation scenes (drawn from a different stream).
      height: scene height in pixels.
      width: scene width in pixels.
      seed: the same seed writes byte-identical files.
      preview_dir: if given, also save ``num_previews`` image|label PNGs there.
      num_previews: how many previews to save.

    Returns:
      ``{"train": path, "val": path}``, plus ``"preview_dir"`` when previews were written.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f"num_train and num_val must be >= 0, got {num_train}, {num_val}")
    if height < 1 or width < 1:
        raise ValueError(f"--height and --width must be positive, got {height}x{width}")
    paths: dict[str, str] = {}
    for split, count in (("train", num_train), ("val", num_val)):
        path = os.path.join(output_dir, f"synthetic_{split}.record")
        tfrecord_utils.write_sharded(_examples(split, count, height, width, seed), path)
        logging.info("Wrote %d %dx%d scenes to %s", count, height, width, path)
        paths[split] = path
    if preview_dir:
        write_previews(preview_dir, min(num_previews, max(num_train, 1)), height, width, seed)
        paths["preview_dir"] = preview_dir
    return paths


def _define_flags() -> None:
    flags.DEFINE_string("output_dir", None, "Folder for synthetic_{train,val}.record.")
    flags.DEFINE_integer("height", 256, "Image height in pixels.")
    flags.DEFINE_integer("width", 512, "Image width in pixels.")
    flags.DEFINE_integer("num_train", 200, "Number of training scenes.")
    flags.DEFINE_integer("num_val", 40, "Number of validation scenes.")
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes the same bytes.")
    flags.DEFINE_string("preview_dir", None, "If set, save a few image|label preview PNGs here.")
    flags.DEFINE_integer("num_previews", 4, "Number of previews for --preview_dir.")
    flags.mark_flag_as_required("output_dir")


def main(argv: Sequence[str]) -> None:
    del argv
    flag_values = flags.FLAGS
    write_synthetic_dataset(
        output_dir=flag_values.output_dir,
        num_train=flag_values.num_train,
        num_val=flag_values.num_val,
        height=flag_values.height,
        width=flag_values.width,
        seed=flag_values.seed,
        preview_dir=flag_values.preview_dir,
        num_previews=flag_values.num_previews,
    )


if __name__ == "__main__":
    from runners import cli

    _define_flags()
    cli.run_main(main, extra_errors=(ValueError,))  # one line per mistake (ValueErrors name it)

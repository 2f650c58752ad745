"""Console commands of the installed package: each runs one entry script of the repository root.

``pip install .`` installs the repository as the single import package
``fast_semantic_segmentation`` (see setup.py), so ``core``, ``models`` and the other packages of
the original's layout are not top-level names in site-packages. A command puts the package's own
folder first on ``sys.path`` of its process, where the scripts' imports (``from runners import
...``) resolve to this project, then runs the script as ``python <script>.py`` would.
"""

from __future__ import annotations

import pathlib
import runpy
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Console command -> script, relative to the repository (or installed package) root.
COMMANDS = {
    "fss-train": "train.py",
    "fss-train-mem-saving": "train_mem_saving.py",
    "fss-eval": "eval.py",
    "fss-export": "export.py",
    "fss-inference": "inference.py",
    "fss-compress": "compress.py",
    "fss-sensitivity": "sensitivity.py",
    "fss-recalibrate-bn": "recalibrate_bn.py",
    "fss-demo": "demo.py",
    "fss-create-synthetic-dataset": "dataset_tools/create_synthetic_dataset.py",
    "fss-create-cityscapes-tfrecord": "dataset_tools/create_cityscapes_tfrecord.py",
    "fss-create-tfrecord-from-folders": "dataset_tools/create_tfrecord_from_folders.py",
}


def use_project_packages() -> pathlib.Path:
    """Puts the project root first on ``sys.path`` and returns it.

    Afterwards ``import core`` (``models``, ``builders``, ...) imports this project's packages,
    as in a clone. Only the commands call it; call it yourself to use the library from Python.
    """
    root = str(ROOT)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    return ROOT


def run(command: str) -> None:
    """Runs the script of ``command`` with this process's arguments, as its ``__main__``."""
    use_project_packages()
    script = ROOT / COMMANDS[command]
    sys.argv[0] = command
    runpy.run_path(str(script), run_name="__main__")


def _entry(command: str):
    def main() -> None:
        run(command)

    main.__name__ = command.replace("-", "_")
    main.__doc__ = f"Runs {COMMANDS[command]}."
    return main


train = _entry("fss-train")
train_mem_saving = _entry("fss-train-mem-saving")
eval = _entry("fss-eval")
export = _entry("fss-export")
inference = _entry("fss-inference")
compress = _entry("fss-compress")
sensitivity = _entry("fss-sensitivity")
recalibrate_bn = _entry("fss-recalibrate-bn")
demo = _entry("fss-demo")
create_synthetic_dataset = _entry("fss-create-synthetic-dataset")
create_cityscapes_tfrecord = _entry("fss-create-cityscapes-tfrecord")
create_tfrecord_from_folders = _entry("fss-create-tfrecord-from-folders")

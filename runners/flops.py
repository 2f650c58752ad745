"""Prints the FLOPs and parameters of a pipeline config's model (the model zoo's numbers).

Usage::

    python -m runners.flops --config_path configs/X.config --input_size 1025,2049

The counting is :func:`core.analysis.flops.compute_flops`; this runner reads the config and
builds its model (:func:`runners.common.build_model`). No checkpoint is needed: FLOPs and
parameter counts depend on the shapes only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import app, flags

from builders import config_util
from core.analysis.flops import ZOO_INPUT_SIZE, FlopsReport, compute_flops
from runners.common import build_model


def _define_flags() -> None:
    # Defined only when run as a script: importing this module (tests, other runners) must not
    # claim --config_path in absl's process-global flag registry.
    flags.DEFINE_string("config_path", None, "Path of a pipeline .config file.", required=True)
    flags.DEFINE_string(
        "input_size",
        ",".join(str(size) for size in ZOO_INPUT_SIZE),
        "height,width of the input; the zoo used 1025,2049.",
    )


def parse_size(text: str) -> tuple[int, int]:
    """``"height,width"`` -> ``(height, width)``.

    Raises:
      ValueError: the text is not two comma-separated integers (names the flag).
    """
    try:
        height, width = (int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"--input_size must be 'height,width', e.g. 1025,2049; got {text!r}."
        ) from None
    return height, width


def config_flops(config_path: str, input_size: Sequence[int]) -> FlopsReport:
    """The FLOPs report of a config's model at ``(height, width)``.

    The config is not validated: a zoo config without train or eval sections still counts.
    """
    config = config_util.load_pipeline_config(config_path, validate=False)
    # Tracing creates the variables; running the model once first would only cost time.
    model = build_model(config, build_variables=False)
    return compute_flops(model, input_size)


def main(argv: Sequence[str]) -> None:
    """Prints the FLOPs report of the model of ``--config_path``."""
    del argv
    config_path, input_size = flags.FLAGS.config_path, flags.FLAGS.input_size
    try:
        report = config_flops(config_path, parse_size(input_size))
    except ValueError as error:  # ConfigError included: a clear message, not a traceback
        sys.exit(f"error: {error}")
    print(f"{config_path}\n{report.summary()}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)

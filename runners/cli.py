"""How every entry script ends a user mistake: one ``error: ...`` line on stderr, exit status 1.

The scripts call :func:`run_main` instead of ``absl.app.run``. It adds ``--verbose`` (a traceback
before the line), turns flag-parsing errors and the project's user-error exceptions into one line,
and maps the in-graph failures a user's data can cause (a corrupt record, a label outside the
classes) to one line as well.

The error types are looked up by name in ``sys.modules`` rather than imported: an exception of a
class whose module was never imported cannot have been raised, and not importing them keeps a
flag or config mistake from paying for a TensorFlow import (several seconds).
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Callable, Sequence

from absl import app, flags

from runners import quiet_logs

FLAGS = flags.FLAGS

# (module, class) of every exception whose message already names the fault and the fix.
USER_ERROR_NAMES = (
    ("builders.config_errors", "ConfigError"),
    ("core.checkpoints.checkpoint_utils", "CheckpointError"),
    ("core.deploy.export_options", "ExportError"),  # also core.deploy.deploy_graph's
    ("core.deploy.tflite_export", "TFLiteConversionError"),
    ("core.deploy.inference_runner", "InferenceError"),
    ("core.evaluation.inference", "EvaluationError"),
    ("core.training.distribution", "DistributionError"),
    ("core.training.hooks", "NonFiniteLossError"),
    ("core.datasets.label_map", "LabelMapError"),
    ("core.data.record_check", "RecordError"),
    ("runners.train_options", "TrainError"),
    ("dataset_tools.tfrecord_utils", "DataError"),
)

# Operating-system errors a user causes with a path: missing, a file for a folder, no access.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)

_LABEL_RANGE = re.compile(r"Received a label value of (-?\d+) which is outside the valid range")


def define_verbose_flag(flag_values: flags.FlagValues = FLAGS) -> None:
    """Defines ``--verbose`` unless the script already has one (eval.py's also logs more)."""
    if "verbose" not in flag_values:
        flags.DEFINE_bool(
            "verbose",
            False,
            "Print the Python traceback before an error message, and TensorFlow's start-up and "
            "converter messages.",
            flag_values=flag_values,
        )


def user_error_types(extra: Sequence[type[BaseException]] = ()) -> tuple[type, ...]:
    """The user-error classes of the modules imported so far, plus ``PATH_ERRORS`` and ``extra``."""
    found = [
        getattr(sys.modules[module], name)
        for module, name in USER_ERROR_NAMES
        if module in sys.modules and hasattr(sys.modules[module], name)
    ]
    return (*found, *PATH_ERRORS, *extra)


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def graph_error_message(error: BaseException) -> str | None:
    """One line for a TensorFlow runtime error a user's data causes; None for any other error.

    ``tf.debugging.Assert`` failures of the input pipeline already carry a message that names the
    record (``core/data/input_pipeline.py``); the loss reports a label outside the classes; a
    ``DataLossError`` is a truncated or corrupt record file.
    """
    tf_errors = getattr(sys.modules.get("tensorflow"), "errors", None)
    if tf_errors is None or not isinstance(error, tf_errors.OpError):
        return None
    text = getattr(error, "message", str(error))
    label = _LABEL_RANGE.search(text)
    if label:
        return (
            f"a label value {label.group(1)} is outside the classes of the model: "
            f"{_first_line(text[label.start() :])} Fix the records' labels, or num_classes / "
            "ignore_label in the config."
        )
    if "assertion failed:" in text:
        detail = _first_line(text.split("assertion failed:", 1)[1]).strip("[] ")
        return f"bad input data: {detail.replace('] [', ' ')}"
    if isinstance(error, tf_errors.DataLossError):
        return (
            f"a record file is corrupt or truncated ({_first_line(text)}). Write the records "
            "again with the dataset_tools/ script that made them."
        )
    return None


def fail(
    error: BaseException | str, *, name: str | None = None, message: str | None = None
) -> None:
    """Exits with status 1 and one ``[name: ]error: <message>`` line; ``--verbose`` adds the traceback.

    Args:
      error: the exception (its message is printed, after its traceback with ``--verbose``) or
        the message itself.
      name: printed before ``error:``, e.g. ``"train.py"``.
      message: printed instead of the exception's own message.

    Raises:
      SystemExit: always, with the line as its message (``sys.exit`` prints it to stderr).
    """
    if message is None:
        message = error if isinstance(error, str) else error_message(error) or str(error)
    if isinstance(error, BaseException) and _verbose():
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    prefix = f"{name}: " if name else ""
    raise SystemExit(f"{prefix}error: {one_line(message) or type(error).__name__}")


def one_line(message: str) -> str:
    """``message``, its items joined onto its first line if that line only introduces them.

    ``config.config: 1 invalid value:`` followed by the problem on the next line would leave the
    ``error:`` line without the field at fault; context lines (a config line after a syntax
    error) stay on their own lines.
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return " ".join([lines[0], "; ".join(lines[1:])])
    return "\n".join([lines[0], *("    " + line for line in lines[1:])]) if lines else ""


def _verbose() -> bool:
    return "verbose" in FLAGS and FLAGS.is_parsed() and bool(FLAGS.verbose)


def error_message(error: BaseException, extra: Sequence[type[BaseException]] = ()) -> str | None:
    """The one-line reason :func:`fail` prints for ``error``; None if it is not a user mistake."""
    if isinstance(error, app.UsageError):
        return f"{error} (see --helpshort for the flags)"
    if isinstance(error, user_error_types(extra)):
        return str(error)
    return graph_error_message(error)


def _parse_flags(argv: list[str], name: str | None) -> list[str]:
    try:
        return FLAGS(argv)
    except flags.Error as error:
        # absl's parser prints two lines and sometimes the usage; one line says the same.
        message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        prefix = f"{name}: " if name else ""
        sys.stderr.write(f"{prefix}error: {message} (see --helpshort for the flags)\n")
        sys.exit(1)


def check_config_flags(flag_values: flags.FlagValues = FLAGS):
    """Parses ``--config_path`` with its ``--config_override``s, if the script has them.

    Before the script's runner is imported: a missing file, a syntax error or an unknown field is
    reported in a fraction of a second instead of after the TensorFlow import. Values are
    validated later, by the runner (the rules need the model registries).

    Returns:
      The parsed ``PipelineConfig``, or None for a script without ``--config_path``.

    Raises:
      ConfigError: the file or an override does not parse (named, with the line).
    """
    if "config_path" not in flag_values or not flag_values.config_path:
        return None
    from builders import config_util  # noqa: PLC0415 - only scripts with a config need it

    overrides = flag_values.config_override if "config_override" in flag_values else None
    return config_util.load_pipeline_config(flag_values.config_path, overrides, validate=False)


def run_main(
    main: Callable[[list[str]], object],
    *,
    name: str | None = None,
    extra_errors: Sequence[type[BaseException]] = (),
    check_records: Sequence[str] = (),
) -> None:
    """``absl.app.run(main)`` that ends every user mistake with one ``error:`` line and status 1.

    Positional arguments are refused (no script takes any), and ``--config_path`` is parsed
    before ``main`` runs (:func:`check_config_flags`). Unless ``--verbose`` is given,
    TensorFlow's start-up chatter is kept off the console (:mod:`runners.quiet_logs`).

    Args:
      main: the script's ``main(argv)``.
      name: printed before ``error:`` (e.g. ``"train.py"``) where a script always did so.
      extra_errors: more exception types the script treats as user mistakes (e.g. ValueError
        where every ValueError it can raise names the bad value).
      check_records: input readers of the config (``"train_input_reader"``,
        ``"eval_input_reader"``) whose records are checked before ``main`` runs
        (:mod:`runners.input_checks`: a bad file is one line before TensorFlow is imported).
    """
    define_verbose_flag()
    quiet_logs.install(quiet_logs.verbose_requested(sys.argv))

    def wrapped(argv: list[str]) -> None:
        quiet_logs.single_tensorflow_handler()  # absl's handler is set up by now
        try:
            if len(argv) > 1:
                raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
            config = check_config_flags()
            if config is not None and check_records:
                from runners import input_checks  # noqa: PLC0415 - scripts with records only

                for reader in check_records:
                    input_checks.check_reader_records(config, reader)
            main(argv)
        except Exception as error:  # noqa: BLE001 - re-raised unless it is a user mistake
            message = error_message(error, extra_errors)
            if message is None:
                raise
            fail(error, name=name, message=message)

    app.run(wrapped, flags_parser=lambda argv: _parse_flags(argv, name))

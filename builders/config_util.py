"""Reading, overriding, validating and saving pipeline configs.

A pipeline config is a text-format ``PipelineConfig`` (``protos/pipeline.proto``),
the same files the original project used. Everything a user can get wrong in
one is reported as a :class:`ConfigError` that names the file, the line and the
field, and says how to fix it:

* syntax errors, unknown fields (with a did-you-mean suggestion) and values of
  the wrong type, straight from the text-format parser;
* unfilled ``MODIFY_THIS_FIELD...`` placeholders of the sample configs;
* missing or out-of-range values (``num_classes``, ``filter_scale``, crop
  sizes, pooling factors, ...), found by :func:`validate_pipeline_config`
  (``builders/config_validation.py``, the one place those rules live).

Overrides (``--config_override``) are text-format ``PipelineConfig`` snippets.
Unlike ``text_format.Merge``, which appends to repeated fields, an override
*replaces* every repeated field it sets, so ``train_config {
preprocessor_step { random_horizontal_flip {} } }`` leaves exactly one step.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from google.protobuf import descriptor, descriptor_pool, text_format
from google.protobuf.message import Message

# ConfigError, locate_fields and validate_pipeline_config live in their own
# modules; they are re-exported here because every caller imports them from here.
from builders import custom_imports
from builders.config_errors import ConfigError
from core import file_utils
from protos import compressor_pb2, pipeline_pb2

if TYPE_CHECKING:
    from builders.config_validation import (
        FEATURE_EXTRACTOR_TYPES,
        FINE_TUNE_CHECKPOINT_TYPES,
        locate_fields,
        validate_pipeline_config,
    )

# Validation needs the model registries and so TensorFlow (seconds to import); it is imported on
# first use so that a missing file or a syntax error in a config is reported at once.
_VALIDATION_NAMES = (
    "FEATURE_EXTRACTOR_TYPES",
    "FINE_TUNE_CHECKPOINT_TYPES",
    "locate_fields",
    "validate_pipeline_config",
)


def __getattr__(name: str):
    if name in _VALIDATION_NAMES:
        from builders import config_validation

        return getattr(config_validation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FEATURE_EXTRACTOR_TYPES",
    "FINE_TUNE_CHECKPOINT_TYPES",
    "PIPELINE_CONFIG_NAME",
    "PLACEHOLDER",
    "ConfigError",
    "apply_overrides",
    "exported_config_path",
    "load_pipeline_config",
    "load_prune_config",
    "locate_fields",
    "parse_pipeline_text",
    "validate_pipeline_config",
    "write_pipeline_config",
]

PLACEHOLDER = "MODIFY_THIS_FIELD"

PIPELINE_CONFIG_NAME = "pipeline.config"


# --------------------------------------------------------------------------- parsing


def _did_you_mean(message_name: str, field_name: str) -> str:
    try:
        message_type = descriptor_pool.Default().FindMessageTypeByName(message_name)
    except KeyError:
        return ""
    names = [f.name for f in message_type.fields]
    close = difflib.get_close_matches(field_name, names, n=1)
    if close:
        return f' Did you mean "{close[0]}"?'
    return f" Valid fields: {', '.join(names)}."


def _parse_error(source: str, text: str, error: text_format.ParseError) -> ConfigError:
    line, column = error.GetLine(), error.GetColumn()
    # The parser prefixes its message with "line:col : "; keep only the reason.
    reason = re.sub(r"^\d+:\d+ : ", "", str(error))
    unknown = re.search(r'Message type "([\w.]+)" has no field named "(\w+)"', reason)
    if unknown:
        reason = (
            f'unknown field "{unknown.group(2)}" in {unknown.group(1).rsplit(".", 1)[-1]}.'
            + _did_you_mean(unknown.group(1), unknown.group(2))
        )
    where = f"{source}:{line}:{column}" if line else source
    lines = text.splitlines()
    context = f"\n    {lines[line - 1].strip()}" if line and line <= len(lines) else ""
    return ConfigError(f"{where}: {reason}{context}")


def _check_placeholders(source: str, text: str) -> None:
    problems = []
    for number, content in enumerate(text.splitlines(), start=1):
        code = content.split("#", 1)[0]
        if PLACEHOLDER in code:
            field = code.split(":", 1)[0].strip()
            problems.append(
                f'{source}:{number}: field "{field}" still holds the placeholder '
                f"{code.split(':', 1)[-1].strip()}; replace it with your value."
            )
    if problems:
        raise ConfigError("\n".join(problems))


def _parse_text(text: str, message: Message, source: str) -> Message:
    _check_placeholders(source, text)
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise _parse_error(source, text, error) from None
    return message


def parse_pipeline_text(text: str, source: str = "<config>") -> pipeline_pb2.PipelineConfig:
    """Parses a text-format ``PipelineConfig`` without validating its values.

    Args:
      text: the config file's contents.
      source: the file name used in error messages.

    Raises:
      ConfigError: a syntax error, unknown field, wrong value type or an
        unfilled placeholder, with the file, line and field.
    """
    return _parse_text(text, pipeline_pb2.PipelineConfig(), source)


def _read_text(path: str, flag: str, what: str) -> str:
    if not os.path.isfile(path):
        raise ConfigError(
            f"{what} not found: {path!r}. Pass {flag} with the path of an existing file."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{what} {path!r} is not a text file ({error.reason} at byte {error.start}); pass "
            f"{flag} with a text-format config (a binary file or a checkpoint was given?)."
        ) from None


def load_prune_config(path: str) -> compressor_pb2.CompressionConfig:
    """Reads a text-format ``.prune_config`` (``CompressionConfig``).

    The original project's prune configs parse unchanged. Errors name the file,
    line and field like those of pipeline configs.
    """
    return _parse_text(
        _read_text(path, "--prune_config", "prune config"), compressor_pb2.CompressionConfig(), path
    )


def _replace_merge(target: Message, override: Message) -> None:
    """Merges ``override`` into ``target``, replacing repeated fields whole."""
    for field, value in override.ListFields():
        if field.is_repeated:
            target.ClearField(field.name)
            getattr(target, field.name).extend(value)
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            child = getattr(target, field.name)
            child.SetInParent()  # also selects this member of a oneof
            _replace_merge(child, value)
        else:
            setattr(target, field.name, value)


def apply_overrides(
    config: pipeline_pb2.PipelineConfig, overrides: str | Iterable[str] | None
) -> pipeline_pb2.PipelineConfig:
    """Returns a copy of ``config`` with text-format overrides applied in order.

    Scalars and single messages are merged field by field; every repeated field
    an override sets replaces the config's list instead of extending it. Setting
    a member of a oneof (e.g. ``model { pspnet {...} }`` over an ICNet config)
    switches the oneof.
    """
    result = pipeline_pb2.PipelineConfig()
    result.CopyFrom(config)
    if overrides is None:
        return result
    if isinstance(overrides, str):
        overrides = [overrides]
    for number, text in enumerate(overrides, start=1):
        if not text.strip():
            continue
        override = parse_pipeline_text(text, source=f"--config_override #{number}")
        _replace_merge(result, override)
    return result


def load_pipeline_config(
    config_path: str, config_override: str | Iterable[str] | None = None, validate: bool = True
) -> pipeline_pb2.PipelineConfig:
    """Reads a pipeline config file, applies overrides, imports its ``custom_imports``, validates.

    Args:
      config_path: path of the text-format ``.config`` file.
      config_override: text-format ``PipelineConfig`` snippet(s) applied on top.
      validate: run :func:`validate_pipeline_config` on the result.

    Raises:
      ConfigError: the file is missing or anything in it or in an override is
        invalid; the message names the file, line and field.
    """
    text = _read_text(config_path, "--config_path", "config file")
    config = parse_pipeline_text(text, source=config_path)
    config = apply_overrides(config, config_override)
    # Before validation: the modules register the names the config may use.
    custom_imports.import_modules(config.custom_imports, source=config_path)
    if validate:
        from builders.config_validation import validate_pipeline_config

        validate_pipeline_config(config, source=config_path, text=text)
    return config


def exported_config_path(model_path: str) -> str | None:
    """The ``pipeline.config`` export.py wrote beside an exported model, or None if absent."""
    path = os.path.abspath(model_path.rstrip("/"))
    directory = os.path.dirname(path)
    if os.path.basename(path).isdigit():  # a TF Serving version: <export>/saved_model/<N>
        directory = os.path.dirname(directory)
    candidate = os.path.join(directory, PIPELINE_CONFIG_NAME)
    return candidate if os.path.isfile(candidate) else None


def write_pipeline_config(config: pipeline_pb2.PipelineConfig, directory: str) -> str:
    """Writes the effective config as ``<directory>/pipeline.config``, atomically.

    Returns:
      The path written.
    """
    path = os.path.join(directory, PIPELINE_CONFIG_NAME)
    file_utils.atomic_write_text(path, text_format.MessageToString(config))
    return path

"""Reading, overriding, validating and saving pipeline configs.

A pipeline config is a text-format ``PipelineConfig`` (``protos/pipeline.proto``),
the same files the original project used. Everything a user can get wrong in
one is reported as a :class:`ConfigError` that names the file, the line and the
field, and says how to fix it:

* syntax errors, unknown fields (with a did-you-mean suggestion) and values of
  the wrong type, straight from the text-format parser;
* unfilled ``MODIFY_THIS_FIELD...`` placeholders of the sample configs;
* missing or out-of-range values (``num_classes``, ``filter_scale``, crop
  sizes, pooling factors, ...), found by :func:`validate_pipeline_config`.

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

from google.protobuf import descriptor, descriptor_pool, text_format
from google.protobuf.message import Message

from core import file_utils
from protos import compressor_pb2, pipeline_pb2

PLACEHOLDER = "MODIFY_THIS_FIELD"

FEATURE_EXTRACTOR_TYPES = ("dilated_resnet50", "dilated_mobilenet")
FINE_TUNE_CHECKPOINT_TYPES = ("classification", "segmentation", "segmentation-finetune")
PIPELINE_CONFIG_NAME = "pipeline.config"


class ConfigError(ValueError):
    """A config file or override cannot be used; the message says where and why."""


# --------------------------------------------------------------------------- locating


_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<punct>[{}<>:\[\],;])
      | (?P<other>[^\s{}<>:\[\],;"'#]+)
      | (?P<newline>\n)""",
    re.VERBOSE,
)


def locate_fields(text: str) -> dict[str, int]:
    """Maps every field path in a text proto to the line it starts on (1-based).

    Paths index every component by its occurrence under its parent, e.g.
    ``train_config[0].preprocessor_step[1].random_image_crop[0].crop_height[0]``.
    The scan is lexical and tolerant: it is only used to point error messages
    at a line, never to read values.
    """
    locations: dict[str, int] = {}
    stack: list[tuple[str, dict[str, int]]] = [("", {})]
    line = 1
    pending: tuple[str, int] | None = None  # a field name seen, waiting for its value
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        token = match.group()
        if kind == "newline":
            line += 1
            continue
        if kind == "comment":
            continue
        if kind == "name" and pending is None:
            prefix, counts = stack[-1]
            index = counts.get(token, 0)
            counts[token] = index + 1
            path = f"{prefix}.{token}[{index}]" if prefix else f"{token}[{index}]"
            locations.setdefault(path, line)
            pending = (path, line)
            continue
        if token in "{<":
            stack.append((pending[0] if pending else "?", {}))
            pending = None
        elif token in "}>":
            if len(stack) > 1:
                stack.pop()
            pending = None
        elif token == ":" or token in "[,":
            continue
        else:  # a scalar value (or "]"/";") ends the field
            pending = None
    return locations


def _indexed(path: str) -> str:
    """Adds ``[0]`` to every component of a dotted path that has no index."""
    parts = []
    for part in path.split("."):
        parts.append(part if part.endswith("]") else f"{part}[0]")
    return ".".join(parts)


def _line_of(path: str, locations: dict[str, int]) -> int | None:
    """Line of a field path, or of its nearest located ancestor."""
    indexed = _indexed(path)
    while indexed:
        if indexed in locations:
            return locations[indexed]
        indexed = indexed.rpartition(".")[0]
    return None


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
    with open(path, encoding="utf-8") as handle:
        return handle.read()


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
    """Reads a pipeline config file, applies overrides and validates it.

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
    if validate:
        validate_pipeline_config(config, source=config_path, text=text)
    return config


def write_pipeline_config(config: pipeline_pb2.PipelineConfig, directory: str) -> str:
    """Writes the effective config as ``<directory>/pipeline.config``, atomically.

    Returns:
      The path written.
    """
    path = os.path.join(directory, PIPELINE_CONFIG_NAME)
    file_utils.atomic_write_text(path, text_format.MessageToString(config))
    return path


# --------------------------------------------------------------------------- validation


class _Problems:
    """Collects validation problems, each tied to a field path."""

    def __init__(self, source: str, locations: dict[str, int]):
        self._source = source
        self._locations = locations
        self.messages: list[str] = []

    def add(self, path: str, problem: str) -> None:
        line = _line_of(path, self._locations)
        where = f"{self._source}:{line}" if line else self._source
        self.messages.append(f"{where}: {path}: {problem}")


def _positive(problems: _Problems, message: Message, path: str, *names: str) -> None:
    for name in names:
        if not message.HasField(name):
            problems.add(f"{path}.{name}", "is required; set it to a positive value.")
        elif getattr(message, name) <= 0:
            problems.add(f"{path}.{name}", f"must be positive, got {getattr(message, name)}.")


def _validate_model(problems: _Problems, config: pipeline_pb2.PipelineConfig) -> None:
    kind = config.model.WhichOneof("model")
    if kind is None:
        problems.add(
            "model", "is required: add model { icnet { ... } } or model { pspnet { ... } }."
        )
        return
    model = getattr(config.model, kind)
    path = f"model.{kind}"
    if not model.HasField("num_classes"):
        problems.add(f"{path}.num_classes", "is required: the number of classes of your dataset.")
    elif model.num_classes < 1 or model.num_classes > 255:
        problems.add(
            f"{path}.num_classes",
            f"must be in [1, 255] (labels are 8-bit PNGs), got {model.num_classes}.",
        )
    if not model.HasField("filter_scale"):
        problems.add(
            f"{path}.filter_scale",
            "is required: the fraction of filters kept, in (0, 1] (1.0 for the full model).",
        )
    elif not 0.0 < model.filter_scale <= 1.0:
        problems.add(f"{path}.filter_scale", f"must be in (0, 1], got {model.filter_scale}.")
    extractor = model.feature_extractor.type
    if extractor not in FEATURE_EXTRACTOR_TYPES:
        close = difflib.get_close_matches(extractor, FEATURE_EXTRACTOR_TYPES, n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        problems.add(
            f"{path}.feature_extractor.type",
            f'unknown feature extractor "{extractor}"; use one of '
            f"{', '.join(FEATURE_EXTRACTOR_TYPES)}.{hint}",
        )
    for index, factor in enumerate(model.pooling_factors):
        if factor <= 0:
            problems.add(f"{path}.pooling_factors[{index}]", f"must be positive, got {factor}.")
    if kind == "icnet":
        for name in (
            "main_branch_loss_weight",
            "second_branch_loss_weight",
            "first_branch_loss_weight",
        ):
            if getattr(model, name) < 0:
                problems.add(f"{path}.{name}", f"must be >= 0, got {getattr(model, name)}.")
    loss = model.loss
    if loss.ignore_label > 255:
        problems.add(f"{path}.loss.ignore_label", f"must be in [0, 255], got {loss.ignore_label}.")
    if loss.class_weights:
        if model.HasField("num_classes") and len(loss.class_weights) != model.num_classes:
            problems.add(
                f"{path}.loss.class_weights",
                f"has {len(loss.class_weights)} values but num_classes is {model.num_classes}; "
                "give one weight per class.",
            )
        if any(weight < 0 for weight in loss.class_weights):
            problems.add(f"{path}.loss.class_weights", "must all be >= 0.")
    batch_norm = model.hyperparams.batch_norm
    if not 0.0 < batch_norm.decay < 1.0:
        problems.add(
            f"{path}.hyperparams.batch_norm.decay", f"must be in (0, 1), got {batch_norm.decay}."
        )
    if batch_norm.epsilon <= 0:
        problems.add(
            f"{path}.hyperparams.batch_norm.epsilon", f"must be positive, got {batch_norm.epsilon}."
        )
    regularizer = model.hyperparams.regularizer
    kind_reg = regularizer.WhichOneof("regularizer_oneof")
    if kind_reg and getattr(regularizer, kind_reg).weight < 0:
        problems.add(f"{path}.hyperparams.regularizer.{kind_reg}.weight", "must be >= 0.")


def _validate_preprocessing(problems: _Problems, train_config: Message) -> None:
    for index, step in enumerate(train_config.preprocessor_step):
        path = f"train_config.preprocessor_step[{index}]"
        kind = step.WhichOneof("preprocessing_step")
        if kind is None:
            problems.add(path, "is empty; give one step, e.g. random_horizontal_flip {}.")
            continue
        options = getattr(step, kind)
        path = f"{path}.{kind}"
        if kind == "random_image_crop":
            _positive(problems, options, path, "crop_height", "crop_width")
        elif kind == "set_fixed_image_size":
            _positive(problems, options, path, "fixed_height", "fixed_width")
        elif kind == "random_image_scale":
            low, high = options.min_scale_ratio, options.max_scale_ratio
            if low <= 0 or high < low:
                problems.add(
                    path,
                    f"needs 0 < min_scale_ratio <= max_scale_ratio, got {low} and {high}.",
                )
        elif kind == "aspect_ratio_image_resize":
            low, high = options.min_dimension, options.max_dimension
            if low <= 0 or high < low:
                problems.add(
                    path, f"needs 0 < min_dimension <= max_dimension, got {low} and {high}."
                )


def _validate_learning_rate(problems: _Problems, rate: Message, path: str) -> None:
    kind = rate.WhichOneof("learning_rate")
    if kind is None:
        problems.add(path, "is required, e.g. learning_rate { constant_learning_rate { } }.")
        return
    options = getattr(rate, kind)
    path = f"{path}.{kind}"
    value_name = "learning_rate" if kind == "constant_learning_rate" else "initial_learning_rate"
    if getattr(options, value_name) <= 0:
        problems.add(f"{path}.{value_name}", "must be positive.")
    if kind != "constant_learning_rate" and options.decay_steps == 0:
        problems.add(f"{path}.decay_steps", "must be positive.")
    if kind == "exponential_decay_learning_rate" and not 0 < options.decay_factor <= 1:
        problems.add(f"{path}.decay_factor", f"must be in (0, 1], got {options.decay_factor}.")


def _validate_train(problems: _Problems, config: pipeline_pb2.PipelineConfig) -> None:
    train = config.train_config
    if train.batch_size < 1:
        problems.add("train_config.batch_size", "must be at least 1.")
    _validate_preprocessing(problems, train)
    kind = train.optimizer.WhichOneof("optimizer")
    if kind is None:
        problems.add(
            "train_config.optimizer",
            "is required: momentum_optimizer { ... } or adam_optimizer { ... }.",
        )
    else:
        optimizer = getattr(train.optimizer, kind)
        _validate_learning_rate(
            problems, optimizer.learning_rate, f"train_config.optimizer.{kind}.learning_rate"
        )
        if kind == "momentum_optimizer" and not 0 <= optimizer.momentum_optimizer_value < 1:
            problems.add(
                f"train_config.optimizer.{kind}.momentum_optimizer_value", "must be in [0, 1)."
            )
    checkpoint, checkpoint_type = train.fine_tune_checkpoint, train.fine_tune_checkpoint_type
    if checkpoint and checkpoint_type not in FINE_TUNE_CHECKPOINT_TYPES:
        problems.add(
            "train_config.fine_tune_checkpoint_type",
            f'is "{checkpoint_type}"; with a fine_tune_checkpoint it must be one of '
            f"{', '.join(FINE_TUNE_CHECKPOINT_TYPES)}.",
        )
    if checkpoint_type and not checkpoint:
        problems.add(
            "train_config.fine_tune_checkpoint",
            f'is empty but fine_tune_checkpoint_type is "{checkpoint_type}"; set both or neither.',
        )


def _validate_input_reader(problems: _Problems, reader: Message, path: str) -> None:
    if not reader.tf_record_input_reader.input_path:
        problems.add(
            f"{path}.tf_record_input_reader.input_path",
            "is required: the TFRecord file(s) to read (see dataset_tools/).",
        )
    if reader.num_readers < 1:
        problems.add(f"{path}.num_readers", "must be at least 1.")
    if reader.shuffle and reader.shuffle_buffer < 1:
        problems.add(f"{path}.shuffle_buffer", "must be at least 1 when shuffle is true.")


def _validate_eval(problems: _Problems, config: pipeline_pb2.PipelineConfig) -> None:
    eval_input = config.eval_config.eval_input_type
    kind = eval_input.WhichOneof("eval_input_type_oneof")
    if kind is not None:
        _positive(
            problems,
            getattr(eval_input, kind),
            f"eval_config.eval_input_type.{kind}",
            "height",
            "width",
        )


def validate_pipeline_config(
    config: pipeline_pb2.PipelineConfig, source: str = "<config>", text: str | None = None
) -> None:
    """Checks the values of a parsed config; reports every problem at once.

    The model section is always required; the train, eval and input sections
    are checked when present (``train.py`` and ``eval.py`` require theirs).

    Args:
      config: the parsed (and overridden) config.
      source: the file name used in messages.
      text: the file's text, to point each problem at a line.

    Raises:
      ConfigError: listing every problem as ``file:line: field.path: reason``.
    """
    problems = _Problems(source, locate_fields(text) if text else {})
    _validate_model(problems, config)
    if config.HasField("train_config"):
        _validate_train(problems, config)
    for name in ("train_input_reader", "eval_input_reader"):
        if config.HasField(name):
            _validate_input_reader(problems, getattr(config, name), name)
    if config.HasField("eval_config"):
        _validate_eval(problems, config)
    if problems.messages:
        count = len(problems.messages)
        header = f"{source}: {count} invalid value{'s' if count > 1 else ''}:\n  "
        raise ConfigError(header + "\n  ".join(problems.messages))

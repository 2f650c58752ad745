"""Validation of a parsed pipeline config's values: the one place the rules live.

:func:`validate_pipeline_config` checks every value a builder relies on (class
counts, filter scale, crop sizes, scale ranges, learning rates, input paths,
...) and reports *every* problem at once as a :class:`ConfigError`, each as
``file:line: field.path: reason``. The builders trust a validated config and
do not repeat these rules; ``config_util.load_pipeline_config`` runs this check
on every config a script loads.

To add a rule, add it to the ``_validate_*`` function of its section (optimizer
and learning-rate rules: :mod:`builders.optimizer_rules`, which the optimizer
builder runs too) and give a test in ``tests/builders/test_config_validation.py``.
"""

from __future__ import annotations

import difflib
import re

from google.protobuf.message import Message

from builders import dataset_metadata_builder, optimizer_rules
from builders.config_errors import ConfigError
from builders.model_builder import ARCHITECTURE_KIND, model_config
from core.checkpoints.checkpoint_init import CHECKPOINT_TYPES
from models import ARCHITECTURES, BACKBONES
from protos import pipeline_pb2, preprocessor_pb2

# Single sources: the backbone registry (iterates its names) and checkpoint_init's types.
FEATURE_EXTRACTOR_TYPES = BACKBONES
FINE_TUNE_CHECKPOINT_TYPES = CHECKPOINT_TYPES


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
    try:
        kind, model = model_config(config)
    except ValueError:
        problems.add(
            "model", "is required: add model { icnet { ... } } or model { pspnet { ... } }."
        )
        return
    path = f"model.{kind}"
    if kind == ARCHITECTURE_KIND and model.name not in ARCHITECTURES:
        problems.add(f"{path}.name", ARCHITECTURES.unknown_message(model.name))
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
    # A registered architecture may have no backbone; the original's models always have one.
    if (extractor or kind != ARCHITECTURE_KIND) and extractor not in FEATURE_EXTRACTOR_TYPES:
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


PREPROCESSING_STEP_NAMES = tuple(
    field.name
    for field in preprocessor_pb2.PreprocessingStep.DESCRIPTOR.oneofs_by_name[
        "preprocessing_step"
    ].fields
)

# (channel field, the only value the decoder yields): the fields exist for
# compatibility with the original's configs, which always set 3 and 1.
_CHANNEL_DIMS = (
    ("images_channel_dim", 3, "RGB images"),
    ("labels_channel_dim", 1, "1-channel labels"),
)


def preprocessing_step_problems(step: preprocessor_pb2.PreprocessingStep) -> list[tuple[str, str]]:
    """The rules for one ``preprocessor_step``: the only place they are written.

    :func:`validate_pipeline_config` reports these with file and line;
    ``builders.preprocessor_builder`` runs them on steps that did not come
    through a loaded config (tests, benchmarks).

    Args:
      step: one ``PreprocessingStep`` message.

    Returns:
      ``(field path relative to the step, reason)`` pairs, empty for a valid step;
      the path is ``""`` for the step itself and each reason reads after its path
      (``"random_image_crop.crop_height", "must be > 0, got 0."``).
    """
    kind = step.WhichOneof("preprocessing_step")
    if kind is None:
        return [("", f"sets no step; set exactly one of: {', '.join(PREPROCESSING_STEP_NAMES)}.")]
    options = getattr(step, kind)
    found: list[tuple[str, str]] = []

    def positive(*names: str, required: bool = False) -> None:
        for name in names:
            value = getattr(options, name)
            if required and not options.HasField(name):
                found.append((f"{kind}.{name}", "is not set; it is required (a positive value)."))
            elif not value > 0:
                found.append((f"{kind}.{name}", f"must be > 0, got {value}."))

    def ordered(low: str, high: str) -> None:
        if getattr(options, low) > getattr(options, high):
            found.append(
                (
                    kind,
                    f"{low} ({getattr(options, low)}) must be <= {high} ({getattr(options, high)}).",
                )
            )

    if kind == "random_image_scale":
        positive("min_scale_ratio", "max_scale_ratio")
        ordered("min_scale_ratio", "max_scale_ratio")
    elif kind == "aspect_ratio_image_resize":
        positive("min_dimension", "max_dimension")
        ordered("min_dimension", "max_dimension")
    elif kind in ("random_image_crop", "set_fixed_image_size"):
        prefix = "crop" if kind == "random_image_crop" else "fixed"
        positive(f"{prefix}_height", f"{prefix}_width", required=True)
        for name, expected, why in _CHANNEL_DIMS:
            if getattr(options, name) != expected:
                found.append(
                    (f"{kind}.{name}", f"must be {expected} ({why}), got {getattr(options, name)}.")
                )
    return found


def _validate_preprocessing(problems: _Problems, train_config: Message) -> None:
    for index, step in enumerate(train_config.preprocessor_step):
        path = f"train_config.preprocessor_step[{index}]"
        for field, reason in preprocessing_step_problems(step):
            problems.add(f"{path}.{field}" if field else path, reason)


def _validate_train(problems: _Problems, config: pipeline_pb2.PipelineConfig) -> None:
    train = config.train_config
    if train.batch_size < 1:
        problems.add("train_config.batch_size", "must be at least 1.")
    _validate_preprocessing(problems, train)
    # The optimizer and learning-rate rules live in optimizer_rules (the builder runs them too).
    for field, reason in optimizer_rules.optimizer_problems(train.optimizer):
        path = f"train_config.optimizer.{field}" if field else "train_config.optimizer"
        problems.add(path, reason)
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
    dataset_metadata_builder.validate(config, problems.add)
    if problems.messages:
        count = len(problems.messages)
        header = f"{source}: {count} invalid value{'s' if count > 1 else ''}:\n  "
        raise ConfigError(header + "\n  ".join(problems.messages))

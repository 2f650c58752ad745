"""Label-map files: raw label values -> class ids, and optionally each class's name and colour.

One file serves two readers: ``dataset_tools/create_tfrecord_from_folders.py --label_map``
remaps the raw values of label images to class ids, and a config's
``dataset { label_map_path: "..." }`` takes the class names, colours and official label ids
from it (see ``docs/datasets.md``). Two formats:

**Text**, one line per raw value (``#`` starts a comment, except a ``#RRGGBB`` colour)::

    # raw  class  [name]          [colour]
    0      0      sky             70,130,180
    10     1      road            #804080
    20     2      traffic sign    220,220,0
    30     2
    255    255

``raw`` and ``class`` are integers in 0..255, separated by spaces, ``:``, ``,``, ``=`` or
``->``; class 255 is the ignore label. An optional name (may hold spaces) and colour
(``R,G,B`` or ``#RRGGBB``) *describe* the class; the raw value of that line is the class's
official label id (what ``--label_ids`` / ``--write_predictions_dir`` write). Lines without a
name only map more raw values (30 above) to a class.

**JSON**: either the flat ``{"raw": class, ...}`` object, or::

    {"name": "streets",
     "classes": [{"name": "sky", "color": [70, 130, 180], "label_id": 0}, ...],
     "label_map": {"0": 0, "10": 1}}

where class ids are positions in ``classes``, ``color`` (or ``colour``) is ``[r, g, b]`` or
``"#RRGGBB"``, and ``label_id`` and ``label_map`` are optional (without ``label_map`` each
class's ``label_id``, or its class id, maps to it).

Undescribed classes get ``class_<id>`` and a colour of the generic palette.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

from core.datasets.metadata import (
    DEFAULT_IGNORE_LABEL,
    Colour,
    DatasetMetadata,
    generic_palette,
)

_LINE = re.compile(r"^(-?\d+)\s*(?:->|[:,=]|\s)\s*(-?\d+)(?:\s+(.*))?$")
_COLOUR_AT_END = re.compile(r"(?:^|\s)(#[0-9a-fA-F]{6}|\d+\s*,\s*\d+\s*,\s*\d+)$")
# A '#' starts a comment unless it is a #RRGGBB colour.
_COMMENT = re.compile(r"#(?![0-9a-fA-F]{6}(?:\s|$))")
_CLASS_KEYS = {"name", "color", "colour", "label_id"}
_TOP_KEYS = {"name", "classes", "label_map"}


class LabelMapError(ValueError):
    """A malformed label-map file; the message names the file, the line or entry, and the fix."""


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    """What a label map says about one class (None: not given)."""

    name: str | None = None
    colour: Colour | None = None
    label_id: int | None = None


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """A parsed label-map file.

    Attributes:
      source: the file it came from (for messages).
      mapping: raw label value -> class id (255: ignore), both in 0..255.
      classes: class id -> its description, for the classes the file describes.
      name: the dataset name the file gives (JSON ``name``), else None.
    """

    source: str
    mapping: dict[int, int]
    classes: dict[int, ClassSpec] = dataclasses.field(default_factory=dict)
    name: str | None = None

    @property
    def num_classes(self) -> int:
        """One more than the largest class id (mapped or described), the ignore label aside."""
        ids = [c for c in (*self.mapping.values(), *self.classes) if c != DEFAULT_IGNORE_LABEL]
        return max(ids) + 1 if ids else 0

    def to_metadata(self, name: str | None = None) -> DatasetMetadata:
        """The dataset metadata of this map.

        Args:
          name: the dataset's name; default the file's own ``name``, else its base name.

        Raises:
          LabelMapError: no class, or label ids given for some classes only (and not the ids
            themselves).
        """
        count = self.num_classes
        if count == 0:
            raise LabelMapError(f"{self.source}: maps no raw value to a class below 255.")
        generic = generic_palette(count)
        names, palette, label_ids = [], [], []
        for index in range(count):
            spec = self.classes.get(index, ClassSpec())
            names.append(spec.name or f"class_{index}")
            palette.append(spec.colour or generic[index])
            label_ids.append(spec.label_id)
        given = [i for i in range(count) if label_ids[i] is not None]
        if all(label_ids[i] == i for i in given):
            ids = None  # class ids are the label ids: nothing to map
        elif len(given) < count:
            missing = [i for i in range(count) if label_ids[i] is None]
            raise LabelMapError(
                f"{self.source}: classes {missing} are not described, so they have no label id "
                "while others do; describe every class (name or colour) or none."
            )
        else:
            ids = tuple(label_ids)
        dataset_name = name or self.name or os.path.splitext(os.path.basename(self.source))[0]
        try:
            return DatasetMetadata(dataset_name, tuple(names), tuple(palette), label_ids=ids)
        except ValueError as error:
            raise LabelMapError(f"{self.source}: {error}") from None


def _parse_colour(value: Any, where: str) -> Colour:
    """``[r, g, b]``, ``"r,g,b"`` or ``"#rrggbb"`` -> an RGB triple in [0, 255]."""
    try:
        if isinstance(value, str) and value.startswith("#") and len(value) == 7:
            colour = tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))
        elif isinstance(value, str):
            colour = tuple(int(part) for part in value.split(","))
        else:
            colour = tuple(int(part) for part in value)
    except (TypeError, ValueError):
        colour = ()
    if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
        raise LabelMapError(
            f"{where}: colour {value!r} is not three integers in 0..255 (R,G,B or #RRGGBB)."
        )
    return colour  # type: ignore[return-value]


def _parse_text(text: str, source: str) -> LabelMap:
    mapping: dict[int, int] = {}
    classes: dict[int, ClassSpec] = {}
    described: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = _COMMENT.split(line, 1)[0].strip()
        if not line:
            continue
        where = f"{source}: line {number}"
        match = _LINE.match(line)
        if match is None:
            raise LabelMapError(
                f"{where}: expected 'raw_value class_id [name] [R,G,B]', got {line!r}"
            )
        raw, value = int(match.group(1)), int(match.group(2))
        _add(mapping, raw, value, where)
        rest = (match.group(3) or "").strip()
        if not rest:
            continue
        colour = None
        found = _COLOUR_AT_END.search(rest)
        if found:
            colour = _parse_colour(found.group(1).replace(" ", ""), where)
            rest = rest[: found.start()].strip()
        name = rest.strip("'\"") or None
        if value == DEFAULT_IGNORE_LABEL:
            raise LabelMapError(
                f"{where}: class 255 is the ignore label; it takes no name or colour."
            )
        if value in described:
            raise LabelMapError(
                f"{where}: class {value} is described twice (also on line {described[value]}); "
                "name it on one line and map further raw values with 'raw class' lines."
            )
        described[value] = number
        classes[value] = ClassSpec(name, colour, raw)
    return LabelMap(source, mapping, classes)


def _add(mapping: dict[int, int], raw: int, value: int, where: str) -> None:
    if not (0 <= raw <= 255 and 0 <= value <= 255):
        raise LabelMapError(f"{where}: {raw} -> {value}; both must be in 0..255")
    if raw in mapping:
        raise LabelMapError(f"{where}: raw value {raw} is mapped twice")
    mapping[raw] = value


def _flat(data: dict, source: str, what: str = "entry") -> dict[int, int]:
    mapping: dict[int, int] = {}
    for raw, value in data.items():
        where = f"{source}: {what} {raw!r}"
        try:
            _add(mapping, int(raw), int(value), where)
        except (TypeError, ValueError) as error:
            if isinstance(error, LabelMapError):
                raise
            raise LabelMapError(f"{where}: {value!r} is not an integer pair") from None
    return mapping


def _parse_json(text: str, source: str) -> LabelMap:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise LabelMapError(f"{source}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise LabelMapError(f'{source}: expected a JSON object {{"raw": class, ...}}')
    if "classes" not in data:
        return LabelMap(source, _flat(data, source))
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise LabelMapError(
            f"{source}: unknown keys {unknown}; the keys are 'name', 'classes' and 'label_map'."
        )
    if not isinstance(data["classes"], list):
        raise LabelMapError(f"{source}: 'classes' must be a list of {{'name': ...}} objects.")
    classes: dict[int, ClassSpec] = {}
    for index, entry in enumerate(data["classes"]):
        where = f"{source}: classes[{index}]"
        if not isinstance(entry, dict) or set(entry) - _CLASS_KEYS:
            raise LabelMapError(
                f"{where}: expected an object with keys {sorted(_CLASS_KEYS)}, got {entry!r}"
            )
        colour = entry.get("color", entry.get("colour"))
        label_id = entry.get("label_id")
        if label_id is not None and (not isinstance(label_id, int) or not 0 <= label_id <= 255):
            raise LabelMapError(f"{where}: label_id {label_id!r} must be an integer in 0..255")
        classes[index] = ClassSpec(
            str(entry["name"]) if entry.get("name") is not None else None,
            None if colour is None else _parse_colour(colour, where),
            label_id,
        )
    if not classes:
        raise LabelMapError(f"{source}: 'classes' is empty; list one object per class.")
    if "label_map" in data:
        if not isinstance(data["label_map"], dict):
            raise LabelMapError(f'{source}: label_map must be an object {{"raw": class}}')
        mapping = _flat(data["label_map"], source, "label_map entry")
    else:
        mapping = {}
        for index, spec in classes.items():
            where = f"{source}: classes[{index}]"
            _add(mapping, index if spec.label_id is None else spec.label_id, index, where)
    name = data.get("name")
    return LabelMap(source, mapping, classes, None if name is None else str(name))


def parse_label_map(text: str, source: str = "<label map>") -> LabelMap:
    """Parses the text of a label map (JSON when it starts with ``{``, else the text format).

    Raises:
      LabelMapError: a malformed file, a value outside 0..255, a raw value mapped twice, a class
        described twice, or an empty map; the message names ``source`` and the line or entry.
    """
    if text.lstrip().startswith("{"):
        label_map = _parse_json(text, source)
    else:
        label_map = _parse_text(text, source)
    if not label_map.mapping:
        raise LabelMapError(f"{source}: the label map is empty")
    return label_map


def load_label_map(path: str) -> LabelMap:
    """Reads a label-map file (see the module docstring for the formats).

    Raises:
      FileNotFoundError: no such file.
      LabelMapError: see :func:`parse_label_map`.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label map {path!r} does not exist")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.lower().endswith(".json") and not text.lstrip().startswith("{"):
        raise LabelMapError(f'{path}: expected a JSON object {{"raw": class, ...}}')
    return parse_label_map(text, path)


def format_label_map(metadata: DatasetMetadata) -> str:
    """The text-format label map of ``metadata`` (each class's label id, or id, maps to it)."""
    lines = ["# raw class name R,G,B"]
    for index, (name, colour) in enumerate(
        zip(metadata.class_names, metadata.palette, strict=True)
    ):
        if "#" in name:
            raise ValueError(f"class name {name!r}: the text format cannot hold '#'.")
        raw = index if metadata.label_ids is None else metadata.label_ids[index]
        lines.append(f"{raw} {index} {name} {','.join(str(v) for v in colour)}")
    return "\n".join(lines) + "\n"

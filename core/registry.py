"""Name -> object registries: how architectures, backbones, datasets and hooks are extended.

A registry maps the names a config uses to the code that implements them. Code registers
itself where it is defined, so adding an architecture or a dataset means writing one module and
one registration line, not editing if/else chains::

    ARCHITECTURES = Registry("architecture")

    @ARCHITECTURES.register("icnet")
    class ICNet(SegmentationModel): ...

    ARCHITECTURES.get("icnet")     # -> ICNet
    ARCHITECTURES.get("icnte")     # UnknownNameError: unknown architecture 'icnte'; known: ...

The registries themselves live beside what they register (``models.registry``,
``core.datasets``); this module only provides the mechanism.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that no registered entry has; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A named collection of registered objects (classes, factories or plain values).

    Args:
      kind: what the entries are, for messages ("architecture", "backbone", "dataset").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Registers ``obj`` under ``name``; without ``obj``, returns a decorator that does.

        Raises:
          ValueError: ``name`` is empty or already taken by another object.
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}.")

        def add(entry: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not entry:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered (by {_describe(existing)}); "
                    "choose another name."
                )
            self._entries[name] = entry
            return entry

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Removes ``name`` (for tests and interactive sessions); a missing name is ignored."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
          UnknownNameError: no such name; the message lists the known ones and the closest.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        """``unknown <kind> 'x'; known: a, b, c`` with a did-you-mean when one is close."""
        known = ", ".join(sorted(self._entries)) or "(none registered)"
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}; known {self.kind}s: {known}.{hint}"

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self.names())})"


def _describe(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{name}" if module else name

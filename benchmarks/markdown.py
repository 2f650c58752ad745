"""Formatting shared by the report's tables: units, cell states, Markdown tables."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.plan import FAILED, OK


def mib(count: int | None) -> str:
    """Bytes as MiB, or a dash."""
    return "—" if count is None else f"{count / 2**20:,.1f}"


def gib(count: int | None) -> str:
    """Bytes as GiB, or a dash."""
    return "—" if count is None else f"{count / 2**30:.2f}"


def ms(cell: dict) -> str:
    """``median (p25–p75)`` in ms."""
    return f"{cell['median_ms']:,.1f} ({cell['p25_ms']:,.1f}–{cell['p75_ms']:,.1f})"


def status_text(cell: dict | None) -> str | None:
    """The text of a cell that has no numbers: failed (with the reason) or not measured."""
    if cell is None:
        return "—"
    if cell["status"] == FAILED:
        return f"failed: {escape(cell['reason'])}"
    if cell["status"] != OK:
        return f"{cell['status']}: {escape(cell.get('reason', ''))}"
    return None


def escape(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in rows]
    return lines


def cells_under(document: dict, prefix: str) -> dict[str, dict]:
    """The cells whose key starts with ``prefix``, in run order."""
    return {key: cell for key, cell in document["cells"].items() if key.startswith(prefix)}

"""Markdown tables, the one format every report and command prints.

Hand-written (six lines) rather than tabulate: tabulate pads cells to column width, and the
compact ``| a | b |`` / ``|---|---|`` form is what reports, READMEs and tests already hold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``| h1 | h2 |`` + ``|---|---|`` + one line per row (cells as ``str``), newline-terminated."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

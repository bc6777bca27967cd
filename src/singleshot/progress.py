"""Progress and notes from long library calls, for a front end to render: the library never
prints. A call takes ``progress: Progress``; the default, :data:`SILENT`, ignores everything.
:class:`singleshot.app.progress.ConsoleProgress` draws a bar on a terminal and plain lines in
logs; a server or a cluster engine can count or forward the same events."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Receives the events of one or more tasks, one task at a time. Subclass and override."""

    def start(self, task: str, total: int | None = None, unit: str = "it") -> None:
        """A task begins; ``total`` steps of ``unit`` when known."""

    def advance(self, n: int = 1, status: str | None = None) -> None:
        """``n`` more steps are done; ``status``: a short state (e.g. the loss)."""

    def done(self) -> None:
        """The task ended (finished, failed or interrupted)."""

    def note(self, message: str) -> None:
        """A line for the user that is not an error: a skipped file, a resumed run."""

    def log(self, message: str) -> None:
        """A line of a long call's account (a trial's result), shown as it is."""


SILENT = Progress()


def track(items: Iterable[T], progress: Progress, task: str, total: int | None = None,
          unit: str = "it") -> Iterator[T]:
    """Yield ``items``, reporting one step each to ``progress``."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    progress.start(task, total, unit)
    try:
        for item in items:
            yield item
            progress.advance()
    finally:
        progress.done()


_default: Progress = SILENT


def set_default(progress: Progress) -> Progress:
    """Make ``progress`` what library calls given no ``progress`` report to (a front end sets its
    renderer at start and restores the previous one, returned here, at exit)."""
    global _default
    previous, _default = _default, progress
    return previous


def resolve(progress: Progress | None) -> Progress:
    """``progress``, or the default a front end set (:data:`SILENT` otherwise)."""
    return _default if progress is None else progress

"""Exceptions that carry a one-line message meant for the user.

A message names the library's own parameters, never a front end's spelling of them: it marks a
parameter as ``{opt:name}``, which ``str(err)`` shows as ``name`` (the keyword argument) and
:meth:`SingleshotError.render` as whatever the front end calls it (the CLI: ``--name-with-dashes``).
Front ends print that one line and exit with ``exit_code``; anything else that escapes is a bug
and keeps its traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_OPTION = re.compile(r"\{opt:([a-z0-9_-]+)\}")


class SingleshotError(Exception):
    """Base class: a user-facing problem with a clear one-line message."""

    exit_code = 1

    def render(self, option: Callable[[str], str] = lambda name: name) -> str:
        """The message with each ``{opt:name}`` spelled by ``option(name)``."""
        return _OPTION.sub(lambda m: option(m.group(1)), super().__str__())

    def __str__(self) -> str:
        return self.render()


class UsageError(SingleshotError):
    """The command was asked for something it cannot do (bad option, unknown model)."""

    exit_code = 2


class ImageError(SingleshotError):
    """An image could not be read or is not acceptable (corrupt, empty, too large)."""


class ModelError(SingleshotError):
    """A model or checkpoint file is missing, corrupt or does not follow a known contract
    (exit 2 in every command, like a usage error)."""

    exit_code = 2


class CheckpointError(ModelError):
    """A checkpoint could not be read, or was refused by the restricted unpickler."""


class DownloadError(SingleshotError):
    """A download failed (network error, size or checksum mismatch)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``timeout``, ``kill`` and process managers send), raised where Ctrl-C's
    KeyboardInterrupt would be, so every command ends the way it ends on Ctrl-C - finished
    work kept, a checkpoint saved, a run marked cut - and exits 143 (128 + SIGTERM) instead of
    130."""

    exit_code = 143


def is_terminated(err: BaseException | None) -> bool:
    """Whether an interruption came from SIGTERM (a :class:`Terminated`, or an exception that
    stands for one: ``terminated = True``)."""
    return isinstance(err, Terminated) or bool(getattr(err, "terminated", False))


def interrupt_code(err: BaseException | None) -> int:
    """The exit code of an interruption: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if is_terminated(err) else 130


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (a no-op elsewhere)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def terminated(signum, frame):
        # an exception raised inside a finaliser is printed and dropped ("Exception ignored
        # in ... __del__": seen when the signal met a DataLoader's teardown), and the command
        # would go on: the signal is sent again once the finaliser has returned
        f = frame
        while f is not None:
            if f.f_code.co_name == "__del__":
                import os

                threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()
                return
            f = f.f_back
        raise Terminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, terminated)

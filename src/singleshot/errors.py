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

"""Exceptions that carry a one-line message meant for the user.

The CLI prints ``str(err)`` of these and exits non-zero without a traceback; anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class SingleshotError(Exception):
    """Base class: a user-facing problem with a clear one-line message."""

    exit_code = 1


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

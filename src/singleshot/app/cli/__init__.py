"""The ``singleshot`` command line: one module per command, thin wrappers that parse options, call
the library and print what it returns (no logic of their own); what they share is in ``common``."""

import importlib

from .common import app

# Importing a command's module registers it; this order is the order of ``singleshot --help``.
COMMANDS = ("detect", "export", "eval", "demo", "quantize", "bench", "data", "train", "catalog",
            "serve", "verify", "video", "eval-video")
for _name in COMMANDS:
    importlib.import_module(f"{__name__}.{_name.replace('-', '_')}")


def main() -> None:
    app()

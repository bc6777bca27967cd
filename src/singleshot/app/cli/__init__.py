"""The ``singleshot`` command line: one module per command, thin wrappers that parse options, call
the library and print what it returns (no logic of their own); what they share is in ``common``."""

import importlib

from .common import app

# Importing a command's module registers it; this order is the order of ``singleshot --help``.
COMMANDS = ("detect", "export", "eval", "demo", "quantize", "bench", "data", "train", "catalog",
            "serve", "verify", "video", "eval-video", "mlperf")
for _name in COMMANDS:
    importlib.import_module(f"{__name__}.{_name.replace('-', '_')}")


def _summaries(typer_app) -> None:
    """``singleshot --help`` lists each command with its docstring's first sentence, whole
    (click would cut it at the terminal's width, mid-sentence)."""
    for info in typer_app.registered_commands:
        doc = " ".join((info.callback.__doc__ or "").split())
        if info.short_help is None and doc:
            info.short_help = doc.split(". ")[0].rstrip(".") + "."
    for group in typer_app.registered_groups:
        _summaries(group.typer_instance)


_summaries(app)


def main() -> None:
    from ...errors import raise_on_sigterm

    raise_on_sigterm()  # every command ends on SIGTERM as on Ctrl-C (exit 143)
    app()

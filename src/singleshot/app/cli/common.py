"""What every command shares: the typer app, --version, one-line errors and exit codes, renamed
options' aliases, optional-package checks, and the common option types."""

from __future__ import annotations

import sys
from functools import wraps
from typing import Annotated, Optional

import typer

from ...errors import SingleshotError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="SSD-ResNet34 (ONNX Model Zoo) detection, export, evaluation and more. "
                       "Exit codes: 0 done; 1 some inputs failed; 2 usage or model error.")


def _version(value: bool) -> None:
    if value:
        from ..._version import __version__

        print(f"singleshot {__version__}")
        raise typer.Exit()


@app.callback()
def _main(ctx: typer.Context,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """SSD-ResNet34 (ONNX Model Zoo) detection, export, evaluation and more. Exit codes: 0 done;
    1 some inputs failed; 2 usage or model error."""
    from ...progress import set_default
    from ..progress import ConsoleProgress

    previous = set_default(ConsoleProgress())  # library progress: a bar here, lines in logs
    ctx.call_on_close(lambda: set_default(previous))


def _alias(new, new_name: str, old, old_name: str):
    """A renamed option's value: the new spelling, or the old one (kept as a hidden alias so no
    script breaks); both given differently is a usage error."""
    if old is None:
        return new
    if new is not None and new != old:
        raise UsageError(f"{old_name} is the old name of {new_name}; give one of them")
    return old


def _require_extra(module: str, extra: str, what: str) -> None:
    """Fail at option parsing, not after the work, when an optional package is missing."""
    import importlib

    try:
        importlib.import_module(module)  # the work imports it anyway; a broken install shows too
    except ImportError:
        raise UsageError(f"{what} needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'singleshot[{extra}]'") from None


def flag(name: str) -> str:
    """A library parameter's command-line spelling: ``max_drop`` -> ``--max-drop``."""
    return "--" + name.replace("_", "-")


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def user_errors(fn):
    """Turn SingleshotError into a one-line message and its exit code (no traceback)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SingleshotError as err:
            _err(err.render(flag))
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None

    return wrapper


BackendOpt = Annotated[str, typer.Option("--backend", help="onnxruntime, openvino, torch (checkpoints) or auto (OpenVINO where installed).")]


PrecisionOpt = Annotated[str, typer.Option(help="auto (the runtime's default; OpenVINO: bf16 where the CPU has it), fp32 (or f32), or bf16 (OpenVINO only).")]


PreprocessOpt = Annotated[str, typer.Option(help="card (PIL + numpy, the reference) or fast (OpenCV resize, normalisation inside the graph).")]


StreamsOpt = Annotated[Optional[int], typer.Option(help="Inferences in flight at once (default: 1; the runtime's choice for throughput runs).")]


CONF_FOR_PEOPLE = 0.25  # what detect draws and returns by default; `--conf model`: the model's own


def _parse_conf(conf: str | None) -> float | None:
    """``--conf``: a number in [0, 1], or ``model`` for the model's own threshold (None)."""
    if conf is None or str(conf).lower() == "model":
        return None
    try:
        return float(conf)  # its range is checked with the other options (merge_options)
    except ValueError:
        raise UsageError(f"--conf must be a number from 0 to 1 or 'model', got {conf!r}") from None


EngineOpt = Annotated[str, typer.Option("--engine", help="local (this process) or ray (a Ray cluster: --address, --workers, --cpus-per-worker).")]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="--engine ray: the cluster's address (default: auto if a cluster runs here, else a local one for this run).")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", help="--engine ray: detector actors (default: as many as fit).")]
CpusPerWorkerOpt = Annotated[Optional[float], typer.Option("--cpus-per-worker", help="--engine ray: CPUs (and onnxruntime threads) per actor (default: a node's CPUs, or the cluster's split among --workers).")]


def ray_options(engine: str, address, workers: int, cpus_per_worker, batch: int):
    """``--engine``'s options -> RayOptions, or None for ``local``; usage errors up front."""
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, got {engine!r}")
    if engine == "local":
        given = [n for n, v in (("--address", address), ("--workers", workers),
                                ("--cpus-per-worker", cpus_per_worker)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to --engine ray")
        return None
    _require_extra("ray.data", "ray", "--engine ray")
    from ...cluster.engine import RayOptions

    opts = RayOptions(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                      batch=batch)
    opts.check()
    return opts


def cluster_summary(opts) -> str:
    """One line: where the time of a cluster run went (start and model load apart)."""
    t = opts.timings
    rate = t.get("images_per_s")
    line = (f"cluster: {opts.workers} worker(s) x {opts.cpus_per_worker:g} CPU(s), start "
            f"{t.get('cluster_start_s', 0):.1f} s, model load {t.get('model_load_s', 0):.1f} s "
            f"(per actor, in parallel), {t.get('images', 0)} image(s)")
    if rate:
        line += f" at {rate:.2f} images/s from the first call to the last result"
    if t.get("repeats"):
        line += f", {t['repeats']} repeated result(s) of retried batches dropped"
    return line

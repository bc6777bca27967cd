"""What every command shares: the typer app, --version, one-line errors and exit codes, renamed
options' aliases, optional-package checks, and the common option types."""

from __future__ import annotations

import os
import sys
from functools import wraps
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from ...core.limits import RANGES
from ...errors import SingleshotError, Terminated, UsageError, interrupt_code, is_terminated
from ...io.files import drop_empty_run_folders

try:  # typer 0.26 vendors click; earlier releases use click itself
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - typer < 0.26
    from click import exceptions as _click_errors


class OneLineErrors(TyperGroup):
    """The command group whose usage errors (bad option values, unknown options, missing
    arguments) are one line on stderr, ``error: ...``, exit 2 - like every other error here -
    instead of click's usage block."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_errors.NoArgsIsHelpError as err:
            err.show()  # a bare group or command: its help, as before
            sys.exit(err.exit_code)
        except _click_errors.ClickException as err:
            ctx = getattr(err, "ctx", None)
            where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            print(f"error: {err.format_message()}{where}", file=sys.stderr)
            sys.exit(err.exit_code)
        except _click_errors.Abort as err:
            cause = err.__cause__ or err.__context__
            print(f"error: {'terminated' if is_terminated(cause) else 'interrupted'}",
                  file=sys.stderr)
            sys.exit(interrupt_code(cause) if cause is not None else 130)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, cls=OneLineErrors,
                  help="SSD-ResNet34 (ONNX Model Zoo) detection, export, evaluation and more. "
                       "Exit codes: 0 done; 1 some inputs failed; 2 usage or model error; "
                       "130 interrupted.")


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
    1 some inputs failed; 2 usage or model error; 130 interrupted."""
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


def model_argument(argument: str | None, option: str | None) -> str:
    """A model given as the MODEL argument or as -m/--model (either, not both differently)."""
    if argument is not None and option is not None and argument != option:
        raise UsageError(f"give the model once: MODEL ({argument}) or -m/--model ({option})")
    model = argument if argument is not None else option
    if model is None:
        raise UsageError("give the model: MODEL or -m/--model")
    return model


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


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def claim_out(out, command: str, *, overwrite: bool = False, again: str = "set aside",
              inputs=()):
    """The command's output folder, claimed by the one guard (:mod:`singleshot.io.guard`)."""
    from ...io.guard import claim_output_folder

    return claim_output_folder(out, command, overwrite=overwrite, again=again, inputs=inputs,
                               note=_note)


def user_errors(fn):
    """Turn SingleshotError into a one-line message and its exit code (no traceback)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SingleshotError as err:
            drop_empty_run_folders()
            _err(err.render(flag))
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt as err:
            drop_empty_run_folders()
            word = "terminated" if is_terminated(err) else "interrupted"
            text = str(err) if str(err) and not isinstance(err, Terminated) else ""
            _err(f"{word}: {text}" if text else word)
            if getattr(err, "exit_at_once", False):
                # a thread that cannot be stopped is still running (LoadGen): an orderly exit
                # would wait on it or tear its objects down under it
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(interrupt_code(err))
            raise typer.Exit(interrupt_code(err)) from None

    return wrapper


class RangedNumber:
    """The parser of a numeric option whose range is the library's (:mod:`singleshot.core.limits`):
    the text is converted, the shared table decides (NaN, infinities and integers past int64
    included), and a bad value is typer's usage error naming the option as typed (exit 2)."""

    def __init__(self, key: str) -> None:
        self.key, self.range = key, RANGES[key]
        self.__name__ = "integer" if self.range.integer else "float"  # typer's metavar

    def __call__(self, value):
        if isinstance(value, str):
            try:
                value = int(value) if self.range.integer else float(value)
            except (TypeError, ValueError, OverflowError):
                raise typer.BadParameter(f"{value!r} is not {self.range.describe()}") from None
        problem = self.range.problem(value)
        if problem:
            raise typer.BadParameter(problem)
        return value


def ranged(key: str, *decls: str, help: str = "", **kw):
    """``typer.Option`` for a numeric option, its range read from the shared table under
    ``key`` and shown in ``--help``; every numeric option of every command is declared so."""
    r = RANGES[key]
    return typer.Option(*decls, parser=RangedNumber(key),
                        metavar="INTEGER" if r.integer else "FLOAT",
                        help=f"{help} [{r.describe()}]".strip(), **kw)


def _backends(value: str) -> str:
    """``--backend``: each name known and its extra installed, at option parsing."""
    from ...runtime.backends import resolve_backend

    if value is not None:
        for name in str(value).split(","):
            try:
                resolve_backend(name.strip())
            except UsageError as err:
                raise typer.BadParameter(str(err)) from None
    return value


BackendOpt = Annotated[str, typer.Option("--backend", callback=_backends, help="onnxruntime, openvino, torch (checkpoints) or auto (OpenVINO where installed).")]


PrecisionOpt = Annotated[str, typer.Option(help="auto (the runtime's default; OpenVINO: bf16 where the CPU has it), fp32 (or f32), or bf16 (OpenVINO only).")]


PreprocessOpt = Annotated[str, typer.Option(help="card (PIL + numpy, the reference) or fast (OpenCV resize, normalisation inside the graph).")]


StreamsOpt = Annotated[Optional[int], ranged("streams", help="Inferences in flight at once (default: 1; the runtime's choice for throughput runs).")]

ThreadsOpt = Annotated[Optional[int], ranged("threads", help="Intra-op threads of the runtime (default: the runtime's).")]

OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Start over in --out: what is there moves to OUT/previous-N/.")]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as one JSON document on stdout (messages go to stderr).")]


IouOpt = Annotated[Optional[float], ranged("iou", help="NMS IoU threshold (model's own: 0.5).")]

MaxDetOpt = Annotated[Optional[int], ranged("max_det", help="Detections per image at most (model's own: 200).")]

BatchOpt = Annotated[int, ranged("batch", help="Images per backend call (the graph must take batches: export --batch dynamic).")]

MaxPixelsOpt = Annotated[Optional[int], ranged("max_pixels", help="Refuse images with more pixels (default: 16384 x 16384).")]

ClassesOpt = Annotated[Optional[str], typer.Option("--classes", help="Keep only these classes: comma-separated category ids or names (as if the others scored zero before the per-image cap).")]


def parse_classes(classes: str | None) -> list[str] | None:
    """``--classes a,b,3`` -> ["a", "b", "3"] (checked against the model by the detector)."""
    if classes is None:
        return None
    items = [c.strip() for c in classes.split(",") if c.strip()]
    if not items:
        raise UsageError("--classes needs at least one category id or name")
    return items


def plural(n: int, noun: str) -> str:
    """``1 detection``, ``2 detections``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


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
WorkersOpt = Annotated[Optional[int], ranged("workers", "--workers", help="--engine ray: detector actors (default: as many as fit).")]
CpusPerWorkerOpt = Annotated[Optional[float], ranged("cpus_per_worker", "--cpus-per-worker", help="--engine ray: CPUs (and onnxruntime threads) per actor (default: a node's CPUs, or the cluster's split among --workers).")]


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

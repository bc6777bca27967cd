"""The CLI cannot be crashed: for every command, argument lists generated from its own declared
options (numbers at and past their bounds, zero, negative, huge, NaN, text where numbers go,
missing and empty paths, files of the wrong kind) run as real processes and exit 0, 1 or 2 -
never a traceback. The examples the issue lists are fixed cases; every numeric option must be
declared with its range (``ranged``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import broken_exif
from singleshot.app.cli import app
from singleshot.app.cli.common import RangedNumber
from singleshot.core.limits import RANGES

HERE = Path(__file__).resolve().parent.parent
EXAMPLES_PER_COMMAND = 25
TIMEOUT_S = 90

# Options whose valid values can mean a long run (counts, sizes, durations): only their
# refusal path is generated; valid runs use the small values pinned below.
REFUSE_ONLY = {"num_images", "num_frames", "num_videos", "frame_width", "frame_height",
               "iterations", "warmup", "epochs", "max_steps", "width", "requests", "seconds",
               "duration", "clients", "test_data", "max_trials", "threads", "streams",
               "instances", "workers", "cpus_per_worker", "reconnect", "max_queue", "limit",
               "eval_limit", "opset", "port", "max_pixels", "max_batch", "batch",
               "min_duration_s", "min_query_count", "performance_sample_count",
               "target_latency_ms", "target_qps"}
# Pinned so that a generated case with valid values stays short.
PINNED = {
    "bench": ["--iterations", "1", "--warmup", "0", "--no-throughput", "--backend", "onnxruntime"],
    "demo": ["--num-images", "1", "--no-compare"],
    "train": ["--epochs", "1", "--max-steps", "1", "--width", "0.125", "--batch", "2"],
    "data synth": ["--num-images", "2"],
    "data synth-video": ["--num-videos", "1", "--num-frames", "3", "--width", "64",
                         "--height", "64"],
    "quantize": ["--num-images", "1"],
    "export": ["--no-check"],
    "video": ["--no-video"],
    "mlperf": ["--quick"],
}
# Never started with valid values: a case for serve always carries one value out of range.
ALWAYS_REFUSE = {"serve"}


def _commands():
    group = typer.main.get_command(app)
    out = {}
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub, c in subs.items():
                out[f"{name} {sub}"] = c
        else:
            out[name] = cmd
    return out


COMMANDS = _commands()


def _range_key(param):
    func = getattr(param.type, "func", None)
    return func.key if isinstance(func, RangedNumber) else None


def test_every_numeric_option_has_a_declared_range():
    """Each INT/FLOAT option of every command is declared through ``ranged`` (one table)."""
    unranged = []
    for name, cmd in COMMANDS.items():
        for p in cmd.params:
            tname = getattr(p.type, "name", "")
            if _range_key(p) is None and tname in ("integer", "float", "integer range",
                                                    "float range"):
                unranged.append(f"{name} {p.opts[0]}")
    assert not unranged, unranged
    assert len(COMMANDS) >= 17


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """A fork server (tests/cli_fork_server.py) in a fresh interpreter."""
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "SINGLESHOT_HOME": str(home),
           "SINGLESHOT_MODELS_URL": "http://127.0.0.1:9/none",  # downloads fail at once
           "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen([sys.executable, str(HERE / "cli_fork_server.py")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"

    def run(args, cwd, timeout=TIMEOUT_S):
        proc.stdin.write(json.dumps({"args": [str(a) for a in args], "cwd": str(cwd),
                                     "timeout": timeout}) + "\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    yield run
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.fixture
def pool(tmp_path_factory):
    """Files of every kind the generated cases point options and arguments at (new for each
    test: a case with --overwrite may legitimately move some into previous-N/)."""
    from PIL import Image

    from singleshot.data.synth import write_dataset
    from singleshot.perf.bench import sample_image

    root = tmp_path_factory.mktemp("pool")
    (root / "empty").mkdir()
    (root / "imgs").mkdir()
    (root / "imgs" / "a.jpg").write_bytes(sample_image(320, 240))
    (root / "text.txt").write_text("hello\n")
    (root / "fake.jpg").write_text("not an image\n")
    (root / "fake.onnx").write_bytes(b"\x00garbage")
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    Image.new("RGB", (8, 8)).save(root / "tiny.png")
    write_dataset(root / "set", 2, seed=5, workers=1)
    (root / "ann.json").write_text((root / "set" / "annotations.json").read_text())
    (root / "bad.json").write_text("{not json")
    return {
        "paths": [root / "missing.onnx", "", root / "text.txt", root / "empty", root / "imgs",
                  root / "imgs" / "a.jpg", root / "fake.onnx", root / "fake.jpg",
                  root / "dangling.jpg", root / "set", root / "set" / "images", root / "ann.json",
                  root / "bad.json", "demo", "ssd-12", "http://127.0.0.1:9/x.jpg"],
        "strings": ["", "abc", "-1", "nan", "0", "model", "1%", "auto", "demo", "1,2",
                    "fp32", "onnxruntime", "card"],
        "root": root,
    }


def _numbers(key, refuse_only):
    r = RANGES[key]
    bad = ["nan", "inf", "-inf", "abc", "", "1e999", str(2**63), str(-2**63 - 1)]
    if r.lo is not None:
        lo = int(r.lo) if r.integer else r.lo
        bad += [str(lo - 1), str(lo) if r.lo_open else str(lo - 1)]
    if r.hi is not None:
        hi = int(r.hi) if r.integer else r.hi
        bad += [str(hi + 1)]
    if r.integer:
        bad += ["1.5"]
    good = []
    if r.lo is not None and not r.lo_open:
        good.append(str(int(r.lo) if r.integer else r.lo))
    if r.lo is not None and r.hi is not None and r.hi - r.lo >= 1:
        good.append(str(int(r.lo) + 1 if r.integer else (r.lo + min(r.hi, r.lo + 1)) / 2))
    return bad if refuse_only else bad + good


def _case(draw, name, cmd, pool):
    """One generated argument list for ``cmd``."""
    args, refused = [], False
    params = [p for p in cmd.params if p.name not in ("help",)]
    options = [p for p in params if getattr(p, "opts", None) and p.opts[0].startswith("-")]
    positionals = [p for p in params if p not in options]
    for p in positionals:
        if p.required or draw(st.booleans()):
            n = draw(st.integers(1, 2)) if p.nargs == -1 else 1
            args += [str(draw(st.sampled_from(pool["paths"]))) for _ in range(n)]
    chosen = draw(st.lists(st.sampled_from(options), min_size=1, max_size=3, unique_by=id))
    if name in ALWAYS_REFUSE:
        ranged = [p for p in options if _range_key(p)]
        forced = draw(st.sampled_from(ranged))
        chosen = [forced, *[p for p in chosen if p is not forced]]
    for k, p in enumerate(chosen):
        flag = p.opts[0]
        key = _range_key(p)
        if p.is_flag:
            args.append(flag)
        elif key is not None:
            refuse = name in ALWAYS_REFUSE and k == 0 or key in REFUSE_ONLY
            value = draw(st.sampled_from(_numbers(key, refuse)))
            refused |= refuse
            args += [flag, value]
        else:
            kind = "paths" if "path" in str(p.type).lower() or any(
                w in p.name for w in ("out", "images", "annotations", "data", "val", "calib",
                                      "results", "model", "init", "backbone", "tracks", "gt",
                                      "class")) else "strings"
            args += [flag, str(draw(st.sampled_from(pool[kind] + pool["paths"][:3])))]
    return [*name.split(), *args, *PINNED.get(name, [])]


def _check(res, args):
    assert res["code"] is not None, f"timed out: singleshot {' '.join(args)}"
    assert res["code"] in (0, 1, 2), \
        f"exit {res['code']}: singleshot {' '.join(args)}\n{res['stderr'][-3000:]}"
    assert "Traceback" not in res["stderr"], \
        f"traceback: singleshot {' '.join(args)}\n{res['stderr'][-3000:]}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_generated_arguments_never_crash(name, runner, pool, tmp_path_factory):
    cmd = COMMANDS[name]
    work = tmp_path_factory.mktemp("cwd")

    @settings(max_examples=EXAMPLES_PER_COMMAND, derandomize=True, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data):
        args = _case(data.draw, name, cmd, pool)
        _check(runner(args, work), args)

    case()


def _fixed_cases(pool):
    root = pool["root"]
    ckpt = root / "wrongkeys.pth"
    return [
        # (args, exit codes allowed, a fragment stderr must hold)
        (["data", "synth", "--seed", "-1", "-o", root / "o1"], {2}, "--seed"),
        (["data", "synth-video", "--seed", "-1", "-o", root / "o2"], {2}, "--seed"),
        (["train", "--batch", "0", "--data", root / "set", "-o", root / "o3"], {2}, "--batch"),
        (["train", "--eval-every", "0", "--val", root / "set", "--data", root / "set", "-o",
          root / "o4"], {2}, "--eval-every"),
        (["train", "--config", "500", "--data", root / "set", "-o", root / "o5"], {2}, "--config"),
        (["train", "--lr", "-1", "--data", root / "set", "-o", root / "o6"], {2}, "--lr"),
        (["train", "--weight-decay", "-1", "--data", root / "set", "-o", root / "o6"], {2},
         "--weight-decay"),
        (["train", "--workers", "-1", "--data", root / "set", "-o", root / "o6"], {2},
         "--workers"),
        (["train", "--epochs", "0", "--data", root / "set", "-o", root / "o6"], {2}, "--epochs"),
        (["train", "--epochs", "-1", "--data", root / "set", "-o", root / "o6"], {2}, "--epochs"),
        (["train", "--max-steps", "0", "--data", root / "set", "-o", root / "o6"], {2},
         "--max-steps"),
        (["train", "--width", "0", "--data", root / "set", "-o", root / "o6"], {2}, "--width"),
        (["train", "--width", "-1", "--data", root / "set", "-o", root / "o6"], {2}, "--width"),
        (["train", "--warmup", "-5", "--data", root / "set", "-o", root / "o6"], {2}, "--warmup"),
        (["export", ckpt, "-o", root / "o7.onnx"], {2}, "not an SSD-ResNet34"),
        (["export", root / "missing.pth", "-o", root / "o7.onnx"], {2}, "no such file"),
        (["export", ckpt, "-o", root / "o7.onnx", "--test-data", "-1"], {2}, "--test-data"),
        (["bench", "demo", "--images", root / "withlink", "--iterations", "1", "--warmup", "0",
          "--no-throughput", "--backend", "onnxruntime"], {1}, "dangling.jpg"),
        (["bench", "missing.onnx", "--backend", "onnxruntime"], {2}, "no such model file"),
        (["bench", "demo", "--streams", "0"], {2}, "--streams"),
        (["bench", "demo", "--duration", "-5"], {2}, "--duration"),
        (["bench", "--server", "http://127.0.0.1:9"], {2}, "nothing answers"),
        (["detect", root / "exif.jpg", "-o", root / "o8"], {0}, "EXIF"),
        (["detect", root / "imgs" / "a.jpg", "--max-det", str(2**63)], {2}, "--max-det"),
        (["detect", root / "imgs" / "a.jpg", "--streams", "0"], {2}, "--streams"),
        (["detect", root / "imgs" / "a.jpg", "--threads", "0"], {2}, "--threads"),
        (["detect", root / "imgs" / "a.jpg", "--threads", "-1"], {2}, "--threads"),
        (["detect", root / "imgs" / "a.jpg", "--engine", "ray", "--cpus-per-worker", "0"], {2},
         "--cpus-per-worker"),
        (["detect", "http://127.0.0.1:9/x.jpg"], {1}, "x.jpg"),
        (["detect", "s3://bucket/x.jpg", "-o", root / "o12"], {2}, "s3fs"),
        (["serve", "--threads", "-1"], {2}, "--threads"),
        (["serve", "--max-body-mb", "0"], {2}, "--max-body-mb"),
        (["info", root], {2}, "is a folder"),
        (["info", "ssd-12"], {0}, "not downloaded"),
        (["download", "demo", "--with-test-data"], {2}, "bundled"),
        (["eval", "--images", root / "ann.json", "--annotations", root / "ann.json", "-m",
          "demo", "-o", root / "o9"], {2}, "is a file"),
        (["quantize", "demo", "-o", root / "q.onnx", "--calib", root / "imgs", "--max-drop",
          "1%"], {2}, "--max-drop"),
        (["detect", root / "imgs" / "a.jpg", "--max-pixels", "0"], {2}, "--max-pixels"),
        (["detect", root / "imgs" / "a.jpg", "--max-pixels", "100"], {1}, "--max-pixels"),
        (["detect", root / "imgs" / "a.jpg", "--max-det", "1", "--conf", "0"], {0},
         ": 1 detection ("),
        (["detect", root / "imgs" / "a.jpg", "--only-classes", "nosuch"], {2}, "unknown class"),
        (["train", "--data", root / "badset", "-o", root / "o10", "--max-steps", "1", "--width",
          "0.125", "--batch", "1"], {0}, "skipped"),
        (["info", "-m", "demo"], {0}, "contract: zoo"),
        (["info", "demo", "-m", "ssd-12"], {2}, "give the model once"),
        (["verify", "-m", "demo"], {2}, "bundled"),
        (["verify", "ssd-12"], {1}, "ssd-12.tar.gz"),
        (["bench", "-m", "demo", "--iterations", "1", "--warmup", "0", "--no-throughput",
          "--backend", "onnxruntime", "--json"], {0}, '"results"'),
        (["data", "synth", "-o", root / "o11", "--num-images", "1", "--json"], {0}, '"images": 1'),
        (["eval-video", "--tracks", root, "--gt", root, "--classes", "a,b"], {2}, "sequence"),
    ]


def test_the_listed_examples(runner, pool, tmp_path):
    import torch
    from PIL import Image

    root = pool["root"]
    torch.save({"model": {"foo.weight": torch.zeros(3)}}, root / "wrongkeys.pth")
    (root / "withlink").mkdir(exist_ok=True)
    (root / "withlink" / "a.jpg").write_bytes((root / "imgs" / "a.jpg").read_bytes())
    if not (root / "withlink" / "dangling.jpg").is_symlink():
        (root / "withlink" / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    import shutil  # a dataset with a text file named .jpg among its images

    shutil.copytree(root / "set", root / "badset")
    victim = sorted((root / "badset" / "images").iterdir())[0]
    victim.write_text("not an image\n")
    # EXIF with an orientation tag beside ImageWidth stored as UNDEFINED (PIL's
    # exif_transpose raises struct.error on it)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(root / "exif.jpg", exif=broken_exif())
    failures = []
    for args, codes, fragment in _fixed_cases(pool):
        res = runner(args, tmp_path)
        ok = res["code"] in codes and "Traceback" not in res["stderr"] and \
            fragment in res["stderr"] + res["stdout"]
        if not ok:
            failures.append(f"singleshot {' '.join(map(str, args))}: exit {res['code']}, "
                            f"stderr {res['stderr'][-600:]!r}")
    assert not failures, "\n".join(failures)


def test_every_option_says_what_it_does_and_summaries_are_whole():
    for name, cmd in COMMANDS.items():
        for p in cmd.params:
            if getattr(p, "hidden", False) or p.name == "help":
                continue
            text = getattr(p, "help", None) if p.param_type_name == "option" else \
                getattr(p, "help", None) or "argument"
            assert text and text.strip(), f"{name} {p.opts[0]} has no help"
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["--help"], terminal_width=100)
    listing = res.stdout.split("Commands:")[1]
    assert res.exit_code == 0 and "..." not in listing, listing


def test_every_option_a_message_names_exists():
    """``{opt:name}`` in a library message is shown as ``--name`` on the command line: each such
    name must be an option of some command (no message names an option nobody can type)."""
    import re

    from singleshot.app.cli.common import flag

    typed = {o for cmd in COMMANDS.values() for p in cmd.params for o in getattr(p, "opts", [])}
    src = Path(__file__).resolve().parents[2] / "src" / "singleshot"
    named = {m for f in src.rglob("*.py") for m in re.findall(r"\{opt:([a-z0-9_-]+)\}",
                                                                f.read_text())}
    assert named and {flag(n) for n in named} <= typed, sorted({flag(n) for n in named} - typed)

"""SIGTERM (what `timeout`, `kill` and process managers send) to every long command, mid-work
(issue 35): it ends as on Ctrl-C - one line, no traceback, exit 143 - and keeps what it had
finished (journal lines whole, a training checkpoint at the step it stopped, the run marked
cut)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import write_video
from singleshot.app.cli import app

EXE = str(Path(sys.executable).with_name("singleshot"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A generated set (16 scenes), a folder of 1,500 links to its images (work that cannot
    finish before the signal), annotations for that folder, and a 40 s video."""
    root = tmp_path_factory.mktemp("sigterm")
    res = CliRunner().invoke(app, ["data", "synth", "-o", str(root / "set"), "--num-images", "16",
                                   "--seed", "2"])
    assert res.exit_code == 0, res.output
    doc = json.loads((root / "set" / "annotations.json").read_text())
    many = root / "many"
    many.mkdir()
    images, anns = [], []
    for k in range(1500):
        src = doc["images"][k % 16]
        name = f"{k:05d}.jpg"
        os.link(root / "set" / "images" / src["file_name"], many / name)
        images.append(dict(src, id=k + 1, file_name=name))
        anns += [dict(a, id=len(anns) + 1 + j, image_id=k + 1) for j, a in
                 enumerate(x for x in doc["annotations"] if x["image_id"] == src["id"])]
    (root / "many.json").write_text(json.dumps(dict(doc, images=images, annotations=anns)))
    write_video(root / "clip.mp4", n_frames=1000, fps=25, size=(320, 240))
    return root


class Run:
    """A command in its own process; its stderr collected as it comes."""

    def __init__(self, *args, cwd=None):
        self.proc = subprocess.Popen([EXE, *map(str, args)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=cwd)
        self.err: list[str] = []
        self.out: list[str] = []
        for stream, sink in ((self.proc.stderr, self.err), (self.proc.stdout, self.out)):
            threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")),
                             daemon=True).start()

    def terminate_when(self, ready, timeout_s: float = 120.0) -> tuple[int, str]:
        deadline = time.monotonic() + timeout_s
        while not ready(self) and time.monotonic() < deadline:
            assert self.proc.poll() is None, "".join(self.err)
            time.sleep(0.1)
        assert self.proc.poll() is None, "finished before the signal: give it more work"
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        time.sleep(0.2)
        return code, "".join(self.err)


def _check(code: int, err: str) -> None:
    assert code == 143, err
    assert "Traceback" not in err, err
    assert "terminated" in err, err


def test_detect_keeps_whole_lines_and_resumes(inputs, tmp_path):
    out = tmp_path / "run"
    run = Run("detect", inputs / "many", "-o", out)
    journal = out / "detections.jsonl"
    code, err = run.terminate_when(lambda r: journal.is_file() and journal.stat().st_size > 1000)
    _check(code, err)
    lines = journal.read_text().splitlines()
    assert lines and all(json.loads(line) for line in lines)  # every line whole
    again = Run("detect", inputs / "many", "-o", out)
    code, err = again.terminate_when(lambda r: any("resuming" in line for line in r.err))
    _check(code, err)


def test_eval(inputs, tmp_path):
    run = Run("eval", "-m", "demo", "--images", inputs / "many", "--annotations",
              inputs / "many.json", "-o", tmp_path / "ev")
    _check(*run.terminate_when(lambda r: any((tmp_path / "ev").rglob("*.jsonl"))))


def test_train_saves_the_step_it_stopped_at(inputs, tmp_path):
    out = tmp_path / "train"
    run = Run("train", "--data", inputs / "set", "--epochs", "200", "--batch", "4", "--width",
              "0.125", "--config", "300", "-o", out, "--eval-limit", "2")
    code, err = run.terminate_when(lambda r: (out / "results.csv").is_file())
    _check(code, err)
    assert "--resume" in err and (out / "last.pt").is_file()


def test_train_on_two_processes(inputs, tmp_path):
    out = tmp_path / "train2"
    run = Run("train", "--data", inputs / "set", "--epochs", "200", "--batch", "4", "--width",
              "0.125", "--config", "300", "-o", out, "--nproc", "2", "--freeze-bn", "--eval-limit", "2")
    code, err = run.terminate_when(lambda r: (out / "results.csv").is_file(), timeout_s=240)
    _check(code, err)
    assert (out / "last.pt").is_file()


def test_video_marks_the_run_cut(inputs, tmp_path):
    out = tmp_path / "video"
    run = Run("video", inputs / "clip.mp4", "-o", out)
    code, err = run.terminate_when(lambda r: any(out.glob("*.jsonl")) and any(
        p.stat().st_size > 0 for p in out.glob("*.jsonl")))
    _check(code, err)


def _handling(run: Run, then_s: float = 2.0) -> bool:
    """The command catches SIGTERM (its handler is installed once Python has imported it; a
    signal before that ends the process as the system's default does), since ``then_s``."""
    status = Path(f"/proc/{run.proc.pid}/status").read_text()
    caught = int(status.split("SigCgt:")[1].split()[0], 16) & (1 << (signal.SIGTERM - 1))
    if caught and not hasattr(run, "since"):
        run.since = time.monotonic()
    return bool(caught) and time.monotonic() - run.since > then_s


@pytest.mark.parametrize("args", [
    ["quantize", "demo", "-o", "{tmp}/q.onnx", "--calib", "{many}", "--num-images", "1500"],
    ["bench", "demo", "--iterations", "1000000", "--images", "{set}/images"],
])
def test_quantize_and_bench(inputs, tmp_path, args):
    filled = [a.format(tmp=tmp_path, many=inputs / "many", set=inputs / "set") for a in args]
    run = Run(*filled)
    code, err = run.terminate_when(_handling)
    _check(code, err)
    assert not (tmp_path / "q.onnx").exists() or (tmp_path / "q.onnx").stat().st_size > 0


def test_mlperf_marks_the_run_cut(inputs, tmp_path):
    out = tmp_path / "mlperf"
    run = Run("mlperf", "-m", "demo", "--images", inputs / "set" / "images", "--annotations",
              inputs / "set" / "annotations.json", "--scenario", "SingleStream", "--mode",
              "performance", "-o", out)
    code, err = run.terminate_when(lambda r: any(out.rglob("mlperf_log_detail.txt")))
    _check(code, err)

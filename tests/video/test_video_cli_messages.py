"""`singleshot video` and `eval-video` say the truth: a --start past the end is an error, an
earlier run is not silently overwritten, the bar counts the range, class names must fit."""

import json

from typer.testing import CliRunner

from singleshot.app.cli import app


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def test_start_past_the_end_is_an_error(clip, tmp_path):
    code, _, stderr = run("video", clip, "--start", "10", "-o", tmp_path / "v", "--no-video")
    assert code == 1 and "past the end" in stderr and "--start" in stderr


def test_a_second_run_into_the_same_out_needs_overwrite(clip, tmp_path):
    out = tmp_path / "v"
    assert run("video", clip, "-o", out, "--no-video", "--end", "0.5")[0] == 0
    code, _, stderr = run("video", clip, "-o", out, "--no-video", "--end", "0.5")
    assert code == 2 and "--overwrite" in stderr
    code, _, stderr = run("video", clip, "-o", out, "--no-video", "--end", "0.5", "--overwrite")
    assert code == 0 and (out / "previous-1" / "summary.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["error"] is None and summary["frames"]["decoded"] == 5


def test_eval_video_reads_a_single_source_run_and_checks_class_names(clip, tmp_path):
    from singleshot.data.synth_video import write_sequence

    gt = tmp_path / "gt"
    write_sequence(gt, "seq", 1, 10, (160, 128), 10)
    out = tmp_path / "run"
    assert run("video", gt / "seq" / "seq.mp4", "-o", out, "--no-video")[0] == 0
    assert (out / "tracks.txt").is_file()
    code, stdout, stderr = run("eval-video", "--tracks", out, "--gt", gt, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["overall"]["GT_IDs"] > 0
    code, _, stderr = run("eval-video", "--tracks", out, "--gt", gt, "--class-names", "a,b")
    assert code == 2 and "--class-names" in stderr


class _Stop:
    """A progress that records the total and stops the run with Ctrl-C after ``after`` frames."""

    def __init__(self, after=None):
        self.after, self.seen, self.total = after, 0, None

    def start(self, label, total=None, unit=""):
        self.total = total

    def advance(self, n=1, text=None):
        self.seen += n
        if self.after is not None and self.seen >= self.after:
            raise KeyboardInterrupt

    def done(self):
        pass

    def note(self, message):
        pass

    def log(self, message):
        pass


def test_the_bar_counts_the_range_and_ctrl_c_marks_the_summary(clip, tmp_path):
    import pytest

    from singleshot.runtime.detector import Detector
    from singleshot.video.run import VideoOptions, process_video

    det = Detector("demo")
    bar = _Stop()
    process_video(str(clip), det, tmp_path / "a", VideoOptions(start=1.0, end=1.5, annotate=False),
                  progress=bar)
    assert bar.total == 5  # 0.5 s at 10 fps, not the clip's 30 frames
    with pytest.raises(KeyboardInterrupt):
        process_video(str(clip), det, tmp_path / "b", VideoOptions(annotate=False),
                      progress=_Stop(after=4))
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["error"] == "interrupted"
    lines = (tmp_path / "b" / "detections.jsonl").read_text().splitlines()
    assert len(lines) >= 4  # every finished frame kept

"""`singleshot video` end to end on real H.264 files and a real MPEG-TS stream on 127.0.0.1:
frame accounting, the JSONL schema, saved frames that `detect` agrees with, damaged and
non-video inputs, the live mode's bounded latency, and reconnects."""

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import write_video
from singleshot.app.cli import app


def run(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def lines(folder):
    return [json.loads(line) for line in (folder / "detections.jsonl").read_text().splitlines()]


def without_ids(dets):
    return [{k: v for k, v in d.items() if k != "track_id"} for d in dets]


def test_saved_frames_give_the_same_detections_and_schema(clip, tmp_path):
    from singleshot.video.source import VideoSource

    out = tmp_path / "run"
    code, stdout, err = run("video", clip, "-o", out, "--save-frames", "--json")
    assert code == 0, err
    doc = json.loads(stdout)
    (summary,) = doc["videos"]
    assert summary["frames"] == {"decoded": 30, "processed": 30, "skipped_stride": 0,
                                 "dropped_live": 0}
    assert (summary["fps"], summary["width"], summary["height"]) == (10.0, 160, 128)
    got = lines(out)
    assert [g["frame"] for g in got] == list(range(30))
    assert [g["pts"] for g in got] == pytest.approx([k / 10 for k in range(30)])
    for g in got:
        assert set(g) == {"frame", "pts", "detections"}
        for d in g["detections"]:
            assert set(d) == {"box", "score", "category_id", "category", "track_id"}
            assert d["track_id"] is None or (isinstance(d["track_id"], int) and d["track_id"] > 0)
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= 160 and 0 <= y1 <= y2 <= 128 and 0.25 <= d["score"] <= 1
    assert sum(len(g["detections"]) for g in got) > 30
    code, stdout, err = run("detect", out / "frames", "--json")
    assert code == 0, err
    images = json.loads(stdout)["images"]
    untracked = [without_ids(g["detections"]) for g in got]
    assert [im["detections"] for im in images] == untracked
    # tracking changes no detection: --no-track writes the same ones, without ids
    code, _, err = run("video", clip, "-o", tmp_path / "plain", "--no-track", "--no-video")
    assert code == 0, err
    assert [g["detections"] for g in lines(tmp_path / "plain")] == untracked
    assert not (tmp_path / "plain" / "tracks.txt").exists()
    assert (out / "tracks.txt").read_text().count("\n") == sum(
        d["track_id"] is not None for g in got for d in g["detections"])
    annotated = VideoSource(str(out / "annotated.mp4"))
    assert (annotated.fps, annotated.width, annotated.height) == (10.0, 160, 128)
    assert sum(1 for _ in annotated.frames()) == 30
    assert json.loads((out / "summary.json").read_text())["frames"]["decoded"] == 30


def test_stride_start_end_account_for_every_frame(clip, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run("video", clip, "-o", out, "--stride", "3", "--start", "1.0",
                            "--end", "2.5", "--json", "--no-video")
    assert code == 0, err
    f = json.loads(stdout)["videos"][0]["frames"]
    assert f == {"decoded": 15, "processed": 5, "skipped_stride": 10, "dropped_live": 0}
    got = lines(out)
    assert [g["frame"] for g in got] == [10, 13, 16, 19, 22]  # indices in the source: gaps
    assert [g["pts"] for g in got] == pytest.approx([1.0, 1.3, 1.6, 1.9, 2.2])
    full = tmp_path / "full"
    run("video", clip, "-o", full, "--no-video")
    by_frame = {g["frame"]: without_ids(g["detections"]) for g in lines(full)}
    assert all(without_ids(g["detections"]) == by_frame[g["frame"]] for g in got)  # seek found them


def test_truncated_file_keeps_the_frames_before_the_damage(tmp_path):
    good = write_video(tmp_path / "good.mp4", n_frames=40)
    cut = tmp_path / "cut.mp4"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) * 8 // 10])  # the keyframe and some frames after it
    code, stdout, err = run("video", cut, "-o", tmp_path / "run", "--json")
    assert code == 1 and "Traceback" not in err
    summary = json.loads(stdout)["videos"][0]
    assert 5 <= summary["frames"]["decoded"] < 40
    assert "truncated or damaged" in summary["error"] and "of 40 frames" in summary["error"]
    assert len(lines(tmp_path / "run")) == summary["frames"]["processed"]
    assert (tmp_path / "run" / "annotated.mp4").stat().st_size > 0


def test_non_video_input_is_one_line_and_the_others_finish(clip, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.mp4").write_text("not a video at all\n")
    (folder / "clip.mp4").write_bytes(clip.read_bytes())
    code, stdout, err = run("video", folder, tmp_path / "missing.mkv", "-o", tmp_path / "out",
                            "--no-video")
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and any("notes.mp4: cannot open as video" in e for e in errors)
    assert any("missing.mkv: no such file" in e for e in errors)
    assert len(lines(tmp_path / "out" / "clip")) == 30
    assert "2 of 3 source(s) failed" in err


def test_usage_errors(clip, tmp_path):
    for args, message in [(["--stride", "0"], "--stride"),
                          (["--start", "2", "--end", "1"], "--end"),
                          (["--batch", "4"], "batch"), (["--live", "--batch", "2"], "--live")]:
        code, _, err = run("video", clip, "-o", tmp_path / "o", *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)


class SlowModel:
    """A real detector that takes 60 ms a frame: a model slower than the source."""

    def __init__(self, det):
        self.det = det

    def __getattr__(self, name):
        return getattr(self.det, name)

    def detect_array(self, rgb, **options):
        time.sleep(0.06)
        return self.det.detect_array(rgb, **options)


def scene_stream(fps, seconds, **kwargs):
    from singleshot.data.synth_video import panned
    from singleshot.video.stream_server import StreamServer

    return StreamServer(panned(2, (160, 128), 200), fps, (160, 128), seconds=seconds, **kwargs)


def test_live_stream_latency_stays_bounded_and_drops_are_counted():
    from singleshot.runtime.detector import Detector
    from singleshot.video import FrameCounts, frames

    server = scene_stream(50, 4)
    url = server.start()
    counts = FrameCounts()
    latency = []
    for r in frames(url, detector=SlowModel(Detector("demo")), live=True, counts=counts):
        latency.append(time.time() - server.sent[r.index])
    server.stop()
    assert counts.dropped_live > 50 and counts.processed > 20
    assert counts.decoded == counts.processed + counts.dropped_live
    # bounded: no queue grows - the last results are as fresh as the early ones
    late = latency[len(latency) // 2:]
    assert max(late) < 0.5, late
    assert np.median(late) < np.median(latency[:len(latency) // 2]) + 0.1


def test_a_dropping_stream_is_reopened(tmp_path):
    server = scene_stream(50, 60, drop_after=25)
    url = server.start()
    code, stdout, err = run("video", url, "-o", tmp_path / "run", "--reconnect", "2", "--json",
                            "--no-video")
    server.stop()
    summary = json.loads(stdout)["videos"][0]
    assert server.connections == 3
    assert 3 * 15 <= summary["frames"]["decoded"] <= 75
    assert code == 1 and "the stream dropped after" in summary["error"]
    assert "2 reconnect(s) tried" in summary["error"]
    frames_seen = [g["frame"] for g in lines(tmp_path / "run")]
    assert frames_seen == sorted(set(frames_seen))  # indices keep counting across reconnects


def test_python_frames_with_tracking(clip):
    from singleshot.video import FrameCounts, frames

    counts = FrameCounts()
    got = list(frames(str(clip), conf=0.25, track=True, stride=2, counts=counts))
    assert [r.index for r in got] == list(range(0, 30, 2))
    assert counts.to_dict() == {"decoded": 30, "processed": 15, "skipped_stride": 15,
                                "dropped_live": 0}
    assert all(len(r.track_ids) == len(r.detections) for r in got)
    assert all(float(s) >= 0.25 for r in got for s in r.detections.scores)
    ids = [i for r in got for i in r.track_ids if i is not None]
    assert ids and len(set(ids)) < len(ids)  # ids persist across frames


def test_batches_of_frames_give_the_frames_own_detections(clip, tiny_raw_onnx, tmp_path):
    """--batch 4 on a graph that takes batches: one backend call per 4 frames, same results
    (30 frames: the last call has 2), every frame accounted for."""
    outs = {}
    for b in (1, 4):
        code, stdout, err = run("video", clip, "-m", tiny_raw_onnx, "-o", tmp_path / str(b),
                                "--batch", b, "--no-track", "--no-video", "--conf", "0.05",
                                "--stride", "2", "--json")
        assert code == 0, err
        assert json.loads(stdout)["videos"][0]["frames"]["processed"] == 15
        outs[b] = lines(tmp_path / str(b))
    assert [g["frame"] for g in outs[4]] == [g["frame"] for g in outs[1]]
    for a, b in zip(outs[1], outs[4]):
        assert len(a["detections"]) == len(b["detections"])
        for x, y in zip(a["detections"], b["detections"]):
            assert x["category_id"] == y["category_id"] and abs(x["score"] - y["score"]) < 1e-3
            assert np.allclose(x["box"], y["box"], atol=0.05)
    assert sum(len(g["detections"]) for g in outs[1]) > 0

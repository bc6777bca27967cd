"""`data synth-video`: the promised properties hold with the defaults, the files are in the
MOTChallenge layout, and the video matches its ground truth."""

import configparser
import json

import pytest
from typer.testing import CliRunner

from singleshot.app.cli import app

pytest.importorskip("av")  # an extra of `all`: CI installs it, so this never skips there


def test_default_sequence_has_what_it_promises(tmp_path):
    """One full default video (640x480, 25 fps, 300 frames)."""
    from singleshot.data.synth_video import write_sequence
    from singleshot.eval.mot import read_mot
    from singleshot.video.source import VideoSource

    stats = write_sequence(tmp_path, "synth-s3", 3)  # what `data synth-video` runs per video
    seq = tmp_path / "synth-s3"
    info = configparser.ConfigParser()
    info.read(seq / "seqinfo.ini")
    assert dict(info["Sequence"]) == {"name": "synth-s3", "imdir": "img1", "framerate": "25",
                                      "seqlength": "300", "imwidth": "640", "imheight": "480",
                                      "imext": ".jpg"}
    assert stats["min_objects"] >= 6 and stats["occluded_fraction"] >= 0.3
    assert stats["same_class_overlap_frames"] >= 1 and 0 < stats["max_speed"] <= 8.0
    gt = read_mot(seq / "gt" / "gt.txt", gt=True)
    frames_of: dict[int, list[int]] = {}
    for b in gt.values():
        for f, (ids, _) in b.frames.items():
            for i in ids:
                frames_of.setdefault(int(i), []).append(f)
    assert any(min(f) > 1 for f in frames_of.values())  # objects enter...
    assert any(max(f) < 300 for f in frames_of.values())  # ...and leave
    v = VideoSource(str(seq / "synth-s3.mp4"))
    assert (v.width, v.height, v.fps, v.frames_expected) == (640, 480, 25.0, 300)


def test_tracking_end_to_end_scores_with_eval_video(tmp_path):
    """synth-video -> video (tracking) -> eval-video: a short sequence, real files."""
    runner = CliRunner()
    res = runner.invoke(app, ["data", "synth-video", "--out", str(tmp_path / "gt"),
                              "--num-videos", "1", "--num-frames", "60", "--seed", "5"])
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(app, ["video", str(tmp_path / "gt" / "synth-s5" / "synth-s5.mp4"),
                              "-o", str(tmp_path / "tracks" / "synth-s5"), "--no-video"])
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(app, ["eval-video", "--tracks", str(tmp_path / "tracks"), "--gt",
                              str(tmp_path / "gt"), "--json"])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    overall = doc["overall"]
    assert set(overall) >= {"HOTA", "MOTA", "IDF1", "IDSW", "FP", "FN"}
    assert overall["MOTA"] > 0.3 and overall["IDF1"] > 0.4  # the demo model tracks them
    assert set(doc["per_class"]) <= {"circle", "square", "triangle", "star", "cross", "hexagon"}
    assert "| overall |" in res.stderr
    # a sequence without tracks is scored as all missed, and said
    (tmp_path / "gt" / "other" / "gt").mkdir(parents=True)
    (tmp_path / "gt" / "other" / "gt" / "gt.txt").write_text("1,1,0,0,10,10,1,1,1\n")
    res = runner.invoke(app, ["eval-video", "--tracks", str(tmp_path / "tracks"), "--gt",
                              str(tmp_path / "gt")])
    assert res.exit_code == 1 and "other: no tracks" in res.stderr

"""MOT metrics on hand-made cases whose answers are worked out by hand from the definitions."""

import math

import numpy as np
import pytest

from singleshot.errors import UsageError
from singleshot.eval.mot import ALPHAS, Boxes, evaluate, read_mot


def boxes(rows):
    """rows: (frame, id, x1, y1, x2, y2) -> Boxes."""
    b = Boxes()
    for f in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == f]
        b.frames[f] = (np.array([r[1] for r in mine]), np.array([r[2:] for r in mine], float))
    return b


def score(gt_rows, tr_rows, gt_cls=1, tr_cls=1):
    return evaluate({"s": {gt_cls: boxes(gt_rows)}}, {"s": {tr_cls: boxes(tr_rows)}})["overall"]


ONE = [(f, 7, 0, 0, 10, 10) for f in range(1, 5)]


def test_perfect_tracking_scores_one():
    m = score(ONE, [(f, 3, 0, 0, 10, 10) for f in range(1, 5)])
    assert (m["MOTA"], m["IDF1"], m["HOTA"], m["IDSW"], m["MOTP"]) == (1.0, 1.0, 1.0, 0, 1.0)


def test_an_id_switch():
    """One object, 4 frames; the tracker calls it 1 then 2. CLEAR: 1 switch, MOTA 1 - 1/4;
    IDF1: the best id pairing keeps 2 of 4 frames -> 2*2 / (4 + 4); HOTA: every TP's
    association is 2 / (2 + 2 + 0) = 0.5, DetA 1 -> sqrt(0.5)."""
    m = score(ONE, [(f, 1 if f <= 2 else 2, 0, 0, 10, 10) for f in range(1, 5)])
    assert m["IDSW"] == 1 and m["MOTA"] == pytest.approx(0.75)
    assert m["IDF1"] == pytest.approx(0.5)
    assert m["HOTA"] == pytest.approx(math.sqrt(0.5)) and m["AssA"] == pytest.approx(0.5)


def test_hota_averages_over_localisation_thresholds():
    """IoU 0.6 everywhere: a match for alpha <= 0.6 (12 of the 19 alphas), none above."""
    tr = [(f, 1, 0, 0, 10, 6) for f in range(1, 5)]  # IoU with the 10x10 box: 60/100
    m = score(ONE, tr)
    assert sum(ALPHAS <= 0.6 + 1e-9) == 12
    assert m["HOTA"] == pytest.approx(12 / 19) and m["MOTA"] == 1.0
    assert m["MOTP"] == pytest.approx(0.6)


def test_misses_and_false_positives():
    """2 objects x 3 frames; the second is missed in frame 2, a stray box in frame 3:
    TP 5, FN 1, FP 1 -> MOTA 1 - 2/6; IDF1 2*5 / (6 + 6)."""
    gt = [(f, i, 20 * i, 0, 20 * i + 10, 10) for f in range(1, 4) for i in (1, 2)]
    tr = [r for r in gt if (r[0], r[1]) != (2, 2)] + [(3, 9, 100, 100, 110, 110)]
    m = score(gt, tr)
    assert (m["TP"], m["FN"], m["FP"], m["IDSW"]) == (5, 1, 1, 0)
    assert m["MOTA"] == pytest.approx(4 / 6) and m["IDF1"] == pytest.approx(10 / 12)


def test_class_aware_and_per_class():
    m = score(ONE, [(f, 1, 0, 0, 10, 10) for f in range(1, 5)], gt_cls=1, tr_cls=2)
    assert (m["TP"], m["FN"], m["FP"]) == (0, 4, 4) and m["MOTA"] == pytest.approx(-1.0)
    res = evaluate({"s": {1: boxes(ONE), 2: boxes([(1, 5, 50, 50, 60, 60)])}},
                   {"s": {1: boxes([(f, 1, 0, 0, 10, 10) for f in range(1, 5)])}},
                   {1: "circle", 2: "square"})
    assert res["per_class"]["circle"]["MOTA"] == 1.0 and res["per_class"]["square"]["FN"] == 1
    assert res["overall"]["GT"] == 5 and res["overall"]["FN"] == 1


def test_files_read_back_and_zero_marked_ground_truth(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,0,0,10,10,1,3,1.0\n2,1,0,0,10,10,1,3,1.0\n2,2,50,50,10,10,0,3,0.2\n")
    tr = tmp_path / "tracks.txt"
    tr.write_text("1,4,0,0,10,10,0.9,3,-1,-1\n2,4,0,0,10,10,0.9,3,-1,-1\n"
                  "2,5,50,50,10,10,0.8,3,-1,-1\n")  # the second box is on a zero-marked object
    g, t = read_mot(gt, gt=True), read_mot(tr)
    assert set(g) == {3} and list(g[3].frames[2][0]) == [1] and len(g[3].ignore[2]) == 1
    assert list(t[3].frames[2][0]) == [4, 5]
    m = evaluate({"s": g}, {"s": t})["overall"]
    assert (m["FP"], m["MOTA"], m["IDF1"]) == (0, 1.0, 1.0)


@pytest.mark.parametrize("text, message", [
    ("1,1,0,0,ten,10,1,1\n", ":1: not a MOTChallenge line"),
    ("1,1,0,0,10,10,1,1\n1,1,5,5,10,10,1,1\n", "frame 1 has the same id twice"),
    ("1,1,0,0,-3,10,1,1\n", ":1: negative box size"),
])
def test_bad_files_are_one_line_errors(tmp_path, text, message):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(UsageError, match=message):
        read_mot(p)


def test_a_frame_with_one_side_empty_keeps_last_pairs():
    """TrackEval keeps the previous frame's pairs across a frame where a class has ground truth
    but no tracker box: frame 1 gt 7 matches A (IoU 0.9, B 0.7 also overlaps), frame 2 has no
    tracker box, frame 3 both again with B the better IoU. The kept pair A wins (its bonus), so
    no id switch; resetting the pairs on frame 2 made B win and counted one."""
    gt = [(f, 7, 0, 0, 10, 10) for f in (1, 2, 3)]
    tr = [(1, 1, 0, 0, 10, 9), (1, 2, 0, 0, 10, 7), (3, 1, 0, 0, 10, 7), (3, 2, 0, 0, 10, 9)]
    m = score(gt, tr)
    # frame 1: A matched, B a FP; frame 2: a miss; frame 3: A matched again (prev pair), B FP
    assert (m["IDSW"], m["FP"], m["FN"]) == (0, 2, 1)

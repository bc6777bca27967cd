"""The ByteTrack stage on hand-made detections: ids through an occlusion, new ids for new
objects (never reused), the second association with low scores, bounded memory."""

import numpy as np

from singleshot.video.track import ByteTracker


def step(tracker, frame, objects):
    """objects: [(x, y, score, label)] of 40x40 boxes -> their ids."""
    b = np.array([[x, y, x + 40, y + 40] for x, y, _, _ in objects], float).reshape(-1, 4)
    s = np.array([o[2] for o in objects], float)
    lab = np.array([o[3] for o in objects], int)
    return tracker.update(b, s, lab, frame)


def test_ids_survive_an_occlusion():
    t = ByteTracker(fps=25)
    seen = []
    for f in range(60):
        x = 10 + 5 * f
        hidden = 20 <= f < 32  # 12 frames behind something: no detection at all
        ids = step(t, f, [] if hidden else [(x, 100, 0.9, 1), (400, 300, 0.9, 2)])
        if not hidden:
            seen.append(ids[0])
    assert set(seen) == {1}  # the mover kept its id; the still object is 2
    assert step(t, 60, [(310, 100, 0.9, 1), (400, 300, 0.9, 2)]) == [1, 2]


def test_leaving_and_entering_objects_get_new_ids_never_reused():
    t = ByteTracker(fps=25, buffer_s=1.0)
    for f in range(10):
        assert step(t, f, [(100, 100, 0.9, 1)]) == [1]
    for f in range(10, 60):  # gone longer than the buffer
        step(t, f, [])
    assert step(t, 60, [(100, 100, 0.9, 1)]) == [None]  # tentative for a frame
    assert step(t, 61, [(102, 100, 0.9, 1)]) == [2]
    assert len(t.tracks) == 1  # the old track is gone from memory


def test_a_new_object_near_a_lost_one_of_another_class_is_new():
    t = ByteTracker(fps=25)
    for f in range(10):
        step(t, f, [(100, 100, 0.9, 1)])
    step(t, 10, [])
    step(t, 11, [(105, 100, 0.9, 2)])
    assert step(t, 12, [(106, 100, 0.9, 2)]) == [2]


def test_low_scores_keep_an_active_track_but_start_none():
    t = ByteTracker(fps=25, low=0.05)
    for f in range(5):
        step(t, f, [(100 + 2 * f, 100, 0.9, 1)])
    assert step(t, 5, [(110, 100, 0.2, 1)]) == [1]  # a dip in score: same track
    assert step(t, 6, [(300, 300, 0.3, 1)]) == [None]  # low alone never starts a track
    assert step(t, 7, [(300, 300, 0.3, 1)]) == [None]


def test_memory_stays_bounded_on_a_long_stream():
    t = ByteTracker(fps=25, buffer_s=1.0)
    rng = np.random.default_rng(0)
    for f in range(2000):
        objs = [(float(rng.uniform(0, 600)), float(rng.uniform(0, 400)), 0.9, 1)
                for _ in range(3)]  # new random boxes every frame: tracks come and go
        step(t, f, objs)
    assert len(t.tracks) < 200 and t.next_id > 100

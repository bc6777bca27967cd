"""ByteTrack (Zhang et al., 2022), written here: detections of one class keep an id from frame to
frame.

Why our own: the maintained packages do not fit. ``trackers`` installs ``opencv-python`` beside
our ``opencv-python-headless`` (two OpenCV distributions in one environment); supervision's
``ByteTrack.update_with_detections`` hands back only the detections its tracks took, while our
JSONL needs every detection with a track id or null, and the association must stay within a
class. The assignment itself is scipy's Hungarian solver.

The algorithm, per processed frame:

1. Every track's box is predicted by a constant-velocity Kalman filter on (cx, cy, w, h).
2. Detections split by score: high (>= ``high``) and low (``low`` <= s < ``high``).
3. Tracks - active, and lost ones for up to ``buffer_s`` seconds - are matched to high
   detections of their class by IoU with the predicted box (Hungarian, IoU >= ``match_iou``).
4. Active tracks still unmatched get a second chance with the low detections (IoU >= 0.5): an
   object partly hidden keeps its track through the frames its score dips.
5. Unmatched active tracks become lost (kept, predicted on, for ``buffer_s``); older lost tracks
   are deleted, so memory does not grow with the stream.
6. Unmatched high detections (>= ``new_track``) start tentative tracks; one matched again in the
   next frame is confirmed and gets the next id. Ids come from a counter: never reused.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..core.boxes import box_iou

_STD_POS, _STD_VEL = 1 / 20, 1 / 160  # process noise, relative to the box height (as ByteTrack)


class _Kalman:
    """Constant velocity on x = [cx, cy, w, h, vcx, vcy, vw, vh]; observed: the first four."""

    F = np.eye(8) + np.eye(8, k=4)
    H = np.eye(4, 8)

    def __init__(self, box_xyxy: np.ndarray) -> None:
        z = _to_cxcywh(box_xyxy)
        self.x = np.r_[z, np.zeros(4)]
        s = max(z[3], 1.0)
        self.P = np.diag(np.r_[[2 * _STD_POS * s] * 4, [10 * _STD_VEL * s] * 4] ) ** 2

    def _noise(self, pos: float, vel: float) -> np.ndarray:
        s = max(self.x[3], 1.0)
        return np.diag(np.r_[[pos * s] * 4, [vel * s] * 4]) ** 2

    def predict(self) -> None:
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + self._noise(_STD_POS, _STD_VEL)
        self.x[2:4] = np.maximum(self.x[2:4], 1.0)

    def update(self, box_xyxy: np.ndarray) -> None:
        z = _to_cxcywh(box_xyxy)
        R = (np.eye(4) * _STD_POS * max(self.x[3], 1.0)) ** 2
        S = self.H @ self.P @ self.H.T + R
        K = np.linalg.solve(S, self.H @ self.P).T
        self.x = self.x + K @ (z - self.H @ self.x)
        self.P = (np.eye(8) - K @ self.H) @ self.P

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.x[:4]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _to_cxcywh(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, dtype=np.float64)
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]])


@dataclass
class _Track:
    label: int
    kalman: _Kalman
    last_frame: int
    id: int | None = None  # None while tentative
    lost: bool = False
    centres: deque = field(default_factory=lambda: deque(maxlen=32))
    seen: deque = field(default_factory=lambda: deque(maxlen=15))  # (frame, state) per update

    def coast(self, frame: int) -> None:
        """Just lost: an object going behind something shows a shrinking box whose centre slows,
        so the filter's last estimate is wrong. Coast instead from the update where the box was
        largest (before the occlusion began): its size, its velocity, its position moved on."""
        f0, x = max(self.seen, key=lambda s: s[1][2] * s[1][3])
        k = self.kalman
        k.x = x.copy()
        k.x[6:8] = 0.0
        k.x[0:2] += k.x[4:6] * (frame - f0)


Match = tuple[list[tuple[int, int]], list[int], list[int]]


def _match(score: np.ndarray, ok: np.ndarray) -> Match:
    """Hungarian assignment maximising ``score`` [tracks, detections], keeping the pairs where
    ``ok`` -> (pairs (track k, detection j), unmatched tracks, unmatched detections)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-np.where(ok, score, -1e6))
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]
    got_r, got_c = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [r for r in range(score.shape[0]) if r not in got_r],
            [c for c in range(score.shape[1]) if c not in got_c])


def _same_label(tracks: list[_Track], labels: np.ndarray) -> np.ndarray:
    return np.asarray([t.label for t in tracks])[:, None] == labels[None, :]


def _assign(tracks: list[_Track], boxes: np.ndarray, labels: np.ndarray,
            min_iou: float) -> Match:
    """Tracks (their predicted boxes) to detections of the same label with IoU >= ``min_iou``."""
    if not tracks or not len(boxes):
        return [], list(range(len(tracks))), list(range(len(boxes)))
    iou = box_iou(np.stack([t.kalman.box for t in tracks]), boxes.astype(np.float64))
    return _match(iou, _same_label(tracks, labels) & (iou >= min_iou))


def _assign_near(tracks: list[_Track], boxes: np.ndarray, labels: np.ndarray,
                 reach: float) -> Match:
    """Tracks to detections of the same label by centre distance in units of the track's box
    size (its larger side), within ``reach``, nearest first."""
    if not tracks or not len(boxes):
        return [], list(range(len(tracks))), list(range(len(boxes)))
    pred = np.stack([t.kalman.x[:4] for t in tracks])  # cx, cy, w, h
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    dist = np.linalg.norm(pred[:, None, :2] - centres[None, :, :], axis=2)
    dist = dist / np.maximum(pred[:, 2:4].max(1), 1.0)[:, None]
    return _match(-dist, _same_label(tracks, labels) & (dist <= reach))


class ByteTracker:
    """``update(boxes, scores, labels, frame)`` -> a track id (int) or None per detection.

    boxes: [N, 4] xyxy pixels; scores: [N]; labels: [N] class labels; ``frame``: the frame's
    index in the source (gaps from strides or drops are fine: lost tracks expire by time).
    ``fps`` turns ``buffer_s`` into frames."""

    def __init__(self, *, high: float = 0.5, low: float = 0.1, new_track: float = 0.6,
                 match_iou: float = 0.2, buffer_s: float = 3.0, fps: float = 25.0,
                 reach: float = 1.0, duplicate_iou: float = 0.6) -> None:
        self.high, self.low, self.new_track = high, low, new_track
        self.reach, self.duplicate_iou = reach, duplicate_iou
        self.match_iou, self.buffer = match_iou, max(1, round(buffer_s * fps))
        self.tracks: list[_Track] = []
        self.next_id = 1
        self.frames_seen = 0

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
               frame: int) -> list[int | None]:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        ids: list[int | None] = [None] * len(boxes)
        for t in self.tracks:
            t.kalman.predict()
        high = np.flatnonzero(scores >= self.high)
        low = np.flatnonzero((scores >= self.low) & (scores < self.high))
        confirmed = [t for t in self.tracks if t.id is not None]
        tentative = [t for t in self.tracks if t.id is None]

        matched: set[int] = set()

        def take(track: _Track, j: int) -> None:
            track.kalman.update(boxes[j])
            track.seen.append((frame, track.kalman.x.copy()))
            track.last_frame, track.lost = frame, False
            if track.id is None:
                track.id, self.next_id = self.next_id, self.next_id + 1
            track.centres.append(((boxes[j, 0] + boxes[j, 2]) / 2, (boxes[j, 1] + boxes[j, 3]) / 2))
            ids[j] = track.id
            matched.add(id(track))

        # 1. confirmed tracks (active and lost) with the confident detections
        pairs, left_tracks, left_high = _assign(confirmed, boxes[high], labels[high],
                                                self.match_iou)
        for k, j in pairs:
            take(confirmed[k], int(high[j]))
        # 2. active tracks left over, with the low-score detections
        active = [confirmed[k] for k in left_tracks if not confirmed[k].lost]
        pairs, _, _ = _assign(active, boxes[low], labels[low], 0.5)
        for k, j in pairs:
            take(active[k], int(low[j]))
        # 2b. lost tracks (coasting through an occlusion) with the confident detections left,
        # by how far the detection is from where the track should be, in box sizes: after an
        # occlusion the predicted box rarely overlaps the reappearing one enough for IoU
        rest = high[left_high]
        lost = [confirmed[k] for k in left_tracks if confirmed[k].lost]
        pairs, _, _ = _assign_near(lost, boxes[rest], labels[rest], self.reach)
        for k, j in pairs:
            take(lost[k], int(rest[j]))
        # 3. tentative tracks (one frame old) with the confident detections still free
        rest = np.asarray([j for j in rest if ids[j] is None], dtype=np.int64)
        pairs, _, left_new = _assign(tentative, boxes[rest], labels[rest], self.match_iou)
        for k, j in pairs:
            take(tentative[k], int(rest[j]))
        # 4. what no one took
        survivors = []
        for t in self.tracks:
            if id(t) in matched:
                survivors.append(t)
            elif t.id is not None and frame - t.last_frame <= self.buffer:
                if not t.lost and t.seen:
                    t.coast(frame)
                t.lost = True
                survivors.append(t)
            # else: a tentative track not seen again, or lost too long: gone for good
        taken = boxes[[j for j in range(len(boxes)) if ids[j] is not None]]
        for j in rest[left_new]:
            # no new track for a second box on a tracked object (the model's other class guess)
            if len(taken) and box_iou(boxes[j:j + 1], taken).max() > self.duplicate_iou:
                continue
            if scores[j] >= self.new_track:
                t = _Track(int(labels[j]), _Kalman(boxes[j]), frame)
                t.centres.append(((boxes[j, 0] + boxes[j, 2]) / 2, (boxes[j, 1] + boxes[j, 3]) / 2))
                if self.frames_seen == 0:  # the first frame's objects are confirmed at once
                    t.id, self.next_id = self.next_id, self.next_id + 1
                    ids[j] = t.id
                survivors.append(t)
        self.tracks = survivors
        self.frames_seen += 1
        return ids

    def trails(self) -> dict[int, list[tuple[float, float]]]:
        """Recent centres of the confirmed tracks seen in the last frame, by id (for drawing)."""
        return {t.id: list(t.centres) for t in self.tracks if t.id is not None and not t.lost}


class TrackStage:
    """The pipeline's tracking stage: ids for every detection the model gave (down to its own
    threshold: the second association needs the low ones), then only those scoring >= ``conf``
    kept for writing and drawing, with their ids and the tracks' recent centres."""

    def __init__(self, tracker: ByteTracker, conf: float | None) -> None:
        self.tracker, self.conf = tracker, conf

    def __call__(self, result) -> None:
        d = result.detections
        ids = self.tracker.update(d.xyxy, d.scores, d.labels, result.index)
        keep = np.flatnonzero(d.scores >= self.conf) if self.conf is not None else \
            np.arange(len(d))
        result.detections = d[keep]
        result.track_ids = [ids[i] for i in keep]
        result.trails = self.tracker.trails()


def tracking(detector, conf: float | None):
    """``fps -> TrackStage`` for ``detector``'s runs (a new tracker per source): the tracker's
    low threshold is the model's own, ``conf`` filters what is written after it."""
    low = detector.params.score_threshold
    return lambda fps: TrackStage(ByteTracker(low=low, fps=fps), conf)

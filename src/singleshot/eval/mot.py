"""Multi-object tracking metrics - CLEAR (MOTA, MOTP, id switches), IDF1 and HOTA - class-aware,
per class and overall, from MOTChallenge files.

Written here: motmetrics 1.4.0 calls ``np.asfarray`` (gone in NumPy 2) and the PyPI
``trackeval`` pulls ``opencv-python`` beside our headless OpenCV. The definitions are the
published ones (Bernardin & Stiefelhagen 2008; Ristani et al. 2016; Luiten et al. 2021) and the
tests check them on cases with known answers:

- CLEAR: per frame, Hungarian matching at IoU >= 0.5 that keeps last frame's pairs where they
  still qualify; an id switch is a ground-truth object matched to another tracker id than the
  one it was last matched to. MOTA = 1 - (FN + FP + IDSW) / GT; MOTP = mean IoU of matches.
- IDF1: the one-to-one assignment of ground-truth ids to tracker ids that maximises the frames
  where they overlap at IoU >= 0.5 (IDTP); IDF1 = 2 IDTP / (GT + tracker detections).
- HOTA at each alpha in 0.05..0.95: per frame, Hungarian on IoU weighted by how well the two ids
  align over the whole sequence; DetA = TP / (TP + FN + FP), AssA = the mean over TPs of
  TPA / (TPA + FNA + FPA); HOTA = sqrt(DetA * AssA), averaged over the alphas.

Class-aware: a tracker box is only matched to ground truth of its own class. Overall numbers
pool the counts of every class and sequence (each class and sequence is matched on its own).

File format (both): ``frame, id, left, top, width, height, conf, class, ...`` one box per
line, frames 1-based; ground-truth lines with conf 0 are zero-marked (MOTChallenge's
convention): not counted, and a tracker box matching one is removed before scoring.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ..core.boxes import box_iou
from ..errors import UsageError

ALPHAS = np.arange(0.05, 0.96, 0.05)


@dataclass
class Boxes:
    """One sequence and class: per frame, ids [N] and boxes [N, 4] xyxy; ``ignore``: per frame,
    boxes [M, 4] of zero-marked ground truth (any class) - a tracker box on one of them counts
    neither way."""

    frames: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    ignore: dict[int, np.ndarray] = field(default_factory=dict)


def read_mot(path: str | Path, *, gt: bool = False) -> dict[int, Boxes]:
    """A MOTChallenge file -> {class: Boxes}. Ground truth (``gt``): lines with conf 0 become
    every class's ``ignore`` boxes. UsageError naming the line for bad input."""
    path = Path(path)
    rows: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    ignored: dict[int, list] = defaultdict(list)
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"{path}: cannot read ({err.strerror or err})") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            frame, tid = int(float(parts[0])), int(float(parts[1]))
            x, y, w, h = (float(v) for v in parts[2:6])
            conf = float(parts[6]) if len(parts) > 6 else 1.0
            cls = int(float(parts[7])) if len(parts) > 7 and float(parts[7]) >= 0 else 1
        except (ValueError, IndexError):
            raise UsageError(f"{path}:{n}: not a MOTChallenge line (frame, id, left, top, width, "
                             f"height, conf, class...): {line[:60]!r}") from None
        if w < 0 or h < 0:
            raise UsageError(f"{path}:{n}: negative box size")
        if gt and conf == 0:
            ignored[frame].append((x, y, x + w, y + h))
            continue
        rows[cls][frame].append((tid, x, y, x + w, y + h))
    out = {}
    for cls, frames in rows.items():
        seq = Boxes()
        for frame, items in frames.items():
            ids = np.asarray([r[0] for r in items], dtype=np.int64)
            if len(set(ids.tolist())) != len(ids):
                raise UsageError(f"{path}: frame {frame} has the same id twice")
            seq.frames[frame] = (ids, np.asarray([r[1:] for r in items], dtype=np.float64))
        out[cls] = seq
    for seq in out.values():
        seq.ignore = {f: np.asarray(b, dtype=np.float64) for f, b in ignored.items()}
    return out


@dataclass
class Counts:
    """Sums that pool across classes and sequences."""

    gt: int = 0
    dets: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    idsw: int = 0
    iou_sum: float = 0.0
    idtp: int = 0
    hota_tp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    hota_fn: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    hota_fp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    gt_ids: int = 0
    tracker_ids: int = 0

    def add(self, o: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(o, f.name))

    def metrics(self) -> dict:
        det_a = self.hota_tp / np.maximum(1, self.hota_tp + self.hota_fn + self.hota_fp)
        ass_a = self.ass_sum / np.maximum(1, self.hota_tp)
        hota = np.sqrt(det_a * ass_a)
        return {"HOTA": float(hota.mean()), "DetA": float(det_a.mean()),
                "AssA": float(ass_a.mean()),
                "MOTA": 1 - (self.fn + self.fp + self.idsw) / self.gt if self.gt else 0.0,
                "MOTP": self.iou_sum / self.tp if self.tp else 0.0,
                "IDF1": 2 * self.idtp / (self.gt + self.dets) if self.gt + self.dets else 0.0,
                "IDSW": self.idsw, "FP": self.fp, "FN": self.fn, "TP": self.tp,
                "GT": self.gt, "GT_IDs": self.gt_ids, "IDs": self.tracker_ids}


def _hungarian(score: np.ndarray):
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(-score)


def _drop_ignored(gt: Boxes, tr: Boxes) -> Boxes:
    """``tr`` without the boxes that match (IoU >= 0.5, Hungarian against the frame's real and
    ignored ground truth) an ignored ground-truth box."""
    if not gt.ignore:
        return tr
    out = Boxes()
    for f, (ids, boxes) in tr.frames.items():
        ign = gt.ignore.get(f)
        if ign is None or not len(ids):
            out.frames[f] = (ids, boxes)
            continue
        real = gt.frames.get(f, (None, np.zeros((0, 4))))[1]
        every = np.concatenate([real, ign])
        iou = box_iou(every, boxes)
        rows, cols = _hungarian(np.where(iou >= 0.5, iou, 0.0))
        drop = {int(k) for r, k in zip(rows, cols) if r >= len(real) and iou[r, k] >= 0.5}
        keep = np.asarray([k not in drop for k in range(len(ids))], dtype=bool)
        out.frames[f] = (ids[keep], boxes[keep])
    return out


def _id_index(b: Boxes) -> dict[int, int]:
    """Each id of ``b`` -> a row of the per-id matrices."""
    return {i: k for k, i in enumerate(sorted({int(i) for ids, _ in b.frames.values()
                                               for i in ids}))}


def evaluate_sequence(gt: Boxes, tr: Boxes) -> Counts:
    """The counts of one sequence and class."""
    tr = _drop_ignored(gt, tr)
    c = Counts()
    frames = sorted(set(gt.frames) | set(tr.frames))
    empty = (np.zeros(0, np.int64), np.zeros((0, 4)))
    gt_index, tr_index = _id_index(gt), _id_index(tr)
    c.gt_ids, c.tracker_ids = len(gt_index), len(tr_index)
    pairs = np.zeros((len(gt_index), len(tr_index)))  # frames matched at IoU >= 0.5 (IDF1)
    sim_sum = np.zeros((len(gt_index), len(tr_index)))  # HOTA's soft alignment
    gt_count, tr_count = np.zeros(len(gt_index)), np.zeros(len(tr_index))
    per_frame = []
    last_match: dict[int, int] = {}  # gt id -> tracker id it was last matched to (CLEAR)
    previous: dict[int, int] = {}  # last frame's matches
    for f in frames:
        g_ids, g_boxes = gt.frames.get(f, empty)
        t_ids, t_boxes = tr.frames.get(f, empty)
        gi = np.asarray([gt_index[int(i)] for i in g_ids], dtype=np.int64)
        ti = np.asarray([tr_index[int(i)] for i in t_ids], dtype=np.int64)
        iou = box_iou(g_boxes, t_boxes) if len(gi) and len(ti) else np.zeros((len(gi), len(ti)))
        per_frame.append((gi, ti, iou))
        c.gt += len(gi)
        c.dets += len(ti)
        gt_count[gi] += 1
        tr_count[ti] += 1
        if len(gi) and len(ti):
            pairs[np.ix_(gi, ti)] += iou >= 0.5
            denom = iou.sum(0)[None, :] + iou.sum(1)[:, None] - iou
            sim_sum[np.ix_(gi, ti)] += np.divide(iou, denom, out=np.zeros_like(iou),
                                                 where=denom > 1e-9)
        # CLEAR: last frame's pairs first (a large bonus), then the best IoU
        matched = {}
        if len(gi) and len(ti):
            keep = np.asarray([[previous.get(int(g)) == int(t) for t in t_ids] for g in g_ids])
            score = np.where(iou >= 0.5, iou + 1000.0 * keep, 0.0)
            rows, cols = _hungarian(score)
            for r, k in zip(rows, cols):
                if iou[r, k] >= 0.5:
                    matched[int(g_ids[r])] = (int(t_ids[k]), float(iou[r, k]))
        for g, (t, v) in matched.items():
            if g in last_match and last_match[g] != t:
                c.idsw += 1
            last_match[g] = t
            c.iou_sum += v
        c.tp += len(matched)
        c.fn += len(gi) - len(matched)
        c.fp += len(ti) - len(matched)
        if len(gi) and len(ti):  # as TrackEval: a frame missing either side keeps the pairs
            previous = {g: t for g, (t, _) in matched.items()}
    # IDF1: the id assignment with the most overlapping frames
    if pairs.size:
        rows, cols = _hungarian(pairs)
        c.idtp = int(pairs[rows, cols].sum())
    # HOTA: per frame, Hungarian on IoU weighted by the ids' global alignment
    align = sim_sum / np.maximum(1e-9, gt_count[:, None] + tr_count[None, :] - sim_sum) \
        if sim_sum.size else sim_sum
    matches = np.zeros((len(ALPHAS), len(gt_index), len(tr_index)))
    for gi, ti, iou in per_frame:
        if not len(gi) or not len(ti):
            c.hota_fn += len(gi)
            c.hota_fp += len(ti)
            continue
        rows, cols = _hungarian(align[np.ix_(gi, ti)] * iou)
        for a, alpha in enumerate(ALPHAS):
            ok = iou[rows, cols] >= alpha - 1e-9
            n = int(ok.sum())
            c.hota_tp[a] += n
            c.hota_fn[a] += len(gi) - n
            c.hota_fp[a] += len(ti) - n
            matches[a, gi[rows[ok]], ti[cols[ok]]] += 1
    for a in range(len(ALPHAS)):
        m = matches[a]
        ass = m / np.maximum(1, gt_count[:, None] + tr_count[None, :] - m)
        c.ass_sum[a] = float((m * ass).sum())
    return c


def evaluate(gt: dict[str, dict[int, Boxes]], tracks: dict[str, dict[int, Boxes]],
             class_names: dict[int, str] | None = None) -> dict:
    """``gt``/``tracks``: sequence -> {class: Boxes}. -> ``{"overall": metrics, "per_class":
    {name: metrics}, "per_sequence": {seq: metrics}}`` (metrics: HOTA, DetA, AssA, MOTA, MOTP,
    IDF1, IDSW, FP, FN, TP, GT, GT_IDs, IDs)."""
    names = class_names or {}
    overall, per_class, per_seq = Counts(), defaultdict(Counts), defaultdict(Counts)
    for seq, gt_classes in gt.items():
        tr_classes = tracks.get(seq, {})
        ignore = next(iter(gt_classes.values())).ignore if gt_classes else {}
        for cls in sorted(set(gt_classes) | set(tr_classes)):
            c = evaluate_sequence(gt_classes.get(cls, Boxes(ignore=ignore)),
                                  tr_classes.get(cls, Boxes()))
            overall.add(c)
            per_class[names.get(cls, str(cls))].add(c)
            per_seq[seq].add(c)
    return {"overall": overall.metrics(),
            "per_class": {k: v.metrics() for k, v in sorted(per_class.items())},
            "per_sequence": {k: v.metrics() for k, v in sorted(per_seq.items())}}


def find_sequences(gt_dir: str | Path,
                   tracks_dir: str | Path) -> list[tuple[str, Path, Path | None]]:
    """(name, gt file, tracks file or None) for every ``<seq>/gt/gt.txt`` under ``gt_dir``; the
    tracks are ``tracks_dir/<seq>/tracks.txt`` (``singleshot video``'s layout) or
    ``tracks_dir/<seq>.txt`` (MOTChallenge's results layout)."""
    gt_dir, tracks_dir = Path(gt_dir), Path(tracks_dir)
    for d, opt in ((gt_dir, "gt"), (tracks_dir, "tracks")):
        if not d.is_dir():
            raise UsageError(f"{d}: no such folder ({{opt:{opt}}})")
    found = []
    gt_files = sorted(gt_dir.glob("*/gt/gt.txt"))
    for gt_file in gt_files:
        name = gt_file.parent.parent.name
        candidates = [tracks_dir / name / "tracks.txt", tracks_dir / f"{name}.txt"]
        if len(gt_files) == 1:  # one sequence: singleshot video's single-source OUT/tracks.txt
            candidates.append(tracks_dir / "tracks.txt")
        found.append((name, gt_file, next((p for p in candidates if p.is_file()), None)))
    if not found:
        raise UsageError(f"{gt_dir}: no <sequence>/gt/gt.txt in it ({{opt:gt}})")
    return found

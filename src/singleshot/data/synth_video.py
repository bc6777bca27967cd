"""Synthetic videos with known tracks: the shapes of :mod:`.synth` moving over a fixed textured
background, behind a foreground pillar, written as H.264 with MOTChallenge ground truth.

What each video has (checked when it is made; :func:`make_sequence` retries a seed's plan
otherwise): at least ``min_objects`` objects in every frame; objects that enter and leave the
frame; at least 30% of the tracks hidden (visibility < 0.5) for 8 frames or more between two
visible stretches; same-class crossings; speeds up to 8 px per frame.

Ground truth (``<seq>/gt/gt.txt``): ``frame, id, left, top, width, height, active, class,
visibility`` for every frame where some of the object shows; the box is the tight box of its
visible pixels (what a detector can see). ``active`` is 1 where at least half of it shows and 0
(MOTChallenge's "zero-marked": ignored) below that, so a box on a mostly hidden object is
neither a hit nor a false positive. ``seqinfo.ini`` as MOTChallenge writes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .synth import CLASSES, _background, _colour, _polygon

VISIBLE = 0.5  # an object less visible than this is not in the ground truth of that frame
SS = 2  # supersampling of the drawing


@dataclass
class _Mover:
    id: int
    label: int  # 1..6
    outline: np.ndarray  # [N, 2] polygon around (0, 0), pixels
    colour: tuple
    x: float
    y: float
    vx: float
    vy: float
    born: int

    def at(self, frame: int) -> np.ndarray:
        t = frame - self.born
        return self.outline + [self.x + self.vx * t, self.y + self.vy * t]


def _pillars(w: int, h: int, rng) -> list[tuple[int, int]]:
    """A vertical foreground pillar: (left, right) pixel columns, ~100 px wide (an object
    crossing at 8 px a frame is more than half hidden for 8+ frames), near the middle."""
    width = int(rng.integers(90, 111))
    a = int(rng.integers(int(w * 0.35), int(w * 0.5)))
    return [(a, a + width)]


def _spawn(rng, next_id: int, frame: int, w: int, h: int, background, *, label=None, side=None,
           y=None, speed=None) -> _Mover:
    """An object entering from a side (0 left, 1 right, 2 top, 3 bottom), crossing the frame."""
    label = int(label or rng.integers(1, len(CLASSES) + 1))
    size = math.exp(rng.uniform(math.log(60), math.log(130)))  # data synth's mid sizes
    aspect = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
    sx, sy = size / 2 * math.sqrt(aspect), size / 2 / math.sqrt(aspect)
    theta = rng.uniform(0, 2 * math.pi) if CLASSES[label - 1] != "circle" else 0.0
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    outline = (_polygon(CLASSES[label - 1], rng) * [sx, sy]) @ rot.T
    lo, hi = outline.min(0), outline.max(0)
    side = (int(rng.integers(0, 2)) if rng.uniform() < 0.8 else int(rng.integers(2, 4))) \
        if side is None else side
    speed = speed or rng.uniform(1.5, 8.0)
    if side in (0, 1):  # mostly horizontal: these cross the pillars
        ang = rng.uniform(-0.2, 0.2)
        vx, vy = speed * math.cos(ang) * (1 if side == 0 else -1), speed * math.sin(ang)
        x = -hi[0] if side == 0 else w - lo[0]
        y = rng.uniform(h * 0.12, h * 0.88) if y is None else y
    else:
        ang = rng.uniform(-0.5, 0.5)
        vx, vy = speed * math.sin(ang), speed * math.cos(ang) * (1 if side == 2 else -1)
        y = -hi[1] if side == 2 else h - lo[1]
        x = rng.uniform(w * 0.1, w * 0.9)
    local = background[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))].astype(int)
    return _Mover(next_id, label, outline, _colour(rng, local), float(x), float(y), vx, vy, frame)


def _roomy_spawn(rng, next_id, frame, w, h, background, live) -> _Mover:
    """A newcomer whose path keeps clear of the others for the next few seconds (the best of
    a dozen tries): objects pass each other now and then, they do not pile up."""
    best, best_gap = None, -1.0
    for _ in range(12):
        m = _spawn(rng, next_id, frame, w, h, background)
        gap = min((float(np.hypot(*(o.at(frame + t).mean(0) - m.at(frame + t).mean(0))))
                   for o in live for t in (8, 30, 60, 90)), default=1e9)
        if gap > best_gap:
            best, best_gap = m, gap
    return best


def _inside(points: np.ndarray, w: int, h: int) -> bool:
    lo, hi = points.min(0), points.max(0)
    return hi[0] > 0 and hi[1] > 0 and lo[0] < w and lo[1] < h


def make_sequence(seed: int, n_frames: int = 300, size: tuple[int, int] = (640, 480),
                  min_objects: int = 6):
    """-> (frames: list of RGB uint8 [H, W, 3], gt rows [(frame 1.., id, x, y, w, h, class,
    visibility, active)], stats). Deterministic for ``seed``."""
    w, h = size
    for attempt in range(20):
        rng = np.random.default_rng([seed, attempt])
        frames, rows, stats = _render(rng, n_frames, w, h, min_objects)
        if stats["occluded_fraction"] >= 0.3 and stats["same_class_overlap_frames"] >= 1 and \
                stats["min_objects"] >= min_objects:
            return frames, rows, stats
    return frames, rows, stats


def _render(rng, n_frames: int, w: int, h: int, min_objects: int):
    background = _background(w, h, rng)
    pillars = _pillars(w, h, rng)
    # the pillars: the background itself, a little darker - something to pass behind that does
    # not look like one of the shapes (a textured bar is detected as a "square")
    pillar_img = (background.astype(np.float32) * 0.8).astype(np.uint8)
    movers: list[_Mover] = []
    next_id = 1
    # a same-class pair that meets mid-frame, head on
    label, y = int(rng.integers(1, len(CLASSES) + 1)), rng.uniform(h * 0.3, h * 0.7)
    for side in (0, 1):
        movers.append(_spawn(rng, next_id, 0, w, h, background, label=label, side=side, y=y,
                             speed=4.0))
        movers[-1].born = -int(w * 0.45 / 4)  # already on its way in at frame 0
        next_id += 1
    frames, rows = [], []
    hidden_runs: dict[int, list[int]] = {}  # id -> per-frame visible flags while in frame
    crossings = 0
    seen_min = min_visible = 10 ** 6
    seen_movers: dict[int, _Mover] = {}
    target = min_objects + 2
    for f in range(n_frames):
        live = [m for m in movers if _inside(m.at(f), w, h)]
        # newcomers enter from the edges while fewer than the target are in the frame (hidden
        # ones count: they are there), one a frame after the start
        while len(live) < target:
            m = _roomy_spawn(rng, next_id, f, w, h, background, live)
            m.born = f - int(rng.integers(0, 10))  # a few frames in already
            next_id += 1
            movers.append(m)
            if _inside(m.at(f), w, h):
                live.append(m)
            if f > 0:
                break
        movers = [m for m in movers if _inside(m.at(f), w, h) or m.born >= f - 5]  # gone: left
        canvas = Image.fromarray(background).resize((w * SS, h * SS), Image.NEAREST)
        draw = ImageDraw.Draw(canvas)
        ids = Image.new("I", (w, h), 0)
        id_draw = ImageDraw.Draw(ids)
        full = {}
        for m in live:  # later ones in front
            pts = m.at(f)
            draw.polygon([tuple(p) for p in pts * SS], fill=m.colour,
                         outline=tuple(int(v * 0.6) for v in m.colour))
            id_draw.polygon([tuple(p) for p in pts], fill=m.id)
            x, y = pts[:, 0], pts[:, 1]  # its whole area (shoelace): half out of frame is half seen
            full[m.id] = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
        img = np.asarray(canvas.resize((w, h), Image.LANCZOS)).copy()
        id_map = np.asarray(ids).copy()
        for a, b in pillars:
            img[:, a:b] = pillar_img[:, a:b]
            id_map[:, a:b] = 0
        noise = rng.standard_normal(img.shape, dtype=np.float32) * 2.0
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
        frames.append(img)
        visible_now = 0
        boxes_now = []
        for m in live:
            seen_movers[m.id] = m
            ys, xs = np.nonzero(id_map == m.id)
            vis = min(1.0, len(xs) / full[m.id]) if full[m.id] >= 1 else 0.0
            flags = hidden_runs.setdefault(m.id, [])
            flags.append(vis >= VISIBLE)
            if len(xs) and vis >= 0.05:
                x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                rows.append((f + 1, m.id, float(x1), float(y1), float(x2 - x1), float(y2 - y1),
                             m.label, round(vis, 3), int(vis >= VISIBLE)))
            if vis >= VISIBLE:
                visible_now += 1
                boxes_now.append((m.label, m.at(f)))
        for i in range(len(boxes_now)):
            for j in range(i):
                (la, pa), (lb, pb) = boxes_now[i], boxes_now[j]
                if la == lb and _overlap(pa, pb):
                    crossings += 1
        seen_min = min(seen_min, int(sum(_inside(m.at(f), w, h) for m in live)))
        min_visible = min(min_visible, visible_now)
    occluded = sum(1 for flags in hidden_runs.values() if _hidden_between(flags, 8))
    tracks = sum(1 for flags in hidden_runs.values() if any(flags))
    speeds = [math.hypot(m.vx, m.vy) for m in seen_movers.values()]
    stats = {"tracks": tracks, "occluded_tracks": occluded, "min_visible": min_visible,
             "max_speed": round(max(speeds, default=0.0), 3),
             "occluded_fraction": occluded / max(1, tracks),
             "same_class_overlap_frames": crossings, "min_objects": seen_min}
    return frames, rows, stats


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    (ax1, ay1), (ax2, ay2) = a.min(0), a.max(0)
    (bx1, by1), (bx2, by2) = b.min(0), b.max(0)
    return ax1 < bx2 and bx1 < ax2 and ay1 < by2 and by1 < ay2


def _hidden_between(flags: list[bool], n: int) -> bool:
    """A run of >= n hidden frames with visible frames before and after it."""
    run, seen = 0, False
    for v in flags:
        if v:
            if seen and run >= n:
                return True
            seen, run = True, 0
        elif seen:
            run += 1
    return False


def write_sequence(out: Path, name: str, seed: int, n_frames: int = 300,
                   size: tuple[int, int] = (640, 480), fps: int = 25) -> dict:
    """``out/name/name.mp4``, ``gt/gt.txt`` and ``seqinfo.ini``; returns the stats."""
    from ..io.videofile import VideoEncoder

    frames, rows, stats = make_sequence(seed, n_frames, size)
    folder = Path(out) / name
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    enc = VideoEncoder(folder / f"{name}.mp4", size[0], size[1], fps, crf=18)
    try:
        for k, frame in enumerate(frames):
            enc.write(frame, k)
    finally:
        enc.close()
    (folder / "gt" / "gt.txt").write_text("".join(
        f"{f},{i},{x:.1f},{y:.1f},{bw:.1f},{bh:.1f},{active},{c},{v}\n"
        for f, i, x, y, bw, bh, c, v, active in rows))
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={fps}\nseqLength={n_frames}\n"
        f"imWidth={size[0]}\nimHeight={size[1]}\nimExt=.jpg\n")
    return {"name": name, "seed": seed, **stats}


def panned(seed: int, size: tuple[int, int], travel: int):
    """``k -> frame k`` (RGB uint8 [H, W, 3]) of a generated scene panned one pixel per frame,
    wrapping after ``travel`` frames: a moving test clip or stream without ground truth."""
    from .synth import make_scene

    w, h = size
    big, _ = make_scene(seed, 0, size=(w + travel, h))
    return lambda k: np.ascontiguousarray(big[:, k % travel:k % travel + w])


def write_panned(path: str | Path, n_frames: int, size: tuple[int, int], fps: float,
                 seed: int) -> Path:
    """An H.264 file of :func:`panned`'s first ``n_frames`` frames."""
    from ..io.videofile import VideoEncoder

    frame_at = panned(seed, size, max(1, n_frames))
    enc = VideoEncoder(Path(path), size[0], size[1], fps)
    try:
        for k in range(n_frames):
            enc.write(frame_at(k), k)
    finally:
        enc.close()
    return Path(path)

"""Reports of evaluations: the side-by-side Markdown table, per-class AP, precision-recall plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io.files import atomic_path
from ..io.tables import markdown_table as table
from .coco import CocoScore


def relative_change(value: float, base: float) -> float | None:
    if base is None or base <= 0 or value is None or value < 0:
        return None
    return (value - base) / base


def markdown_table(rows: list[dict]) -> str:
    """Side-by-side table; the AP change and the speed-up of each row are relative to the first
    row (speed-up: the first row's mean inference time over this row's, the card's measure)."""
    cols = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
    base = rows[0]["AP"] if rows else None
    base_ms = rows[0].get("inference_ms") if rows else None
    cells = []
    for r in rows:
        rel = relative_change(r["AP"], base)
        ms = r.get("inference_ms")
        cells.append([r["model"], *(f"{r[c]:.4f}" for c in cols),
                      "-" if rel is None or r is rows[0] else f"{rel * 100:+.2f}%",
                      f"{ms:.2f}" if ms else "-",
                      f"{base_ms / ms:.2f}x" if ms and base_ms and r is not rows[0] else "-",
                      f"{r['images_per_s']:.2f}" if r.get("images_per_s") else "-"])
    return table(["model", *cols, "AP vs first", "inference ms", "speed-up", "images/s"], cells)



def per_class_table(rows: list[dict]) -> str:
    """Per-class AP, one column per model (- where pycocotools gives -1: no ground truth)."""
    names = list(dict.fromkeys(n for r in rows for n in r["per_class"]))
    cells = [[n, *(f"{v:.4f}" if v >= 0 else "-" for v in
                   (r["per_class"].get(n, -1.0) for r in rows))] for n in names]
    return "per-class AP:\n" + table(["class", *(r["model"] for r in rows)], cells)



def plot_pr(score: CocoScore, title: str, path: Path) -> bool:
    """Precision-recall curves (all areas, 100 detections; IoU .5, .75 and the mean over
    .5:.95), averaged over classes that have ground truth. False when there is nothing to plot."""
    if score.precision is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = score.precision[:, :, :, 0, -1]  # [T, R, K]
    rec = np.linspace(0, 1, p.shape[1])
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for label, sel in (("IoU 0.50", p[0]), ("IoU 0.75", p[5]), ("IoU .50:.95", p.mean(0))):
        valid = (sel > -1).all(axis=0) if label != "IoU .50:.95" else (p > -1).all(axis=(0, 1))
        curve = sel[:, valid].mean(axis=1) if valid.any() else np.zeros_like(rec)
        ax.plot(rec, curve, label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{title}  AP {score.metrics['AP']:.3f}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    with atomic_path(path) as tmp:  # like every report file
        fig.savefig(tmp)
    plt.close(fig)
    return True

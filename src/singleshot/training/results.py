"""The run's log people read: ``OUT/results.csv``, one row per epoch (epoch, step, lr, the
localisation and classification loss terms and their total, images/s, and the validation
metrics of the epochs that were evaluated), and ``OUT/results.png`` drawn from it.

Rows are written as epochs finish; a resumed run keeps the rows up to the step it resumes from
and goes on appending (no duplicate epoch). The file is rewritten atomically each time (a few
hundred rows at most), so a run killed mid-write leaves the previous file whole.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..io.files import write_text_atomic

COLUMNS = ("epoch", "step", "lr", "loss_loc", "loss_cls", "loss", "images_per_s",
           "val_AP", "val_AP50", "val_AP75", "val_APs", "val_APm", "val_APl")


class ResultsLog:
    """``OUT/results.csv`` and ``OUT/results.png``."""

    def __init__(self, out: str | Path, resume_step: int = 0) -> None:
        self.csv, self.png = Path(out) / "results.csv", Path(out) / "results.png"
        self.rows: list[dict] = []
        if resume_step and self.csv.is_file():
            with self.csv.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]

    def add(self, epoch: int, step: int, lr: float, sums: dict, seconds: float,
            val: dict | None = None) -> dict:
        """One epoch: ``sums`` of loss, loss_loc, loss_cls over ``sums["steps"]`` steps and
        ``sums["images"]`` images in ``seconds``; ``val``: its COCO metrics, if evaluated. Returns
        the row written."""
        n = max(1, sums["steps"])
        row = {"epoch": epoch, "step": step, "lr": f"{lr:.6g}",
               **{k: f"{sums[k] / n:.5f}" for k in ("loss_loc", "loss_cls", "loss")},
               "images_per_s": f"{sums['images'] / seconds:.2f}" if seconds > 0 else ""}
        for key in COLUMNS[7:]:
            metric = (val or {}).get(key.removeprefix("val_"))
            row[key] = "" if metric is None else f"{metric:.4f}"
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.csv, buf.getvalue())
        self.plot()
        return row

    def plot(self) -> None:
        """Losses and validation AP by epoch (matplotlib, no display)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [int(r["epoch"]) for r in self.rows]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for key, label in (("loss", "total"), ("loss_loc", "localisation"),
                           ("loss_cls", "classification")):
            left.plot(epochs, [float(r[key]) for r in self.rows], marker=".", label=label)
        left.set(xlabel="epoch", ylabel="training loss", title="loss")
        left.legend()
        val = [(int(r["epoch"]), float(r["val_AP"]), float(r["val_AP50"])) for r in self.rows
               if r["val_AP"]]
        if val:
            right.plot([v[0] for v in val], [v[1] for v in val], marker="o", label="AP")
            right.plot([v[0] for v in val], [v[2] for v in val], marker="o", label="AP50")
            right.legend()
        right.set(xlabel="epoch", ylabel="COCO AP", title="validation")
        fig.tight_layout()
        tmp = self.png.with_name(self.png.name + ".tmp.png")
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        tmp.replace(self.png)

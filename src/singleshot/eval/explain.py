"""``eval --report``: why each model's AP is what it is, as one self-contained ``report.html``
(figures embedded, opens offline), the same figures as PNGs in ``report/`` and every number in
``report.json``; several models side by side (which error type quantization adds).

Per model: TIDE's error breakdown (:mod:`.tide`), the confusion matrix (counts and
row-normalised), precision-recall and F1-vs-confidence curves per class with the F1-optimal
threshold, AP by object size (COCO's areas) and by the number of objects in an image, and the
images whose errors cost the most AP drawn with ground truth and detections side by side.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.files import write_json_atomic, write_text_atomic
from .diagnose import ap_by_count, confusion_matrix, curves, worst_images
from .tide import ERROR_NAMES, ERROR_TYPES, TideResult, analyse

SIZE_KEYS = ("APs", "APm", "APl")


@dataclass
class ModelReport:
    """One model's (or results file's) analysis: numbers, and figures as PNG bytes by name."""

    name: str
    numbers: dict
    figures: dict[str, bytes] = field(default_factory=dict)
    worst: list[tuple[dict, bytes]] = field(default_factory=list)  # (entry, JPEG)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def analyse_model(name: str, gt, results: list[dict], metrics: dict, *, conf: float = 0.25,
                  images_dir: Path | None = None, worst: int = 8,
                  img_ids: list[int] | None = None) -> ModelReport:
    """Every number and figure of one model's report. ``metrics``: its 12 COCO metrics (for AP by
    size); ``images_dir``: where the images are, to draw the worst ones (none drawn without);
    ``img_ids``: the images evaluated (default: all)."""
    tide = analyse(gt, results, img_ids)
    names = gt.category_names()
    matrix, labels = confusion_matrix(gt, tide, conf)
    cv = curves(tide)
    best = cv.best()
    worst_list = worst_images(tide, worst)
    numbers = {
        "tide": tide.to_dict(),
        "confusion": {"conf": conf, "iou": 0.5, "labels": labels, "counts": matrix.tolist()},
        "f1_optimal": {("all" if k == "all" else names[k]): v for k, v in best.items()},
        "ap_by_size": {k: metrics.get(k) for k in SIZE_KEYS},
        "ap_by_count": ap_by_count(gt, results, tide),
        "worst_images": worst_list,
    }
    rep = ModelReport(name, numbers)
    rep.figures["confusion"] = _confusion_figure(matrix, labels, name, conf)
    rep.figures["pr"] = _curve_figure(cv, names, "recall", "precision", f"{name}: precision-"
                                      "recall at IoU 0.5")
    rep.figures["f1"] = _curve_figure(cv, names, "thresholds", "f1", f"{name}: F1 against the "
                                      "score threshold", best=best)
    if images_dir is not None:
        rep.worst = [(w, _side_by_side(gt, tide, w["image_id"], images_dir, conf))
                     for w in worst_list]
        rep.worst = [(w, img) for w, img in rep.worst if img is not None]
    return rep


def _confusion_figure(matrix: np.ndarray, labels: list[str], name: str, conf: float) -> bytes:
    plt = _plt()
    n = len(labels)
    size = max(5.0, 0.45 * n + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    rows = matrix.sum(1, keepdims=True)
    normed = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    for ax, data, title, fmt in ((axes[0], matrix, "counts", "{:d}"),
                                 (axes[1], normed, "row-normalised", "{:.2f}")):
        ax.imshow(data, cmap="Blues")
        ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title=f"{name}: {title} (IoU 0.5, score >= "
                                                          f"{conf:g})")
        if n <= 25:
            top = data.max() or 1
            for i in range(n):
                for j in range(n):
                    if data[i, j]:
                        ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center",
                                fontsize=7, color="white" if data[i, j] > 0.6 * top else "black")
    fig.tight_layout()
    return _png(fig)


def _curve_figure(cv, names, x_key: str, y_key: str, title: str, best=None) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    keys = [k for k in cv.f1 if k != "all"]
    for key in keys[:20]:  # more classes than that is a blur: "all" carries the rest
        x, y = getattr(cv, x_key)[key], getattr(cv, y_key)[key]
        if len(x):
            ax.plot(x, y, lw=1, alpha=0.7, label=names[key])
    x, y = getattr(cv, x_key)["all"], getattr(cv, y_key)["all"]
    if len(x):
        ax.plot(x, y, lw=2.5, color="black", label="all classes")
    if best and best.get("all"):
        b = best["all"]
        ax.plot([b["conf"]], [b["f1"]], "o", color="red",
                label=f"best F1 {b['f1']:.2f} at {b['conf']:.2f}")
    xlabel = "score threshold" if x_key == "thresholds" else x_key
    ax.set(xlabel=xlabel, ylabel=y_key if y_key != "f1" else "F1", xlim=(0, 1), ylim=(0, 1.02),
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left" if y_key == "precision" else "upper right")
    fig.tight_layout()
    return _png(fig)


def _side_by_side(gt, tide: TideResult, image_id: int, images_dir: Path,
                  conf: float) -> bytes | None:
    """Ground truth (left) and the detections scoring >= ``conf`` (right) of one image, as a
    JPEG; None when the image cannot be read."""
    from PIL import Image

    from ..core.detections import Detections
    from ..errors import ImageError
    from ..io.draw import DrawStyle, annotate
    from ..io.images import load_image

    im = next(i for i in gt.images if i["id"] == image_id)
    try:
        rgb = load_image(Path(images_dir) / im["file_name"], exif=False)
    except (ImageError, OSError):
        return None
    cats = sorted(c["id"] for c in gt.categories)
    label = {c: k + 1 for k, c in enumerate(cats)}
    names = gt.category_names()
    h, w = rgb.shape[:2]

    def detections(boxes, cat_ids, scores):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        return Detections(boxes, np.asarray(scores, np.float32),
                          np.asarray([label[c] for c in cat_ids], np.int64),
                          np.asarray(cat_ids, np.int64), [names[c] for c in cat_ids], w, h)

    truth = tide.truths[image_id]
    left = annotate(rgb, detections(truth.boxes, [int(c) for c in truth.cats],
                                    np.ones(len(truth.cats))), style=DrawStyle(conf=False))
    mine = [d for d in tide.detections if d.image_id == image_id and d.score >= conf]
    right = annotate(rgb, detections([d.box for d in mine], [d.category_id for d in mine],
                                     [d.score for d in mine]))
    both = Image.new("RGB", (2 * w + 8, h), (255, 255, 255))
    both.paste(left, (0, 0))
    both.paste(right, (w + 8, 0))
    if both.width > 1600:  # an HTML page, not an archive: keep it light
        both = both.resize((1600, max(1, round(h * 1600 / both.width))))
    buf = io.BytesIO()
    both.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _tide_figure(reports: list[ModelReport]) -> bytes:
    plt = _plt()
    kinds = [*ERROR_TYPES, "FP", "FN"]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(reports))
    x = np.arange(len(kinds))
    for k, rep in enumerate(reports):
        dap = rep.numbers["tide"]["dAP"]
        ax.bar(x + k * width, [100 * dap[t] for t in kinds], width, label=rep.name)
    ax.set_xticks(x + width * (len(reports) - 1) / 2,
                  [ERROR_NAMES.get(t, t) for t in kinds], rotation=20, fontsize=8)
    ax.set(ylabel="dAP50 (AP points gained by fixing)", title="TIDE error breakdown")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def write_report(out: Path, reports: list[ModelReport], rows: list[dict], annotations: str) -> Path:
    """``out/report.html``, ``out/report.json`` and ``out/report/*.png`` (+ worst images as
    JPEG) for ``reports`` (``rows``: the models' metric rows, side by side)."""
    folder = Path(out) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    figures = {"tide.png": _tide_figure(reports)}
    for rep in reports:
        for key, png in rep.figures.items():
            figures[f"{rep.name}-{key}.png"] = png
        for k, (entry, jpeg) in enumerate(rep.worst, 1):
            figures[f"{rep.name}-worst-{k}.jpg"] = jpeg
    for fname, data in figures.items():
        (folder / fname).write_bytes(data)
    doc = {"annotations": annotations,
           "models": [{"model": rep.name,
                       "metrics": {k: v for k, v in row.items() if k != "per_class"},
                       "per_class_AP": row.get("per_class"), **rep.numbers}
                      for rep, row in zip(reports, rows)]}
    write_json_atomic(Path(out) / "report.json", doc)
    write_text_atomic(Path(out) / "report.html", _html(reports, rows, figures, annotations))
    return Path(out) / "report.html"


def _img(figures: dict, name: str, alt: str) -> str:
    kind = "jpeg" if name.endswith(".jpg") else "png"
    data = base64.b64encode(figures[name]).decode()
    return f'<img src="data:image/{kind};base64,{data}" alt="{html.escape(alt)}">'


def _table(head: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4f}" if v >= 0 else "-"
        return html.escape("-" if v is None else str(v))

    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
            + "</table>")


_CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:4px 0}h2{border-bottom:1px solid #ccc}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
.note{color:#555;font-size:90%}"""


def _html(reports: list[ModelReport], rows: list[dict], figures: dict, annotations: str) -> str:
    metric_keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>singleshot eval "
             f"report</title><style>{_CSS}</style></head><body>",
             "<h1>Why the AP is what it is</h1>",
             f"<p class=note>annotations: {html.escape(str(annotations))}</p>",
             "<h2>COCO metrics</h2>",
             _table(["model", *metric_keys], [[r["model"], *(r.get(k) for k in metric_keys)]
                                              for r in rows])]
    kinds = [*ERROR_TYPES, "FP", "FN"]
    parts += ["<h2>Errors (TIDE)</h2>",
              "<p class=note>dAP50: AP at IoU 0.5 gained by fixing that error type alone (Bolya "
              "et al., ECCV 2020); counts: false positives of each type, missed objects.</p>",
              _table(["model", "AP50", *(f"d {ERROR_NAMES.get(k, k)}" for k in kinds)],
                     [[rep.name, rep.numbers["tide"]["AP50"],
                       *(rep.numbers["tide"]["dAP"][k] * 100 for k in kinds)] for rep in reports])
              .replace("<th>d ", "<th>dAP ") + "<p class=note>dAP in AP points (x100).</p>",
              _table(["model", *(ERROR_NAMES[k] for k in ERROR_TYPES)],
                     [[rep.name, *(rep.numbers["tide"]["counts"][k] for k in ERROR_TYPES)]
                      for rep in reports]),
              _img(figures, "tide.png", "TIDE error breakdown")]
    parts.append("<h2>AP by object size and by objects per image</h2>")
    parts.append(_table(["model", "small", "medium", "large", *(
        f"{b['objects']} obj." for b in reports[0].numbers["ap_by_count"])],
        [[rep.name, *(rep.numbers["ap_by_size"][k] for k in SIZE_KEYS),
          *(b["AP"] for b in rep.numbers["ap_by_count"])] for rep in reports]))
    for rep in reports:
        name = rep.name
        parts.append(f"<h2>{html.escape(name)}</h2>")
        best = rep.numbers["f1_optimal"]
        parts.append("<p class=note>F1-optimal score threshold per class: what --conf should be "
                     "for people.</p>")
        parts.append(_table(["class", "best conf", "F1", "precision", "recall"],
                            [[k, *(None,) * 4] if v is None else
                             [k, v["conf"], v["f1"], v["precision"], v["recall"]]
                             for k, v in best.items()]))
        parts.append('<div class=grid>' + _img(figures, f"{name}-pr.png", f"{name} PR curves")
                     + _img(figures, f"{name}-f1.png", f"{name} F1 curves") + "</div>")
        parts.append(_img(figures, f"{name}-confusion.png", f"{name} confusion matrix"))
        if rep.worst:
            parts.append("<h3>Images that lose the most AP (ground truth | detections)</h3>")
            for k, (entry, _) in enumerate(rep.worst, 1):
                parts.append(f"<p class=note>image {entry['image_id']}: dAP50 "
                             f"{100 * entry['dAP']:.2f} points, {entry['false_positives']} false "
                             f"positive(s), {entry['missed']} missed</p>"
                             + _img(figures, f"{name}-worst-{k}.jpg", f"image {entry['image_id']}"))
    parts.append("</body></html>")
    return "\n".join(parts)


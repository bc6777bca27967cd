"""`singleshot demo`: held-out synthetic scenes -> the bundled model -> annotated images,
detections.json and a short report (Markdown and HTML) with mAP and per-stage timings."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.synth import CLASSES, make_scene
from ..eval.annotations import load_annotations
from ..eval.coco import coco_score
from ..eval.runner import category_map
from ..io.draw import annotate
from ..io.files import write_json_atomic, write_text_atomic
from ..io.images import load_image
from ..io.tables import markdown_table
from ..runtime.detector import Detector
from ..runtime.report import DetectionReport, ImageResult

# The bundled int8 variants (accuracy-aware `singleshot quantize`, see assets/demo.md).
INT8_VARIANTS = (("demo-int8-qdq", "int8 QDQ"), ("demo-int8-qoperator", "int8 QOperator"))

# Scenes the bundled model never saw: it was trained on seed 1 and validated on seed 2.
DEMO_SEED = 20261123


@dataclass
class DemoResult:
    out: Path
    metrics: dict
    timings_ms: dict
    n_images: int
    n_detections: int
    card: list[dict] | None = None  # fp32 vs int8 rows (bundled model only)


def run_demo(out: Path, model: str = "demo", n_images: int = 12, conf: float = 0.3,
             seed: int = DEMO_SEED, compare: bool = True) -> DemoResult:
    """Write the demo into ``out``; detections drawn at ``conf`` and above (all count for mAP).
    With ``compare`` and the bundled model, its int8 variants run on the same scenes too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenes").mkdir(exist_ok=True)
    (out / "annotated").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    images, anns = [], []
    for i in range(n_images):
        img, objects = make_scene(seed, i)
        name = f"scene_{i:03d}.jpg"
        Image.fromarray(img).save(out / "scenes" / name, quality=92)
        images.append({"id": i + 1, "file_name": name, "width": img.shape[1], "height": img.shape[0]})
        for o in objects:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": o["category_id"],
                         "bbox": o["bbox"], "area": o["bbox"][2] * o["bbox"][3], "iscrowd": 0})
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]
    write_json_atomic(out / "annotations.json", {"images": images, "annotations": anns,
                                                 "categories": categories}, indent=None)
    generate_ms = (time.perf_counter() - t0) * 1e3
    gt = load_annotations(out / "annotations.json")
    det = Detector(model, exif=False)
    cats = category_map(det.spec, gt)  # a model of other classes: the same clear error as eval
    stages = {"decode": [], "preprocess": [], "inference": [], "postprocess": []}
    report, results, rgbs = DetectionReport(det.name), [], []
    for im in images:
        path = out / "scenes" / im["file_name"]
        t = time.perf_counter()
        rgb = load_image(path, exif=False)
        stages["decode"].append((time.perf_counter() - t) * 1e3)
        rgbs.append(rgb)
        d = det.detect_array(rgb, clip=False, path=str(path))
        d.category_ids = cats[d.labels - 1]
        for k in ("preprocess", "inference", "postprocess"):
            stages[k].append(d.timings[k])
        results += d.to_coco(im["id"])
        shown = d[d.scores >= conf]
        annotate(rgb, shown).save(out / "annotated" / im["file_name"], quality=90)
        report.images.append(ImageResult(str(path), shown))
    doc = report.to_dict()
    write_json_atomic(out / "detections.json", doc)
    score = coco_score(gt, results)
    timings = {k: float(np.mean(v)) for k, v in stages.items()}
    timings["scene generation (all)"] = generate_ms
    res = DemoResult(out, score.metrics, timings, n_images, len(results))
    if compare and model == "demo":
        res.card = card_table(images, rgbs, gt, score.metrics["AP"], timings["inference"])
    _write_reports(res, det, doc, conf)
    return res


def card_table(images: list[dict], rgbs: list[np.ndarray], gt, fp32_ap: float,
               fp32_ms: float) -> list[dict]:
    """The model card's table for the bundled model: fp32 and its int8 variants on the same
    decoded scenes (``rgbs``, in ``images`` order) - mAP, change vs fp32, mean inference time
    and speed-up."""
    rows = [{"model": "demo", "format": "fp32", "AP": fp32_ap, "inference_ms": fp32_ms}]
    for name, fmt in INT8_VARIANTS:
        det = Detector(name, exif=False)
        results, ms = [], []
        for im, rgb in zip(images, rgbs):
            d = det.detect_array(rgb, clip=False)
            ms.append(d.timings["inference"])
            results += d.to_coco(im["id"])
        rows.append({"model": name, "format": fmt, "AP": coco_score(gt, results).metrics["AP"],
                     "inference_ms": float(np.mean(ms))})
    for r in rows:
        r["AP_change"] = (r["AP"] - fp32_ap) / fp32_ap if fp32_ap > 0 else None
        r["speedup"] = fp32_ms / r["inference_ms"]
    return rows


def slower_than_fp32(rows: list[dict]) -> list[str]:
    """The int8 variants of the card whose inference is slower than fp32's (none: no note)."""
    return [r["model"] for r in rows if r["format"] != "fp32" and r["speedup"] < 1]


def card_markdown(rows: list[dict]) -> str:
    cells = [[r["model"], r["format"], f"{r['AP']:.4f}",
              "-" if r["format"] == "fp32" or r["AP_change"] is None else f"{r['AP_change'] * 100:+.2f}%",
              f"{r['inference_ms']:.2f}", f"{r['speedup']:.2f}x"] for r in rows]
    return markdown_table(["model", "precision", "mAP", "vs fp32", "inference ms", "speed-up"], cells)



def _write_reports(res: DemoResult, det: Detector, doc: dict, conf: float) -> None:
    m = res.metrics
    rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in res.timings_ms.items())
    md = (f"# singleshot demo\n\nModel: `{det.name}` ({det.spec.num_classes} classes: "
          f"{', '.join(det.spec.class_names)}; input {det.spec.input_size[0]}x"
          f"{det.spec.input_size[1]})\n\n{res.n_images} held-out synthetic scenes. COCO box mAP "
          f"(pycocotools): **AP {m['AP']:.3f}**, AP50 {m['AP50']:.3f}, AP75 {m['AP75']:.3f}.\n\n"
          f"| stage | ms per image |\n|---|---|\n{rows}\n\n"
          + (f"fp32 and int8 on the same scenes (the model card's table):\n\n{card_markdown(res.card)}\n"
             if res.card else "") +
          f"`annotated/` and `detections.json` show the detections with score >= {conf}; the "
          "mAP counts all of them.\n")
    write_text_atomic(res.out / "report.md", md)
    figs = "\n".join(
        f'<figure><img src="annotated/{html.escape(Path(i["path"]).name)}" width="320">'
        f'<figcaption>{len(i["detections"])} detections</figcaption></figure>'
        for i in doc["images"])
    trs = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.1f}</td></tr>"
                  for k, v in res.timings_ms.items())
    card = ""
    if res.card:
        card = "<h2>fp32 and int8 on the same scenes</h2><table><tr>" + "".join(
            f"<th>{h}</th>" for h in ("model", "precision", "mAP", "vs fp32", "inference ms",
                                      "speed-up")) + "</tr>" + "".join(
            f"<tr><td>{html.escape(r['model'])}</td><td>{r['format']}</td><td>{r['AP']:.4f}</td>"
            f"<td>{'-' if r['format'] == 'fp32' else format(r['AP_change'] or 0, '+.2%')}</td>"
            f"<td>{r['inference_ms']:.2f}</td><td>{r['speedup']:.2f}x</td></tr>"
            for r in res.card) + "</table>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>singleshot demo</title>"
            "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:4px}"
            "td{padding:2px 10px}</style></head><body>"
            f"<h1>singleshot demo</h1><p>Model <code>{html.escape(det.name)}</code>, "
            f"{res.n_images} held-out synthetic scenes: <b>AP {m['AP']:.3f}</b>, "
            f"AP50 {m['AP50']:.3f}, AP75 {m['AP75']:.3f} (pycocotools).</p>"
            f"<table><tr><th>stage</th><th>ms per image</th></tr>{trs}</table>{card}{figs}</body></html>")
    write_text_atomic(res.out / "report.html", page)

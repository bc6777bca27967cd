"""``detect``'s results in the formats other tools read, written from the detect document's image
entries (``{"path", "width", "height", "detections": [{"box": [x1, y1, x2, y2] pixels, "score",
"category_id", "category"}], "error"[, "annotated"]}``, as :mod:`.report` builds and journals
them), so a resumed run writes each file once, from every input's one result.

- YOLO txt (``labels/<stem>.txt``): a line per detection, ``class cx cy w h [score]``; class is
  the 0-based index of the category in the model's class order, the box normalised by the image
  size. An image without detections gets an empty file; a failed image none.
- COCO results JSON: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`` with the
  model's category ids. Image ids are data, taken from the annotations the results belong to
  (:func:`image_ids_from`: by ``file_name``, as ``eval`` joins them) when there are any; without
  them, the file names' numbers when every name is a number (as COCO's ``000000000139.jpg`` is
  image 139), else the input's position, from 1.
- CSV: a row per detection (path, width, height, x1, y1, x2, y2, score, category_id, category).
- crops (:class:`CropWriter`): ``DIR/<category>/<stem>_<n>.jpg``, n the detection's rank in
  its image, from 1.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..core.detections import Detections
from ..io.files import ensure_dir, write_text_atomic


class Stems:
    """File stems unique within a run, given in input order: the annotated image's stem where
    there is one (its name is already unique), else the input's stem, ``_2``, ``_3``... on
    repeats (``used``: stems taken already). Annotated images, crops (as results come) and label
    files (at the end) name an image alike."""

    def __init__(self, used: Iterable[str] = ()) -> None:
        self.used: set[str] = set(used)

    def __call__(self, path: str | None, annotated: str | None = None) -> str:
        if annotated:  # unique already, across resumed runs too
            self.used.add(Path(annotated).stem)
            return Path(annotated).stem
        stem = _stem(path)
        name, k = stem, 1
        while name in self.used:
            k += 1
            name = f"{stem}_{k}"
        self.used.add(name)
        return name


def stems(entries: list[dict]) -> list[str]:
    """:class:`Stems` of the detect document's entries, in order."""
    alloc = Stems()
    return [alloc(e["path"], e.get("annotated")) for e in entries]


def _stem(path: str | None) -> str:
    """The file stem of a path or URL (its query left out)."""
    return Path(str(path or "image").split("?")[0]).stem or "image"


def yolo_text(entry: dict, category_ids: Iterable[int], with_score: bool = False) -> str:
    """One image's YOLO label file (``class cx cy w h [score]``, normalised, 6 decimals)."""
    index = {int(c): k for k, c in enumerate(category_ids)}
    w, h = entry["width"], entry["height"]
    lines = []
    for d in entry["detections"]:
        x1, y1, x2, y2 = d["box"]
        values = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
        line = f"{index[int(d['category_id'])]} " + " ".join(f"{v:.6f}" for v in values)
        lines.append(line + (f" {d['score']:.5f}" if with_score else ""))
    return "".join(f"{ln}\n" for ln in lines)


def write_yolo_labels(entries: list[dict], folder: str | Path, category_ids: Iterable[int],
                      with_score: bool = False) -> int:
    """``folder/<stem>.txt`` for every image read; returns how many files were written."""
    folder = ensure_dir(folder, "save_txt")
    ids, n = list(category_ids), 0
    for entry, stem in zip(entries, stems(entries)):
        if entry.get("error") is None and entry.get("width"):
            write_text_atomic(folder / f"{stem}.txt", yolo_text(entry, ids, with_score))
            n += 1
    return n


class ImageIds:
    """Image ids of a COCO annotation file by the images' paths: ``file_name`` relative to the
    set's image folder (``root``), else the base name when no two images share it."""

    def __init__(self, coco: dict, root: Path) -> None:
        self.root = Path(root).resolve()
        self.by_name = {str(im["file_name"]).replace("\\", "/"): int(im["id"])
                        for im in coco.get("images", [])}
        base: dict[str, list[int]] = {}
        for name, i in self.by_name.items():
            base.setdefault(name.rsplit("/", 1)[-1], []).append(i)
        self.by_base = {k: v[0] for k, v in base.items() if len(v) == 1}

    def __call__(self, path: str) -> int | None:
        try:
            rel = Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            rel = None
        if rel in self.by_name:
            return self.by_name[rel]
        return self.by_base.get(Path(path).name)


def image_ids_from(annotations: str | Path) -> ImageIds:
    """:class:`ImageIds` of a COCO annotation file, or of a set's folder (its
    ``annotations.json``); the images are in ``images/`` beside the file when there is one
    (``data synth`` and ``data convert`` lay sets out so), else beside the file."""
    from ..errors import UsageError

    p = Path(annotations)
    file = p / "annotations.json" if p.is_dir() else p
    try:
        coco = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{{opt:annotations}} {file}: not a COCO annotation file "
                         f"({getattr(err, 'strerror', None) or type(err).__name__})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise UsageError(f"{{opt:annotations}} {file}: not a COCO annotation file (no 'images')")
    root = file.parent / "images" if (file.parent / "images").is_dir() else file.parent
    return ImageIds(coco, root)


def set_annotations(paths: list) -> Path | None:
    """The annotation file of the set the inputs come from, when they all lie in one set's
    ``images/`` folder beside an ``annotations.json`` (what ``data synth`` and ``data convert``
    write); None otherwise."""
    folders = {Path(p).resolve().parent for p in paths if not str(p).startswith(("http:", "https:"))}
    if len(folders) != 1:
        return None
    (folder,) = folders
    candidate = folder.parent / "annotations.json"
    return candidate if folder.name == "images" and candidate.is_file() else None


def coco_results(entries: list[dict], image_id=None) -> list[dict]:
    """COCO results entries for every detection (image ids as the module says: ``image_id``,
    an :class:`ImageIds`, when given - an input it does not know is left out)."""
    ok = [e for e in entries if e.get("error") is None and e.get("width")]
    names = [_stem(e["path"]) for e in ok]
    numbered = bool(names) and all(n.isdigit() for n in names) and \
        len({int(n) for n in names}) == len(names)
    out = []
    for k, e in enumerate(entries, 1):
        if e.get("error") is not None or not e.get("width"):
            continue
        if image_id is not None:
            found = image_id(e["path"])
            if found is None:
                continue
        else:
            found = int(_stem(e["path"])) if numbered else k
        for d in e["detections"]:
            x1, y1, x2, y2 = d["box"]
            out.append({"image_id": found, "category_id": int(d["category_id"]),
                        "bbox": [x1, y1, x2 - x1, y2 - y1], "score": d["score"]})
    return out


def write_coco(entries: list[dict], path: str | Path, image_id=None) -> int:
    results = coco_results(entries, image_id)
    write_text_atomic(Path(path), json.dumps(results))
    return len(results)


CSV_COLUMNS = ("path", "width", "height", "x1", "y1", "x2", "y2", "score", "category_id",
               "category")


def write_csv(entries: list[dict], path: str | Path) -> int:
    buf, n = io.StringIO(), 0
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        for d in e.get("detections") or ():
            writer.writerow([e["path"], e["width"], e["height"], *d["box"], d["score"],
                             d["category_id"], d["category"]])
            n += 1
    write_text_atomic(Path(path), buf.getvalue())
    return n


class CropWriter:
    """``DIR/<category>/<stem>_<n>.jpg``: each detection's box cut from the image (pixels,
    clipped to it; a box with no area inside it is left out)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = ensure_dir(folder, "save_crops")

    def __call__(self, stem: str, rgb: np.ndarray, det: Detections) -> int:
        from PIL import Image

        h, w = rgb.shape[:2]
        n = 0
        for k, (box, name) in enumerate(zip(det.xyxy, det.names), 1):
            x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
            x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
            if x2 <= x1 or y2 <= y1:
                continue
            where = self.folder / re.sub(r"[^\w.-]", "_", name)
            where.mkdir(exist_ok=True)
            Image.fromarray(np.ascontiguousarray(rgb[y1:y2, x1:x2])).save(
                where / f"{stem}_{k}.jpg", quality=92)
            n += 1
        return n

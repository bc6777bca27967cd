"""COCO-format annotation files: loading with clear errors, and the small conveniences the
evaluator and the trainer share (image lists, category maps)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError


class AnnotationError(UsageError):
    """A COCO annotation file that cannot be used (exit code 2: the input given is wrong)."""


@dataclass
class CocoAnnotations:
    """A parsed instances file. ``data`` is the JSON dict as pycocotools reads it; ``fixes`` lists
    the repairs made (missing ``area`` / ``iscrowd``), which pycocotools would have crashed on."""

    path: str
    data: dict
    fixes: list[str]

    @property
    def images(self) -> list[dict]:
        return self.data["images"]

    @property
    def categories(self) -> list[dict]:
        return self.data["categories"]

    def annotated_image_ids(self) -> set[int]:
        return {a["image_id"] for a in self.data["annotations"]}

    def category_names(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in self.categories}

    def to_pycocotools(self):
        """A ``pycocotools.coco.COCO`` built from the parsed data (no second read, no prints)."""
        import contextlib
        import io

        from pycocotools.coco import COCO

        coco = COCO()
        coco.dataset = self.data
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco


def _need(cond: bool, path: str, msg: str) -> None:
    if not cond:
        raise AnnotationError(f"{path}: {msg}")


def load_annotations(path: str | os.PathLike) -> CocoAnnotations:
    """Read and check a COCO instances file; AnnotationError names the first problem found."""
    name = str(path)
    p = Path(path)
    _need(p.is_file(), name, "no such annotation file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise AnnotationError(f"{name}: not a text (JSON) file") from None
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{name}: not valid JSON ({err.msg} at line {err.lineno})") from None
    return check_annotations(data, name)


def check_annotations(data, name: str) -> CocoAnnotations:
    """Check a COCO instances dict (as read from a file, or made from a YOLO or VOC set:
    :mod:`singleshot.data.formats`); AnnotationError names the first problem found."""
    _need(isinstance(data, dict), name, "expected a JSON object with images, annotations, "
          "categories")
    for key in ("images", "annotations", "categories"):
        _need(isinstance(data.get(key), list), name, f"missing or malformed '{key}' list")
    fixes: list[str] = []
    ids = set()
    for i, img in enumerate(data["images"]):
        _need(isinstance(img, dict) and isinstance(img.get("id"), int) and "file_name" in img,
              name, f"images[{i}] needs an integer 'id' and a 'file_name'")
        ids.add(img["id"])
    _need(len(ids) == len(data["images"]), name, "duplicate image ids")
    cat_ids = set()
    for i, cat in enumerate(data["categories"]):
        _need(isinstance(cat, dict) and isinstance(cat.get("id"), int) and "name" in cat,
              name, f"categories[{i}] needs an integer 'id' and a 'name'")
        cat_ids.add(cat["id"])
    missing_area = missing_crowd = 0
    for i, ann in enumerate(data["annotations"]):
        _need(isinstance(ann, dict), name, f"annotations[{i}] is not an object")
        _need(ann.get("image_id") in ids, name,
              f"annotations[{i}] refers to image id {ann.get('image_id')!r}, not in 'images'")
        _need(ann.get("category_id") in cat_ids, name,
              f"annotations[{i}] has category id {ann.get('category_id')!r}, not in 'categories'")
        box = ann.get("bbox")
        _need(isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float))
                                                              for v in box),
              name, f"annotations[{i}] needs 'bbox' as [x, y, width, height]")
        if "id" not in ann:
            ann["id"] = i + 1
        if "area" not in ann:
            ann["area"] = float(box[2] * box[3])
            missing_area += 1
        if "iscrowd" not in ann:
            ann["iscrowd"] = 0
            missing_crowd += 1
    if missing_area:
        fixes.append(f"{missing_area} annotation(s) had no 'area': used bbox width*height")
    if missing_crowd:
        fixes.append(f"{missing_crowd} annotation(s) had no 'iscrowd': used 0")
    return CocoAnnotations(name, data, fixes)

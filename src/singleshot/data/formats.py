"""The dataset layouts people have, read into one form and written back out:

- COCO: ``annotations.json`` + ``images/`` (what ``data synth`` writes), or any instances file;
- YOLO: ``data.yaml`` (``path``, ``train`` / ``val`` image folders or lists, ``names``), labels
  in ``labels/`` beside ``images/``, one ``class cx cy w h`` line per box, normalised;
- Pascal VOC: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``; a
  ``labels.txt`` (one class name a line) fixes the class order, else the 20 VOC classes when
  they cover the names, else the names sorted. ``difficult`` boxes become crowd regions (ignored
  by the evaluation, as VOC's own metric ignores them).

Every reader gives a :class:`Dataset`: a COCO instances dict (pixel ``[x, y, w, h]`` boxes,
category ids 1..C in the dataset's class order, ``file_name`` relative to ``root``), and
``problems``: one line per malformed entry, naming the file and line (a label line that is not 5
numbers, a class index past ``names``, a box outside the image, an XML without ``size``, a
listed image that is missing) - the entry is left out and the rest is used.

Written by hand: no maintained library reads all three into COCO without pulling a training
framework with it (pycocotools reads COCO only).
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .categories import Categories

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
LAYOUTS = ("coco", "yolo", "voc")
EDGE = 1e-3  # normalised slack for a box edge past the image (rounding of written labels)


@dataclass
class Dataset:
    """One split of a dataset: ``coco`` (instances dict; images' ``file_name`` relative to
    ``root``), the ``layout`` it was read from, and the ``problems`` left out."""

    layout: str
    root: Path
    coco: dict
    problems: list[str] = field(default_factory=list)

    @property
    def categories(self) -> Categories:
        """Category id <-> class index <-> name (:mod:`singleshot.data.categories`)."""
        return Categories.of(self.coco, str(self.root))

    @property
    def class_names(self) -> list[str]:
        return list(self.categories.names)


def detect_layout(path: str | os.PathLike) -> str:
    """``coco``, ``yolo`` or ``voc`` from what ``path`` holds; UsageError saying what was
    looked for."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
        return "yolo"
    if p.is_file() and p.suffix.lower() == ".json":
        return "coco"
    if p.is_dir():
        if (p / "data.yaml").is_file() or (p / "data.yml").is_file():
            return "yolo"
        if (p / "Annotations").is_dir() and (p / "JPEGImages").is_dir():
            return "voc"
        if (p / "annotations.json").is_file():
            return "coco"
    raise UsageError(f"{path}: not a dataset this reads - a COCO set (annotations.json + images/, "
                     "or an instances .json), a YOLO set (data.yaml) or a Pascal VOC set "
                     "(Annotations/ + JPEGImages/)")


def read_dataset(path: str | os.PathLike, split: str = "train") -> Dataset:
    """The ``split`` of the dataset at ``path``, whatever its layout (:func:`detect_layout`).
    A COCO set has one split: the file given."""
    layout = detect_layout(path)
    return {"coco": read_coco, "yolo": read_yolo, "voc": read_voc}[layout](Path(path), split)


def read_coco(path: Path, split: str = "train") -> Dataset:
    """A COCO set: the instances file given, or ``annotations.json`` of the folder; a split
    other than ``train`` is ``<split>/annotations.json`` when the folder has one (as
    :func:`write_dataset` lays them out), else the set itself (a folder given as ``--val``)."""
    import json

    if path.is_file():
        ann = path
    elif split != "train" and (path / split / "annotations.json").is_file():
        ann = path / split / "annotations.json"
    else:
        ann = path / "annotations.json"
    root = ann.parent / "images" if (ann.parent / "images").is_dir() else ann.parent
    try:
        data = json.loads(ann.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{ann}: not a COCO annotation file ({type(err).__name__})") from None
    problems: list[str] = []
    if isinstance(data, dict) and isinstance(data.get("images"), list) and \
            isinstance(data.get("annotations"), list):  # else the checker says what is wrong
        missing = {im.get("id") for im in data["images"] if isinstance(im, dict)
                   and not (root / str(im.get("file_name", ""))).is_file()}
        problems = [f"{root / str(im.get('file_name'))}: missing image" for im in data["images"]
                    if isinstance(im, dict) and im.get("id") in missing]
        if missing:
            data = dict(data, images=[im for im in data["images"] if not (
                isinstance(im, dict) and im.get("id") in missing)],
                annotations=[a for a in data["annotations"] if not (
                    isinstance(a, dict) and a.get("image_id") in missing)])
    return Dataset("coco", root, data, problems)


def splits_of(path: str | os.PathLike) -> list[str]:
    """The splits a dataset has, of train / val / test (a COCO file or a VOC folder without
    ImageSets lists: train only)."""
    p, layout = Path(path), detect_layout(path)
    if layout == "yolo":
        file, doc = _yolo_yaml(p)
        return [s for s in ("train", "val", "test") if _yolo_split(file, doc, s) is not None] \
            or ["train"]
    if layout == "voc":
        main = p / "ImageSets" / "Main"
        found = [s for s in ("train", "val", "test") if (main / f"{s}.txt").is_file()]
        return found or ["train"]
    return ["train"] + [s for s in ("val", "test")
                        if p.is_dir() and (p / s / "annotations.json").is_file()]


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None


def _builder(names: list[str]):
    images, anns = [], []
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]

    def image(file_name: str, w: int, h: int) -> int:
        images.append({"id": len(images) + 1, "file_name": file_name, "width": w, "height": h})
        return len(images)

    def box(image_id: int, cls: int, x0: float, y0: float, x1: float, y1: float,
            crowd: bool = False) -> None:
        w, h = x1 - x0, y1 - y0
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cls + 1,
                     "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
                     "area": round(w * h, 2), "iscrowd": int(crowd)})

    return image, box, {"images": images, "annotations": anns, "categories": cats}


# -- YOLO ---------------------------------------------------------------------------------------

def _yolo_yaml(path: Path) -> tuple[Path, dict]:
    try:
        import yaml
    except ImportError:
        raise UsageError("a YOLO data.yaml needs the 'yolo' extra (yaml is not installed): "
                         "pip install 'singleshot[yolo]'") from None
    file = path if path.is_file() else next(p for p in (path / "data.yaml", path / "data.yml")
                                            if p.is_file())
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UsageError(f"{file}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict) or "names" not in doc:
        raise UsageError(f"{file}: a YOLO data.yaml needs 'names' (and 'train' / 'val')")
    return file, doc


def _yolo_images(base: Path, entry) -> list[Path]:
    """The images of a ``train`` / ``val`` entry: folders, list files, or lists of them."""
    out: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        p = (base / str(item)).resolve()
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    q = Path(line.strip())
                    out.append(q if q.is_absolute() else (p.parent / q).resolve())
        else:
            out.append(p)  # reported as missing below
    return out


def _label_path(image: Path) -> Path:
    """YOLO's rule: the last ``images`` folder of the path becomes ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _yolo_base(file: Path, doc: dict) -> Path:
    """The folder a data.yaml's entries are relative to: its ``path`` (relative to the yaml's
    folder, as written by this tool before) or the yaml's folder when it has none."""
    return (file.parent / str(doc.get("path") or ".")).resolve()


def _yolo_split(file: Path, doc: dict, split: str):
    """The ``split`` entry of a data.yaml; a yaml with none of train/val/test (what
    supervision's ``as_yolo`` writes: ``nc`` and ``names`` only) takes ``images/<split>/``, or
    ``images/`` as train; None when there is nothing."""
    if doc.get(split):
        return doc[split]
    if any(doc.get(s) for s in ("train", "val", "test")):
        return None
    base = _yolo_base(file, doc)
    if (base / "images" / split).is_dir():
        return f"images/{split}"
    if split == "train" and (base / "images").is_dir():
        return "images"
    return None


def _yolo_names(file: Path, doc: dict) -> list[str]:
    names = doc["names"]
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise UsageError(f"{file}: 'names' keys must be class indices 0..N-1") from None
        if keys != list(range(len(keys))):
            raise UsageError(f"{file}: 'names' keys must be 0..{len(keys) - 1}, got {keys[:5]}")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    elif not isinstance(names, list):
        raise UsageError(f"{file}: 'names' must be a list or a mapping of index to name")
    nc = doc.get("nc")
    if nc is not None and nc != len(names):
        raise UsageError(f"{file}: 'nc' is {nc} but 'names' has {len(names)}")
    return [str(n) for n in names]


def read_yolo(path: Path, split: str = "train") -> Dataset:
    file, doc = _yolo_yaml(path)
    names = _yolo_names(file, doc)
    base = _yolo_base(file, doc)
    entry = _yolo_split(file, doc, split)
    if entry is None:
        raise UsageError(f"{file}: no '{split}' entry (has {', '.join(map(str, doc))}) and no "
                         f"images/{split}/ beside it")
    image, box, coco = _builder(names)
    problems: list[str] = []
    for img in _yolo_images(base, entry):
        size = _image_size(img) if img.is_file() else None
        if size is None:
            problems.append(f"{img}: {'not an image' if img.is_file() else 'missing image'}")
            continue
        w, h = size
        rel = os.path.relpath(img, base)
        image_id = image(rel, w, h)
        label = _label_path(img)
        if not label.is_file():
            continue  # an image with no objects
        for n, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{label}:{n}"
            try:
                values = [float(v) for v in line.split()]
            except ValueError:
                problems.append(f"{where}: not numbers: {line.strip()[:60]!r}")
                continue
            if len(values) != 5:
                problems.append(f"{where}: {len(values)} numbers, expected 5 (class cx cy w h)")
                continue
            cls, cx, cy, bw, bh = values
            if cls != int(cls) or not 0 <= cls < len(names):
                problems.append(f"{where}: class {values[0]:g} is not one of the {len(names)} "
                                f"names")
                continue
            x0, y0, x1, y1 = cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2
            if bw <= 0 or bh <= 0 or x0 < -EDGE or y0 < -EDGE or x1 > 1 + EDGE or y1 > 1 + EDGE:
                problems.append(f"{where}: box outside the image (cx cy w h {cx:g} {cy:g} "
                                f"{bw:g} {bh:g})")
                continue
            box(image_id, int(cls), max(0.0, x0) * w, max(0.0, y0) * h, min(1.0, x1) * w,
                min(1.0, y1) * h)
    return Dataset("yolo", base, coco, problems)


# -- Pascal VOC ---------------------------------------------------------------------------------

def _voc_names(root: Path, found: set[str]) -> list[str]:
    listed = root / "labels.txt"
    if listed.is_file():
        names = [n.strip() for n in listed.read_text(encoding="utf-8").splitlines() if n.strip()]
        return names + sorted(found - set(names))
    if found <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return sorted(found)


def read_voc(path: Path, split: str = "train") -> Dataset:
    ids_file = path / "ImageSets" / "Main" / f"{split}.txt"
    if ids_file.is_file():
        ids = [line.split()[0] for line in ids_file.read_text(encoding="utf-8").splitlines()
               if line.strip()]
    else:
        ids = sorted(p.stem for p in (path / "Annotations").glob("*.xml"))
    problems: list[str] = []
    parsed = []
    for stem in ids:
        xml = path / "Annotations" / f"{stem}.xml"
        try:
            node = ET.parse(xml).getroot()
        except FileNotFoundError:
            problems.append(f"{xml}: missing annotation file")
            continue
        except ET.ParseError as err:
            problems.append(f"{xml}:{err.position[0]}: not valid XML ({err})")
            continue
        size = node.find("size")
        try:
            w, h = int(float(size.findtext("width"))), int(float(size.findtext("height")))
        except (AttributeError, TypeError, ValueError):
            problems.append(f"{xml}: no <size> with width and height")
            continue
        file_name = node.findtext("filename") or f"{stem}.jpg"
        if not (path / "JPEGImages" / file_name).is_file():
            problems.append(f"{xml}: missing image JPEGImages/{file_name}")
            continue
        parsed.append((xml, file_name, w, h, node.findall("object")))
    names = _voc_names(path, {(o.findtext("name") or "").strip() for *_, objs in parsed
                              for o in objs})
    index = {n: i for i, n in enumerate(names)}
    image, box, coco = _builder(names)
    for xml, file_name, w, h, objects in parsed:
        image_id = image(file_name, w, h)
        for k, obj in enumerate(objects, 1):
            bb = obj.find("bndbox")
            try:  # VOC's boxes are 1-based pixel indices, both ends inside the box
                x0, y0, x1, y1 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError):
                problems.append(f"{xml}: object {k} has no complete <bndbox>")
                continue
            x0, y0 = x0 - 1, y0 - 1
            if x1 <= x0 or y1 <= y0 or x0 < -0.5 or y0 < -0.5 or x1 > w + 0.5 or y1 > h + 0.5:
                problems.append(f"{xml}: object {k} box outside the image ({x0 + 1:g} "
                                f"{y0 + 1:g} {x1:g} {y1:g} in {w}x{h})")
                continue
            name = (obj.findtext("name") or "").strip()
            box(image_id, index[name], max(0.0, x0), max(0.0, y0), min(float(w), x1),
                min(float(h), y1), crowd=(obj.findtext("difficult") or "0").strip() == "1")
    return Dataset("voc", path / "JPEGImages", coco, problems)


# -- writing ------------------------------------------------------------------------------------

def _place(src: Path, dst: Path) -> None:
    """The image at ``dst``: a hard link where the file system allows, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class _Names:
    """File names in one output folder, unique: a name already taken by another image gets the
    split as a prefix (``val_000001.jpg``), then a counter - VOC keeps every split's images in
    one JPEGImages/, and a YOLO list may gather images of several folders."""

    def __init__(self) -> None:
        self.taken: dict[str, Path] = {}

    def __call__(self, src: Path, split: str) -> str:
        name, k = src.name, 1
        while name in self.taken and self.taken[name] != src:
            name = f"{split}_{src.name}" if k == 1 else f"{split}{k}_{src.name}"
            k += 1
        self.taken[name] = src
        return name


def write_dataset(splits: dict[str, Dataset], out: str | os.PathLike, to: str,
                  left_out: dict | None = None) -> Path:
    """Write ``splits`` (``{"train": Dataset, "val": ...}``, one class list) as a ``to``
    dataset in ``out``; returns the file a reader opens (annotations.json, data.yaml, or the
    VOC folder). Classes go through the set's :class:`Categories` (sparse ids, ids from 0 and
    repeated names kept apart). ``left_out``: filled with what the layout cannot hold, by kind
    (``crowd``: YOLO has no crowd regions)."""
    import json

    left_out = {} if left_out is None else left_out

    if to not in LAYOUTS:
        raise UsageError(f"{{opt:to}} must be one of {', '.join(LAYOUTS)}, got {to!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cats = next(iter(splits.values())).categories
    for split, ds in splits.items():
        if ds.categories != cats:
            raise UsageError(f"the {split} split has other classes than the first split")
    if to == "coco":  # the train split (or the only one) in OUT, any other in OUT/<split>/
        first = "train" if "train" in splits else next(iter(splits))
        for split, ds in splits.items():
            where, unique, images = out if split == first else out / split, _Names(), []
            for im in ds.coco["images"]:
                name = unique(ds.root / im["file_name"], split)
                _place(ds.root / im["file_name"], where / "images" / name)
                images.append(dict(im, file_name=name))
            (where / "annotations.json").write_text(json.dumps(dict(ds.coco, images=images)))
        return out / "annotations.json"
    if to == "yolo":
        import yaml

        for split, ds in splits.items():
            boxes, unique = _boxes_by_image(ds), _Names()
            for im in ds.coco["images"]:
                name = unique(ds.root / im["file_name"], split)
                _place(ds.root / im["file_name"], out / "images" / split / name)
                lines = []
                for a in boxes.get(im["id"], []):
                    if a.get("iscrowd"):  # YOLO has no crowd regions (nor do ultralytics'
                        left_out["crowd"] = left_out.get("crowd", 0) + 1  # converters)
                        continue
                    x, y, w, h = a["bbox"]
                    W, H = im["width"], im["height"]
                    lines.append(f"{cats.index(a['category_id'])} {(x + w / 2) / W:.6f} "
                                 f"{(y + h / 2) / H:.6f} {w / W:.6f} {h / H:.6f}")
                label = out / "labels" / split / f"{Path(name).stem}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("".join(line + "\n" for line in lines))
        # no 'path': ultralytics then takes the yaml's own folder, from any working directory
        # (a relative 'path' is resolved against the working directory); supervision reads names
        doc = {**{s: f"images/{s}" for s in splits}, "nc": len(cats),
               "names": dict(enumerate(cats.names))}
        (out / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return out / "data.yaml"
    main = out / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    (out / "Annotations").mkdir(exist_ok=True)
    names = cats.distinct_names()
    (out / "labels.txt").write_text("".join(n + "\n" for n in names))
    unique = _Names()  # one JPEGImages/ for every split
    for split, ds in splits.items():
        boxes, stems = _boxes_by_image(ds), []
        for im in ds.coco["images"]:
            name = unique(ds.root / im["file_name"], split)
            _place(ds.root / im["file_name"], out / "JPEGImages" / name)
            stems.append(Path(name).stem)
            _voc_xml(out / "Annotations" / f"{Path(name).stem}.xml", name, im,
                     boxes.get(im["id"], []), lambda c: names[cats.index(c)])
        (main / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
    return out


def _boxes_by_image(ds: Dataset) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for a in ds.coco["annotations"]:
        out.setdefault(a["image_id"], []).append(a)
    return out


def _voc_xml(path: Path, file_name: str, im: dict, boxes: list[dict], name_of) -> None:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, v in (("width", im["width"]), ("height", im["height"]), ("depth", 3)):
        ET.SubElement(size, tag).text = str(v)
    for a in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name_of(a["category_id"])
        ET.SubElement(obj, "difficult").text = str(int(a.get("iscrowd", 0)))
        bb = ET.SubElement(obj, "bndbox")
        x, y, w, h = a["bbox"]
        for tag, v in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
            ET.SubElement(bb, tag).text = f"{v:.2f}"
    ET.ElementTree(root).write(path, encoding="utf-8")

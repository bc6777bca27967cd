"""The synthetic scene generator: determinism and valid annotations."""

import json

import numpy as np

from singleshot.data.synth import CLASSES, make_scene, write_dataset


def test_generator_is_deterministic(tmp_path):
    a_img, a_obj = make_scene(7, 3)
    b_img, b_obj = make_scene(7, 3)
    assert np.array_equal(a_img, b_img) and a_obj == b_obj
    c_img, c_obj = make_scene(8, 3)  # another seed: another scene (size, pixels and objects)
    assert c_obj != a_obj and (c_img.shape != a_img.shape or not np.array_equal(a_img, c_img))
    p1 = write_dataset(tmp_path / "a", 6, seed=5, workers=1)
    p2 = write_dataset(tmp_path / "b", 6, seed=5, workers=2)
    assert p1.read_text() == p2.read_text()
    for f in sorted((tmp_path / "a" / "images").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / "images" / f.name).read_bytes()
    data = json.loads(p1.read_text())
    assert [c["name"] for c in data["categories"]] == list(CLASSES) and len(CLASSES) >= 6
    for ann in data["annotations"]:
        im = data["images"][ann["image_id"] - 1]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= im["width"] + 0.01 and y + h <= im["height"] + 0.01
        assert 0.04 * min(im["width"], im["height"]) < max(w, h) < 0.95 * max(im["width"], im["height"])

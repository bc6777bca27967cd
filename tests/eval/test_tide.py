"""TIDE's error types and dAPs on hand-worked cases, one per type, and the AP against
pycocotools' AP50.

Every case: one image 100x100, classes 1 (a) and 2 (b). Ground truth A = a at [10, 10, 40, 40]
(xyxy), B = b at [60, 60, 90, 90]. The AP is tidecv's: the mean over the classes with ground
truth or detections of the 101-point interpolated AP at IoU 0.5 (pycocotools' AP50 when every
class with detections has ground truth).
"""

import pytest

from singleshot.eval.annotations import check_annotations
from singleshot.eval.coco import coco_score
from singleshot.eval.tide import ap_101, analyse


def _gt(extra=()):
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900,
             "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [60, 60, 30, 30], "area": 900,
             "iscrowd": 0}, *extra]
    return check_annotations({"images": [{"id": 1, "width": 100, "height": 100, "file_name": "1.jpg"}],
                              "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                              "annotations": anns}, "hand")


def _det(cat, xyxy, score):
    x1, y1, x2, y2 = xyxy
    return {"image_id": 1, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score}


A, B = (10, 10, 40, 40), (60, 60, 90, 90)


def test_ap_101_by_hand():
    assert ap_101([0.9], [True], 1) == pytest.approx(1.0)
    # TP, FP, TP over 2 objects: precision envelope 1 up to recall 0.5, 2/3 after
    assert ap_101([0.9, 0.8, 0.7], [1, 0, 1], 2) == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    assert ap_101([], [], 3) == 0.0 and ap_101([0.5], [1], 0) == -1.0


def test_perfect_detections_have_no_errors():
    r = analyse(_gt(), [_det(1, A, 0.9), _det(2, B, 0.8)])
    assert r.ap == pytest.approx(1.0) and all(v == 0 for v in r.counts.values())
    assert all(v == pytest.approx(0) for v in r.dap.values())


def test_classification_error():
    # a box on B called a, scoring above the true a: class a gets FP then TP -> AP_a = 0.5*...;
    # b is missed by nobody else: B is pointed at by the cls error, so not "missed"
    r = analyse(_gt(), [_det(1, B, 0.95), _det(1, A, 0.9)])
    assert r.counts == {"cls": 1, "loc": 0, "both": 0, "dupl": 0, "bkg": 0, "miss": 0}
    ap_a = ap_101([0.95, 0.9], [0, 1], 1)  # 0.5: precision 1/2 at recall 1
    assert r.ap == pytest.approx((ap_a + 0.0) / 2)
    # the oracle: the box becomes a b detection of B -> both classes perfect
    assert r.dap["cls"] == pytest.approx(1.0 - r.ap)
    assert r.dap["FP"] == pytest.approx((1.0 + 0.0) / 2 - r.ap)  # b still has nothing
    # FN: B unmatched -> taken out of the count; class b has no ground truth left
    assert r.dap["FN"] == pytest.approx(ap_a - r.ap)


def test_localisation_error_and_its_oracle():
    shifted = (22, 22, 52, 52)  # IoU with A: 18*18 / (2*900 - 324) = 0.22
    r = analyse(_gt(), [_det(1, shifted, 0.9), _det(2, B, 0.8)])
    assert r.counts["loc"] == 1 and sum(r.counts.values()) == 1
    assert r.ap == pytest.approx(0.5)  # a: no TP
    assert r.dap["loc"] == pytest.approx(0.5)  # the box becomes A's
    assert r.dap["miss"] == pytest.approx(0.0)  # A is pointed at by the loc error


def test_both_error_is_removed_and_its_object_counts_as_missed():
    near_b = (68, 68, 98, 98)  # IoU with B: 22*22 / (1800 - 484) = 0.37, class a
    r = analyse(_gt(), [_det(1, near_b, 0.95), _det(1, A, 0.9), _det(2, B, 0.5)])
    assert r.counts["both"] == 1 and r.counts["miss"] == 0
    ap_a = ap_101([0.95, 0.9], [0, 1], 1)
    assert r.ap == pytest.approx((ap_a + 1.0) / 2)
    assert r.dap["both"] == pytest.approx(1.0 - r.ap)


def test_duplicate_error():
    r = analyse(_gt(), [_det(1, A, 0.9), _det(1, (11, 11, 41, 41), 0.8), _det(2, B, 0.7)])
    assert r.counts["dupl"] == 1 and sum(r.counts.values()) == 1
    ap_a = ap_101([0.9, 0.8], [1, 0], 1)  # the TP first: AP 1 already
    assert r.ap == pytest.approx((ap_a + 1) / 2) and r.dap["dupl"] == pytest.approx(0.0)
    # ranked above the TP the duplicate costs AP
    r = analyse(_gt(), [_det(1, (11, 11, 41, 41), 0.95), _det(1, A, 0.9), _det(2, B, 0.7)])
    # the 0.95 box matches A first (the greedy rule): the exact box is the duplicate
    assert r.counts["dupl"] == 1 and r.ap == pytest.approx(1.0)


def test_background_error():
    r = analyse(_gt(), [_det(2, (0, 70, 10, 100), 0.99), _det(1, A, 0.9), _det(2, B, 0.8)])
    assert r.counts["bkg"] == 1 and sum(r.counts.values()) == 1
    ap_b = ap_101([0.99, 0.8], [0, 1], 1)
    assert r.ap == pytest.approx((1 + ap_b) / 2)
    assert r.dap["bkg"] == pytest.approx(1 - r.ap) == pytest.approx(r.dap["FP"])


def test_missed_error():
    r = analyse(_gt(), [_det(1, A, 0.9)])
    assert r.counts["miss"] == 1 and sum(r.counts.values()) == 1
    assert r.ap == pytest.approx(0.5)
    assert r.ap_by_class == {1: pytest.approx(1.0), 2: pytest.approx(0.0)}
    # the oracle takes B out of the count: class b has no ground truth left, so the mean is
    # over class a alone
    assert r.dap["miss"] == pytest.approx(0.5) == pytest.approx(r.dap["FN"])


def test_crowd_regions_are_ignored():
    crowd = {"id": 3, "image_id": 1, "category_id": 1, "bbox": [50, 0, 50, 40], "area": 2000,
             "iscrowd": 1}
    r = analyse(_gt([crowd]), [_det(1, (55, 5, 80, 30), 0.95), _det(1, A, 0.9), _det(2, B, 0.8)])
    assert r.ap == pytest.approx(1.0)  # ignored: not in the AP
    # as tidecv does, an ignored detection is still given a type (counted, fixing it gains 0)
    assert r.counts["bkg"] == 1 and sum(r.counts.values()) == 1
    assert r.dap["bkg"] == pytest.approx(0.0)


def test_ap_agrees_with_pycocotools_ap50():
    import numpy as np

    rng = np.random.default_rng(0)
    images = [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.jpg"}
              for i in range(1, 21)]
    anns, results, k = [], [], 1
    for im in images:
        for _ in range(rng.integers(1, 5)):
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(15, 50, 2)
            cat = int(rng.integers(1, 4))
            anns.append({"id": k, "image_id": im["id"], "category_id": cat,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            k += 1
            for _ in range(rng.integers(0, 3)):  # noisy, sometimes wrong-class detections
                jx, jy = rng.normal(0, 8, 2)
                results.append({"image_id": im["id"], "bbox": [x + jx, y + jy, w, h],
                                "category_id": cat if rng.random() < 0.8 else int(rng.integers(1, 4)),
                                "score": float(rng.uniform(0.05, 1))})
        for _ in range(rng.integers(0, 2)):
            results.append({"image_id": im["id"], "bbox": [*rng.uniform(0, 150, 2), 30, 30],
                            "category_id": int(rng.integers(1, 4)), "score": float(rng.uniform(0, 1))})
    gt = check_annotations({"images": images, "annotations": anns, "categories": [
        {"id": c, "name": str(c)} for c in (1, 2, 3)]}, "random")
    r = analyse(gt, results)
    assert {c["category_id"] for c in results} <= {a["category_id"] for a in anns}
    assert r.ap == pytest.approx(coco_score(gt, results).metrics["AP50"], abs=1e-6)
    # every false positive got one type; every fix gains or costs nothing below 0 but FN/FP
    n_fp = sum(1 for d in r.detections if not d.tp and not d.ignored)
    assert sum(v for k, v in r.counts.items() if k != "miss") == n_fp
    assert all(r.dap[k] >= -1e-9 for k in ("cls", "loc", "both", "dupl", "bkg", "miss"))


def test_a_class_with_detections_and_no_objects_counts_as_zero():
    """tidecv's mean (not COCO's): class b has a detection and no object -> AP 0 in the mean;
    removing its background error takes the class out of the mean."""
    gt = check_annotations({"images": [{"id": 1, "width": 100, "height": 100, "file_name": "1.jpg"}],
                            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
                            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                             "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}]},
                           "one class")
    r = analyse(gt, [_det(1, A, 0.9), _det(2, B, 0.8)])
    assert r.ap == pytest.approx(0.5) and r.counts["bkg"] == 1
    assert r.dap["bkg"] == pytest.approx(0.5)
    assert coco_score(gt, [_det(1, A, 0.9), _det(2, B, 0.8)]).metrics["AP50"] == pytest.approx(1.0)

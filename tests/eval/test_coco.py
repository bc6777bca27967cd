"""Scoring: pycocotools agreement, faster-coco-eval, results files, and shards that merge."""

import json

import pytest
from typer.testing import CliRunner

from helpers import pycocotools_direct, synthetic_coco
from singleshot.app.cli import app
from singleshot.eval.annotations import load_annotations
from singleshot.eval.coco import METRIC_KEYS, coco_score

CASES = {
    "typical": dict(seed=0),
    "many_classes": dict(seed=1, n_classes=40, n_images=20),
    "no_crowd": dict(seed=2, crowd=False),
    "all_empty_gt": dict(seed=3, empty_images=12),
    "empty_detections": dict(seed=4),
}


@pytest.mark.parametrize("case", CASES)
def test_differential_against_pycocotools(tmp_path, case):
    gt, dets = synthetic_coco(**CASES[case])
    if case == "empty_detections":
        dets = []
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    ours = coco_score(load_annotations(path), dets)
    ref, ref_pc = pycocotools_direct(path, dets)
    assert ours.metrics == ref  # identical, not merely close
    assert ours.per_class == ref_pc
    if case == "all_empty_gt":
        assert all(v == -1 for v in ours.metrics.values())
    if case == "empty_detections":
        assert ours.metrics["AP"] == 0


def test_fast_backend_agrees(tmp_path):
    gt, dets = synthetic_coco(seed=5, n_images=30)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    a = coco_score(load_annotations(path), dets)
    b = coco_score(load_annotations(path), dets, fast=True)
    assert b.backend.endswith("(unofficial)")
    for k in METRIC_KEYS:
        assert b.metrics[k] == pytest.approx(a.metrics[k], abs=1e-4), k


def test_results_file_made_by_others(tmp_path):
    gt, dets = synthetic_coco(seed=6, n_images=15)
    gt_path, res_path = tmp_path / "instances.json", tmp_path / "detections_results.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(dets))
    res = CliRunner().invoke(app, ["eval", "--results", str(res_path), "--annotations", str(gt_path),
                                   "--json", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    ref, ref_pc = pycocotools_direct(gt_path, dets)
    assert {k: doc[k] for k in METRIC_KEYS} == ref
    assert doc["per_class"] == ref_pc
    bad = tmp_path / "bad_results.json"
    bad.write_text(json.dumps([{"image_id": 99999, "category_id": 10, "bbox": [0, 0, 1, 1], "score": 1}]))
    res = CliRunner().invoke(app, ["eval", "--results", str(bad), "--annotations", str(gt_path)])
    assert res.exit_code == 2 and "99999" in res.stderr


def test_evaluator_shards_merge_to_the_single_run(tmp_path):
    """Shards of one dataset evaluated apart (in any order, through a JSON round trip) and
    merged give exactly the single-run numbers, ties in score included (pycocotools breaks them
    by input order, so merged detections are handed over in a canonical order)."""
    from singleshot.eval.annotations import load_annotations
    from singleshot.eval.coco import CocoEvaluator

    gt_dict, dets = synthetic_coco(seed=3, n_images=16)
    for d in dets[::3]:
        d["score"] = 0.5  # many exact ties
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt_dict))
    gt = load_annotations(path)
    by_image = {im["id"]: [d for d in dets if d["image_id"] == im["id"]] for im in gt_dict["images"]}
    single = CocoEvaluator(gt)
    for i in sorted(by_image):
        single.process(i, by_image[i])
    ref = single.evaluate()
    ids = sorted(by_image)
    shards = [CocoEvaluator(gt) for _ in range(3)]
    for k, shard in enumerate(shards):
        for i in reversed(ids[k::3]):  # each shard in its own order
            shard.process(i, by_image[i])
    merged = CocoEvaluator(gt)
    for shard in shards:
        merged.merge(json.loads(json.dumps(shard.state())))
    got = merged.evaluate()
    assert got.metrics == ref.metrics and got.per_class == ref.per_class
    assert got.metrics == coco_score(gt, [d for i in ids for d in by_image[i]], img_ids=ids).metrics
    with pytest.raises(ValueError, match="in both"):
        merged.merge(shards[0])
    merged.reset()
    merged.process(ids[0], by_image[ids[0]])
    assert merged.evaluate().metrics != ref.metrics

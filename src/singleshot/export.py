"""torch -> ONNX in the zoo contract (in-graph decode + NMS) or as raw heads, checked on export.

The network itself goes through torch's TorchScript-based exporter (``dynamo=False``), the only
one that still writes opsets 10 and 12; the post-processing is appended by
:mod:`singleshot.postgraph`. Every export passes onnx's checker and a parity run against torch.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from .anchors import default_boxes
from .errors import ModelError
from .nms import NmsParams, postprocess_raw
from .onnxgraph import inline_constant_identities
from .postgraph import append_zoo_postprocess
from .spec import ModelSpec

SUPPORTED_OPSETS = (10, 11, 12, 13, 14, 15, 16, 17)  # 10, 12, 13, 17 tested


@dataclass
class ParityReport:
    """Export check: max |ORT - torch| of the head outputs, and zoo outputs vs numpy NMS."""

    loc_max_abs: float
    conf_max_abs: float
    detections: int
    unmatched: int

    def __str__(self) -> str:
        return (f"parity: loc max|diff| {self.loc_max_abs:.2e}, conf max|diff| "
                f"{self.conf_max_abs:.2e}, {self.detections} detections, {self.unmatched} unmatched")


def spec_for(model: torch.nn.Module, contract: str, class_names=None, category_ids=None,
             extra: dict | None = None) -> ModelSpec:
    """The metadata spec of an SSDResNet34 (class names default to COCO's for 80 classes)."""
    cfg = model.cfg
    spec = ModelSpec(contract=contract, input_size=(cfg.input_size, cfg.input_size),
                     default_boxes=cfg.default_boxes())
    if class_names is None and cfg.num_classes != 80:
        class_names = tuple(f"class{i}" for i in range(1, cfg.num_classes + 1))
    if class_names is not None:
        class_names = tuple(class_names)
        if len(class_names) != cfg.num_classes:
            raise ModelError(f"{len(class_names)} class names for a model with "
                             f"{cfg.num_classes} classes")
        ids = tuple(category_ids) if category_ids else tuple(range(1, len(class_names) + 1))
        spec = spec.with_(class_names=class_names, category_ids=ids)
    meta = {"model_config": cfg.to_json(), **(extra or {})}
    return spec.with_(extra=tuple(sorted(meta.items())))


def _torch_export(model: torch.nn.Module, opset: int, dynamic_batch: bool) -> onnx.ModelProto:
    size = model.cfg.input_size
    dummy = torch.zeros(1, 3, size, size)
    buf = io.BytesIO()
    axes = {"image": {0: "batch"}, "loc": {0: "batch"}, "conf": {0: "batch"}} if dynamic_batch \
        else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), buf, opset_version=opset, input_names=["image"],
                          output_names=["loc", "conf"], dynamic_axes=axes, dynamo=False,
                          do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def build_onnx(model: torch.nn.Module, *, opset: int = 13, raw: bool = False,
               class_names=None, category_ids=None, nms: NmsParams = NmsParams(),
               extra_metadata: dict | None = None) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (an SSDResNet34 in eval mode) with self-describing metadata.

    zoo (default): input ``image`` float32 [1,3,S,S] -> ``bboxes`` [1,nbox,4], ``labels`` int64
    [1,nbox], ``scores`` [1,nbox]. raw: ``image`` [N,3,S,S] -> ``loc`` [N,4,A], ``conf`` [N,C+1,A].
    """
    if opset not in SUPPORTED_OPSETS:
        raise ModelError(f"opset {opset} is not supported; choose one of {SUPPORTED_OPSETS}")
    model = model.eval()
    spec = spec_for(model, "raw" if raw else "zoo", class_names, category_ids, extra_metadata)
    proto = _torch_export(model, opset, dynamic_batch=raw)
    inline_constant_identities(proto)
    if not raw:
        anchors = default_boxes(spec.default_boxes)
        proto = append_zoo_postprocess(proto, anchors, model.cfg.num_classes, nms)
    from . import __version__

    proto.producer_name, proto.producer_version = "singleshot", __version__
    del proto.metadata_props[:]
    for key, value in spec.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _sample_input(size: int, seed: int = 0) -> np.ndarray:
    """A smooth deterministic image-like input [1,3,S,S] (normalised pixel range)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 1.0, (1, 3, 8, 8)).astype(np.float32)
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(size, size),
                                        mode="bilinear", align_corners=False)
    return (t.numpy() + rng.normal(0, 0.2, (1, 3, size, size)).astype(np.float32))


def match_detections(a: tuple, b: tuple, box_tol: float = 1e-4, score_tol: float = 1e-5) -> int:
    """How many detections lack a partner: those of ``a`` (boxes, labels, scores) with no unused
    detection of ``b`` of the same label, score within ``score_tol`` and box within ``box_tol``
    (tie order may differ), plus any surplus of ``b``."""
    (ba, la, sa), (bb, lb, sb) = a, b
    used = np.zeros(len(sb), dtype=bool)
    misses = 0
    for i in range(len(sa)):
        ok = (~used) & (lb == la[i]) & (np.abs(sb - sa[i]) <= score_tol) & \
             (np.abs(bb - ba[i]).max(axis=1, initial=0) <= box_tol)
        hit = np.flatnonzero(ok)
        if hit.size:
            used[hit[0]] = True
        else:
            misses += 1
    return misses + max(0, len(sb) - len(sa))


def check_parity(proto: onnx.ModelProto, model: torch.nn.Module, x: np.ndarray | None = None,
                 tol: float = 1e-3) -> ParityReport:
    """Run ``proto`` in onnxruntime and ``model`` in torch on the same input and compare.

    Head outputs must agree within ``tol`` relative to their magnitude; for zoo graphs the in-graph
    post-processing must equal :func:`singleshot.nms.postprocess_raw` on the graph's own heads.
    """
    from .onnxgraph import graph_io, with_outputs
    from .runtime import make_session

    io_ = graph_io(proto)
    x = _sample_input(model.cfg.input_size) if x is None else x
    # zoo graphs: expose the heads too, to check the post-processing on them
    sess = make_session(with_outputs(proto, ("loc", "conf")) if io_.contract == "zoo" else proto)
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(names, {"image": x})))
    with torch.no_grad():
        tloc, tconf = (t.numpy() for t in model.eval()(torch.from_numpy(x)))
    dl = float(np.abs(outs["loc"] - tloc).max())
    dc = float(np.abs(outs["conf"] - tconf).max())
    report = ParityReport(dl, dc, 0, 0)
    if dl > tol * max(1.0, float(np.abs(tloc).max())) or \
            dc > tol * max(1.0, float(np.abs(tconf).max())):
        raise ModelError(f"export parity check failed: {report}")
    if io_.contract == "zoo":
        from .onnxgraph import read_nms_params

        spec_anchors = default_boxes(model.cfg.default_boxes())
        ref = postprocess_raw(outs["loc"][0], outs["conf"][0], spec_anchors,
                              read_nms_params(proto) or NmsParams())
        got = (outs["bboxes"][0], outs["labels"][0], outs["scores"][0])
        report.detections = len(got[2])
        report.unmatched = match_detections(got, ref)
        if report.unmatched > max(1, len(ref[2]) // 100):
            raise ModelError(f"export parity check failed (post-processing): {report}")
    return report


def export_onnx(model: torch.nn.Module, out: str | os.PathLike, *, opset: int = 13,
                raw: bool = False, check: bool = True, **kw) -> ParityReport | None:
    """Build, check and write the ONNX file (atomically). Returns the parity report."""
    proto = build_onnx(model, opset=opset, raw=raw, **kw)
    report = check_parity(proto, model) if check else None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, out)
    return report

"""torch -> ONNX in the zoo contract (in-graph decode + NMS) or as raw heads, checked on export.

The network itself goes through torch's TorchScript-based exporter (``dynamo=False``), the only
one that still writes opsets 10 and 12; the post-processing is appended by
:mod:`singleshot.graph.postprocess`. Every export passes onnx's checker and the parity check of
:mod:`singleshot.export.parity`."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import onnx
import torch

from ..core.anchors import default_boxes
from ..core.nms import NmsParams
from ..errors import ModelError
from ..graph.edit import inline_constant_identities
from ..graph.postprocess import append_zoo_postprocess
from ..io.files import atomic_path
from ..model.metadata import spec_for
from .parity import ParityReport, check_parity

SUPPORTED_OPSETS = (10, 11, 12, 13, 14, 15, 16, 17)  # 10, 12, 13, 17 tested


def _torch_export(model: torch.nn.Module, opset: int, dynamic_batch: bool,
                  batch: int = 1) -> onnx.ModelProto:
    size = model.cfg.input_size
    dummy = torch.zeros(batch, 3, size, size)
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
               extra_metadata: dict | None = None, batch: int | str | None = None) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (an SSDResNet34 in eval mode) with self-describing metadata.

    zoo (default): input ``image`` float32 [1,3,S,S] -> ``bboxes`` [1,nbox,4], ``labels`` int64
    [1,nbox], ``scores`` [1,nbox]. raw: ``image`` [N,3,S,S] -> ``loc`` [N,4,A], ``conf`` [N,C+1,A].
    ``batch`` ("dynamic" or N; opset >= 12) with the zoo contract: the batched zoo contract
    (``zoo-batch``): ``image`` [N,3,S,S] -> ``bboxes`` [N,K,4], ``labels`` [N,K], ``scores``
    [N,K] padded with zeros past ``num_detections`` int64 [N], K = the detection cap.
    """
    if opset not in SUPPORTED_OPSETS:
        raise ModelError(f"opset {opset} is not supported; choose one of {SUPPORTED_OPSETS}")
    if batch is not None and not raw and opset < 12:
        raise ModelError(f"a batched zoo graph needs opset 12 or later (GatherND with batch "
                         f"dimensions), not {opset}")
    if batch is not None and batch != "dynamic" and (not str(batch).isdigit() or int(batch) < 1):
        raise ModelError(f"batch must be 'dynamic' or a positive number, got {batch!r}")
    model = model.eval()
    contract = "raw" if raw else ("zoo" if batch is None else "zoo-batch")
    spec = spec_for(model, contract, class_names, category_ids, extra_metadata)
    fixed = int(batch) if batch not in (None, "dynamic") else 1
    proto = _torch_export(model, opset, dynamic_batch=raw or batch == "dynamic", batch=fixed)
    inline_constant_identities(proto)
    if not raw:
        anchors = default_boxes(spec.default_boxes)
        proto = append_zoo_postprocess(proto, anchors, model.cfg.num_classes, nms,
                                       batched=batch is not None)
    from .._version import __version__

    proto.producer_name, proto.producer_version = "singleshot", __version__
    del proto.metadata_props[:]
    for key, value in spec.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: torch.nn.Module, out: str | os.PathLike, *, opset: int = 13,
                raw: bool = False, check: bool = True, **kw) -> ParityReport | None:
    """Build, check and write the ONNX file (atomically). Returns the parity report."""
    proto = build_onnx(model, opset=opset, raw=raw, **kw)
    report = check_parity(proto, model) if check else None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return report

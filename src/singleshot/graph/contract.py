"""Which contract a detector graph follows (zoo: in-graph NMS; raw: loc/conf heads), loading with
one-line errors, and the model's spec from its metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..core.spec import ModelSpec, zoo_spec
from ..errors import ModelError, UsageError


@dataclass(frozen=True)
class GraphIO:
    """Names of a detector graph's tensors. For ``zoo``: outputs (bboxes, labels, scores);
    for ``raw``: (loc, conf)."""

    contract: str
    input: str
    input_shape: tuple
    input_dtype: str
    outputs: tuple[str, ...]

    @property
    def batch(self) -> int | None:
        """Images the graph takes per call: an int for a fixed batch (1 for the zoo's files),
        None for a dynamic one."""
        n = self.input_shape[0]
        return n if isinstance(n, int) and n > 0 else None

    def check_batch(self, n: int, name: str) -> None:
        """UsageError naming the graph's real batch when it cannot take ``n`` images per call
        (no sequential calls dressed as a batch)."""
        if self.batch is not None and n > self.batch:
            what = "batch 1" if self.batch == 1 else f"batches of {self.batch}"
            raise UsageError(f"{name} takes {what} (its input is {list(self.input_shape)}), not "
                             f"{n}: export it with a dynamic batch (singleshot export --batch "
                             "dynamic) or run images one by one")


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load an ONNX file with a one-line error for missing or damaged files."""
    p = Path(path)
    if p.is_dir():
        raise ModelError(f"{p}: is a folder, not a model file")
    if not p.is_file():
        raise ModelError(f"{p}: no such model file")
    if p.stat().st_size == 0:
        raise ModelError(f"{p}: empty file (0 bytes)")
    try:
        model = onnx.load(str(p))
    except Exception as err:  # onnx raises DecodeError and others from protobuf
        raise ModelError(f"{p}: not a valid ONNX model ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:150] if str(err) else ''})") from None
    if not model.graph.node:
        raise ModelError(f"{p}: ONNX file has an empty graph")
    return model


def value_shape(vi: onnx.ValueInfoProto) -> tuple:
    dims = vi.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)


def value_dtype(vi: onnx.ValueInfoProto) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name


def graph_io(model: onnx.ModelProto, name: str = "model") -> GraphIO:
    """Tell the contract from the outputs: 3 outputs (boxes, int64 labels, scores) -> zoo; those
    and ``num_detections`` -> zoo-batch; 2 rank-3 float outputs (loc [N,4,A], conf [N,C+1,A]) ->
    raw. ModelError otherwise."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(value_shape(inputs[0])) != 4:
        desc = ", ".join(f"{i.name}{list(value_shape(i))}" for i in inputs) or "none"
        raise ModelError(f"{name}: expected one image input [N,3,H,W], the graph has: {desc}")
    inp = inputs[0]
    outs = list(model.graph.output)
    names = [o.name for o in outs]
    if len(outs) == 4 and set(names) == {"bboxes", "labels", "scores", "num_detections"}:
        return GraphIO("zoo-batch", inp.name, value_shape(inp), value_dtype(inp),
                       ("bboxes", "labels", "scores", "num_detections"))
    if len(outs) == 3:
        by_name = {o.name: o for o in outs}
        if {"bboxes", "labels", "scores"} <= by_name.keys():
            order = ("bboxes", "labels", "scores")
        else:  # unnamed zoo-like graph: tell the outputs apart by dtype and rank
            labels = [o.name for o in outs if value_dtype(o).startswith("int")]
            boxes = [o.name for o in outs if o.name not in labels and len(value_shape(o)) == 3]
            scores = [o.name for o in outs if o.name not in labels + boxes]
            if not (len(labels) == len(boxes) == len(scores) == 1):
                raise ModelError(f"{name}: outputs {names} are not bboxes/labels/scores")
            order = (boxes[0], labels[0], scores[0])
        return GraphIO("zoo", inp.name, value_shape(inp), value_dtype(inp), order)
    if len(outs) == 2 and all(len(value_shape(o)) == 3 for o in outs):
        by_name = {o.name: o for o in outs}
        if {"loc", "conf"} <= by_name.keys():
            order = ("loc", "conf")
        else:
            four = [o.name for o in outs if value_shape(o)[1] == 4]
            if len(four) != 1:
                raise ModelError(f"{name}: cannot tell loc from conf among outputs {names}")
            order = (four[0], next(n for n in names if n != four[0]))
        return GraphIO("raw", inp.name, value_shape(inp), value_dtype(inp), order)
    raise ModelError(f"{name}: outputs {names} follow neither the zoo contract "
                     "(bboxes, labels, scores) nor the raw-head one (loc, conf)")


def read_spec(model: onnx.ModelProto, io: GraphIO) -> ModelSpec:
    """The model's spec: its metadata, else zoo defaults sized from the input shape."""
    props = {p.key: p.value for p in model.metadata_props}
    h, w = io.input_shape[2], io.input_shape[3]
    size = h if isinstance(h, int) and h > 0 else 1200
    base = zoo_spec(300) if size == 300 else zoo_spec(1200)
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        base = base.with_(input_size=(h, w))
    base = base.with_(contract=io.contract)
    return ModelSpec.from_metadata(props, fallback=base)


def per_image(outputs, contract: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Zoo outputs in contract order (bboxes, labels, scores[, num_detections]) -> (boxes,
    labels, scores) of each image (zoo-batch: the first ``num_detections`` of each row; zoo:
    the one image)."""
    boxes, labels, scores = outputs[:3]
    if contract == "zoo":
        return [(boxes[0], labels[0], scores[0])]
    return [(boxes[i, :n], labels[i, :n], scores[i, :n])
            for i, n in enumerate(outputs[3].astype(int))]

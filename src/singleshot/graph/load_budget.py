"""What loading an ONNX file would cost, checked before a runtime is asked to: the file's size,
the input the graph declares, and the tensors that constant folding would make.

onnxruntime folds a node whose inputs are all constants while it builds the session: a
100-byte file with one ConstantOfShape of a constant shape [50000, 50000] took 78 s and 2.2 GB
before the first request. The sizes of such nodes are read from the graph (no runtime has a
dry-run for it), so a server refuses the file in one line instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError


def _elements(op: str, values: list) -> int | None:
    """Elements of the output of ``op`` on constant inputs ``values`` (None: not estimated)."""
    try:
        if op == "ConstantOfShape":
            return int(np.prod(values[0], dtype=np.float64))
        if op == "Expand":
            a, shape = np.shape(values[0]), list(values[1])
            n = max(len(a), len(shape))
            a = (1,) * (n - len(a)) + tuple(a)
            shape = [1] * (n - len(shape)) + shape
            return int(np.prod([max(x, y) for x, y in zip(a, shape)], dtype=np.float64))
        if op == "Tile":
            return int(np.size(values[0]) * np.prod(values[1], dtype=np.float64))
        if op == "Range":
            start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in values[:3])
            return int(max(0.0, np.ceil((limit - start) / delta))) if delta else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return None


def check_graph(model: onnx.ModelProto, max_bytes: float, name: str) -> None:
    """ModelError when the declared input or a constant-folded tensor of ``model`` would take
    more than ``max_bytes`` (4 bytes an element)."""
    limit_mb = max_bytes / 2**20
    g = model.graph
    init_names = {i.name for i in g.initializer}
    for vi in g.input:
        if vi.name in init_names:
            continue
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        size = float(np.prod(dims, dtype=np.float64)) * 4 if dims else 0.0
        if size > max_bytes:
            raise ModelError(f"{name}: its input {vi.name!r} {dims} would take "
                             f"{size / 2**20:.0f} MB per image, over the limit of "
                             f"{limit_mb:g} MB (--max-model-mb)")
    consts: dict[str, np.ndarray] = {}
    small = 1 << 16  # shape-like constants only: large initializers are weights, not read
    for t in g.initializer:
        if np.prod(t.dims, dtype=np.float64) <= small:
            consts[t.name] = numpy_helper.to_array(t)
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and np.prod(a.t.dims, dtype=np.float64) <= small:
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
            continue
        if node.input and all(i in consts for i in node.input if i):
            n = _elements(node.op_type, [consts[i] for i in node.input if i])
            if n is not None and n * 4 > max_bytes:
                raise ModelError(f"{name}: node {node.name or node.op_type!r} "
                                 f"({node.op_type}) would make a tensor of {n * 4 / 2**20:.0f} MB "
                                 f"while loading, over the limit of {limit_mb:g} MB "
                                 "(--max-model-mb)")


def check_model_file(path: str | os.PathLike, max_mb: float) -> None:
    """A model file a server is asked to load (a checkpoint is checked for its size only):
    ModelError past ``max_mb`` in the file or in what loading it would make."""
    from .contract import load_model

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return  # the loader says what is missing, as everywhere else
    max_bytes = max_mb * 2**20
    if size > max_bytes:
        raise ModelError(f"{path.name}: the file is {size / 2**20:.0f} MB, over the limit of "
                         f"{max_mb:g} MB (--max-model-mb)")
    if path.suffix.lower() == ".onnx":
        check_graph(load_model(path), max_bytes, path.name)

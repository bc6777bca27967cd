"""The card's normalisation as the graph's first nodes: the input becomes uint8 NCHW and Cast, Sub,
Mul compute ``(x - 255 mean) / (255 std)`` in float32, so the host only resizes (see
:mod:`singleshot.runtime.preprocess`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.spec import ModelSpec


def fold_normalization(model: onnx.ModelProto, input_name: str,
                       spec: ModelSpec) -> tuple[onnx.ModelProto, ModelSpec]:
    """A copy of ``model`` whose input ``input_name`` is uint8 [1, 3, h, w] (0..255, RGB) and
    whose first nodes compute ``(x - 255 mean) / (255 std)`` in float32, the card's
    normalisation. Returns (model, spec with ``input_dtype="uint8"``)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inp = next(i for i in g.input if i.name == input_name)
    inner = input_name + "_normalized"
    for node in g.node:
        for k, name in enumerate(node.input):
            if name == input_name:
                node.input[k] = inner
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1) * np.float32(255)
    inv = (1 / (np.asarray(spec.std, np.float32) * np.float32(255))).reshape(1, 3, 1, 1)
    g.initializer.extend([numpy_helper.from_array(mean.astype(np.float32), inner + "_mean"),
                          numpy_helper.from_array(inv.astype(np.float32), inner + "_invstd")])
    front = [
        helper.make_node("Cast", [input_name], [inner + "_f"], to=TensorProto.FLOAT,
                         name=inner + "_cast"),
        helper.make_node("Sub", [inner + "_f", inner + "_mean"], [inner + "_c"], name=inner + "_sub"),
        helper.make_node("Mul", [inner + "_c", inner + "_invstd"], [inner], name=inner + "_mul"),
    ]
    nodes = front + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    return out, spec.with_(input_dtype="uint8")

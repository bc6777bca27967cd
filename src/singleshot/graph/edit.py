"""Small graph edits: inlining constant Identity nodes, exposing intermediate tensors, and the
tensor -> producing node map."""

from __future__ import annotations

import onnx


def inline_constant_identities(model: onnx.ModelProto) -> int:
    """Replace ``Identity(initializer)`` nodes by initializers of their own (in place).

    torch's exporter shares equal constants (e.g. the zero biases of several convs) through
    Identity nodes; quantizers then no longer see those biases as constants. Returns the number
    of nodes removed."""
    inits = {i.name: i for i in model.graph.initializer}
    graph_outputs = {o.name for o in model.graph.output}
    keep, added = [], []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and \
                node.output[0] not in graph_outputs:
            copy_ = onnx.TensorProto()
            copy_.CopyFrom(inits[node.input[0]])
            copy_.name = node.output[0]
            added.append(copy_)
        else:
            keep.append(node)
    if added:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        model.graph.initializer.extend(added)
    used = {i for n in model.graph.node for i in n.input}
    unused = [i for i in model.graph.initializer if i.name not in used and
              i.name not in graph_outputs]
    for init in unused:
        model.graph.initializer.remove(init)
    return len(added)


def with_outputs(model: onnx.ModelProto, names: tuple[str, ...]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the intermediate tensors ``names`` (e.g. the heads
    ``loc``/``conf`` inside a zoo graph, for parity checks)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend([onnx.helper.make_empty_tensor_value_info(n) for n in names])
    return probe


def tensor_producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that writes it (graph inputs and initializers have none)."""
    return {o: n for n in model.graph.node for o in n.output}

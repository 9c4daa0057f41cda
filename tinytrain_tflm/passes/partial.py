"""Keep only the updated channels of a partially trained layer in RAM.

A CONV_2D or FULLY_CONNECTED layer whose weights train for the first c of its
C output channels is split along its output channels: a trained layer with
channels [0, c) (its weights become RAM variables) and a frozen one with
[c, C) (its weights stay constants, in flash), joined by a CONCATENATION. Each
output channel is computed from its own filter, bias and quantization, so the
result is bit-identical to the unsplit layer; RAM then holds c/C of the
weights instead of all of them. A split costs an op, a few tensors and a
second output buffer while the parts are joined (the parts and the joined
output are live together: one output's bytes more than the unsplit layer, and
only at that op), so a layer is split only when the bytes it keeps out of RAM,
for the whole run, are at least MIN_SAVING_BYTES and OUTPUT_FACTOR times its
output. Depthwise layers are left whole: splitting their channels would also
split their input.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ..frontend import ir

SPLITTABLE = ("CONV_2D", "FULLY_CONNECTED")
MIN_SAVING_BYTES = 2048
OUTPUT_FACTOR = 1  # 4 kept MIT's 1/8 and 1/2 of MobileNetV2's 336-channel convs whole: 26 KB more


def _channels(tensor: ir.Tensor, start: int, stop: int, name: str) -> ir.Tensor:
    """Output channels [start, stop) of a weight or bias tensor (axis 0), quantization included."""
    quant = tensor.quantization
    if quant is not None and len(quant.scale) > 1:
        quant = ir.Quantization(quant.scale[start:stop], quant.zero_point[start:stop], quant.axis)
    data = tensor.data[start:stop]
    return ir.Tensor(name, data.shape, tensor.dtype, quant, data.copy())


def split_partial_layers(graph: ir.Graph, trainable: dict[int, int]) -> tuple[ir.Graph, dict[int, int]]:
    """The graph with every partially trained CONV_2D / FULLY_CONNECTED split, and the new trainable map."""
    g = dataclasses.replace(graph, tensors=list(graph.tensors), ops=list(graph.ops))
    trainable = dict(trainable)
    ops = []
    for op in g.ops:
        if op.custom or op.kind not in SPLITTABLE or op.inputs[1] not in trainable:
            ops.append(op)
            continue
        weight = op.inputs[1]
        total, kept = g.tensors[weight].shape[0], trainable[weight]
        if kept >= total:
            ops.append(op)
            continue
        bias = op.inputs[2]
        w, b, y = g.tensors[weight], g.tensors[bias], g.tensors[op.outputs[0]]
        saving = (total - kept) * (w.data.size // total) * w.dtype.itemsize
        if saving < max(MIN_SAVING_BYTES, OUTPUT_FACTOR * int(np.prod(y.shape)) * y.dtype.itemsize):
            ops.append(op)
            continue
        parts = []
        for start, stop, suffix in ((0, kept, ""), (kept, total, f"[{kept}:]")):
            part_weight = g.add_tensor(_channels(w, start, stop, w.name + suffix))
            part_bias = g.add_tensor(_channels(b, start, stop, b.name + suffix))
            shape = (*y.shape[:-1], stop - start)
            part_output = g.add_tensor(ir.Tensor(f"{y.name}{suffix or f'[:{kept}]'}", shape, y.dtype, y.quantization))
            ops.append(dataclasses.replace(op, inputs=[op.inputs[0], part_weight, part_bias], outputs=[part_output]))
            if start == 0:
                trainable[part_weight] = kept
            if bias in trainable:
                trainable[part_bias] = stop - start
            parts.append(part_output)
        trainable.pop(weight)
        trainable.pop(bias, None)
        options = tfl.ConcatenationOptionsT()
        options.axis = len(y.shape) - 1
        ops.append(ir.Op("CONCATENATION", parts, list(op.outputs), builtin_options=options))
    g.ops = ops
    compact, renumber = g.compact()
    return compact, {renumber[t]: channels for t, channels in trainable.items()}


def rejoin_split_layers(graph: ir.Graph) -> ir.Graph:
    """The graph with every layer split_partial_layers split made one op again, its weights and biases
    the parts' concatenated along the output channels: the inference model a training model exports
    has its source's layers (bit-identical, as the split itself is). A split is recognised by what the
    split writes: two ops of a SPLITTABLE kind on one input, their weights named "w" and "w[k:]" (k
    the first part's channels), joined by a CONCATENATION of their outputs only. Tensor indices stay as
    they are (the parts' tensors are left unused, for a compact() to drop)."""
    g = dataclasses.replace(graph, tensors=list(graph.tensors), ops=list(graph.ops))
    producers = {t: op for op in g.ops for t in op.outputs}
    joined: dict[int, ir.Op] = {}  # id of a CONCATENATION -> the layer it becomes
    parts: set[int] = set()
    for op in g.ops:
        if op.kind != "CONCATENATION" or len(op.inputs) != 2:
            continue
        first, rest = (producers.get(t) for t in op.inputs)
        if not _split_pair(g, first, rest):
            continue
        weight, bias = (_concatenated(g, first.inputs[i], rest.inputs[i]) for i in (1, 2))
        joined[id(op)] = dataclasses.replace(first, inputs=[first.inputs[0], weight, bias], outputs=list(op.outputs))
        parts |= {id(first), id(rest)}
    g.ops = [joined.get(id(op), op) for op in g.ops if id(op) not in parts]
    return g


def _split_pair(graph: ir.Graph, first: ir.Op | None, rest: ir.Op | None) -> bool:
    if first is None or rest is None or first.kind != rest.kind or first.kind not in SPLITTABLE or first.custom:
        return False
    if first.inputs[0] != rest.inputs[0] or len(first.inputs) < 3 or len(rest.inputs) < 3:
        return False
    weight = graph.tensors[first.inputs[1]]
    return graph.tensors[rest.inputs[1]].name == f"{weight.name}[{weight.shape[0]}:]"


def _concatenated(graph: ir.Graph, first: int, rest: int) -> int:
    """A constant holding tensors `first` and `rest` one after the other along axis 0 (output channels)."""
    a, b = graph.tensors[first], graph.tensors[rest]
    quant = a.quantization
    if quant is not None and len(quant.scale) > 1:
        scales = np.concatenate([quant.scale, b.quantization.scale])
        quant = ir.Quantization(scales, np.concatenate([quant.zero_point, b.quantization.zero_point]), quant.axis)
    data = np.concatenate([a.data, b.data])
    return graph.add_tensor(ir.Tensor(a.name, data.shape, a.dtype, quant, data))

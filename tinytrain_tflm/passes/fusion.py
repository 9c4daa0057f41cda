"""Backward op fusions: rewrites of op patterns in the finished training graph, after autodiff.

Autodiff emits one gradient rule per forward op (tinytrain_tflm.passes.autodiff), so a layer's
backward is several small ops, each with its TFLM node, kernel data and gradient tensors. This
pass folds a pattern into one op where a kernel does the work of both, with the same bits:

- ReLU mask into the input gradient. A conv's fused ReLU/ReLU6 backward (TT_ACTIVATION_GRAD on
  the activation's 1-bit mask, tinytrain_tflm.passes.autodiff.masks) zeroes the gradient that the
  next layer's TT_CONV_2D_INPUT_GRAD or TT_DEPTHWISE_CONV_2D_INPUT_GRAD just wrote. The input-gradient
  op then reads the mask too (input 3, before the control input) and zeroes its result in place
  (kernels/tflm/layer_grad_util.h). Zeroing keeps an int8 gradient's scale, so the levels are
  those of the two ops. One op, its kernel data and one gradient (and its scale tensor) fewer per
  fused activation. Only the mask form is fused: an ACTIVATION_GRAD that reads the int8 output
  (activation_masks=False, or an output read by another backward op) stays as it is.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..backend import schema, schema_generated
from ..frontend import ir
from .loss import TRAINING_METADATA

MASKABLE_INPUT_GRADS = (schema_generated.CONV_2D_INPUT_GRAD, schema_generated.DEPTHWISE_CONV_2D_INPUT_GRAD)
MASK_INPUT = 3  # of a fused input-gradient op; the control input stays last


def fuse_backward(graph: ir.Graph) -> ir.Graph:
    """graph with every fusion above applied, and the tensors it leaves unread dropped."""
    readers = Counter(t for op in graph.ops for t in op.inputs if t >= 0)
    producers = {op.outputs[0]: op for op in graph.ops if op.outputs}
    renamed: dict[int, int] = {}
    ops = []
    for op in graph.ops:
        producer = _maskable_producer(graph, op, producers, readers)
        if producer is None:
            ops.append(op)
            continue
        producer.inputs.insert(MASK_INPUT, op.inputs[2])
        renamed.update(zip(op.outputs, producer.outputs, strict=True))  # the gradient and, if int8, its scale
    for op in ops:
        op.inputs = [renamed.get(t, t) for t in op.inputs]
    graph.ops = ops
    return _drop_tensors(graph, set(renamed))


def _maskable_producer(graph: ir.Graph, op: ir.Op, producers: dict[int, ir.Op], readers: Counter) -> ir.Op | None:
    """The input-gradient op whose result `op`, an ACTIVATION_GRAD on a mask, is the only reader of."""
    if op.kind != schema_generated.ACTIVATION_GRAD or graph.tensors[op.inputs[2]].dtype != np.uint8:
        return None
    producer = producers.get(op.inputs[0])
    if producer is None or producer.kind not in MASKABLE_INPUT_GRADS or len(producer.inputs) != MASK_INPUT + 1:
        return None
    gradient = list(producer.outputs)  # data, then the scale of an int8 gradient
    if op.inputs[: len(gradient)] != gradient or any(readers[t] != 1 for t in gradient) or set(gradient) & set(graph.outputs):
        return None
    return producer


def _drop_tensors(graph: ir.Graph, dropped: set[int]) -> ir.Graph:
    """graph without the `dropped` tensors, which no op reads or writes any more: Graph.compact(), keeping
    the tensors only the training metadata names (a streamed sample, a dropped SOFTMAX's output), whose
    *_tensor fields it renumbers with compact's map. compact() drops every unreferenced tensor, and after
    autodiff those are the `dropped` ones alone. They are autodiff's gradients, so only indices made after
    them move: no op option written before autodiff (a tiled stage's) names one of those."""
    if not dropped:
        return graph
    metadata = schema.decode_blob("TRAINING_METADATA", graph.metadata[TRAINING_METADATA])
    named = [v for k, v in metadata.items() if k.endswith("_tensor") and v >= 0]
    graph, renumber = graph.compact(keep=named)
    metadata = {k: renumber[v] if k.endswith("_tensor") and v >= 0 else v for k, v in metadata.items()}
    graph.metadata[TRAINING_METADATA] = schema.encode_blob("TRAINING_METADATA", **metadata)
    return graph

"""Padding and windows of spatial ops (conv, pooling, PAD) as TFLite resolves SAME and VALID."""

from __future__ import annotations

from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ..backend.schema import RESTORED, builtin_options
from ..frontend import ir

WINDOWED = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", *RESTORED)


def padding_before(padding: int, in_size: int, out_size: int, filter_size: int, stride: int, dilation: int = 1) -> int:
    """Implicit zero rows (or columns) before the input: half the total, rounded down, as TFLite's kernels pad."""
    if padding == tfl.Padding.VALID:
        return 0
    effective = (filter_size - 1) * dilation + 1
    return max((out_size - 1) * stride + effective - in_size, 0) // 2


def window(graph: ir.Graph, op: ir.Op, axis: int) -> tuple[int, int, int, int]:
    """(kernel, stride, dilation, pad_before) of a WINDOWED op along axis 1 (rows) or 2 (columns) of its
    NHWC input 0: output index i reads input indices i * stride - pad_before + k * dilation, 0 <= k < kernel."""
    x, y = graph.tensors[op.inputs[0]].shape[axis], graph.tensors[op.outputs[0]].shape[axis]
    if op.kind == "PAD":
        return 1, 1, 1, int(graph.tensors[op.inputs[1]].data[axis][0])
    o = builtin_options(op) if op.kind in RESTORED else op.builtin_options
    if op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        kernel, stride, dilation = (o.filterHeight, o.strideH, 1) if axis == 1 else (o.filterWidth, o.strideW, 1)
    else:
        stride, dilation = (o.strideH, o.dilationHFactor) if axis == 1 else (o.strideW, o.dilationWFactor)
        kernel = graph.tensors[op.inputs[1]].shape[axis]
    return kernel, stride, dilation, padding_before(o.padding, x, y, kernel, stride, dilation)

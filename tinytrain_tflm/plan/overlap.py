"""Overlapping buffers: where an op may write its output over an input it reads for the last time.

TFLM's planner gives every tensor bytes of its own for its whole lifetime, so
while a layer runs its input and its output are both fully allocated: in an
inverted residual block the expanded activation and the depthwise output
(48 KB each in MobileNetV2-w0.35 at 32x32) sit side by side. But a kernel that
produces its output rows in order (TFLM's reference kernels and tinytrain's do;
so do CMSIS-NN's but its 1x1 convolution, see tinytrain_tflm.target) needs an input row only until the
last output row that reads it. The output can therefore start `shift` bytes
below its input and overwrite input rows as they fall out of use; the pair then
costs about the larger of the two, not their sum (TinyEngine's in-place
depthwise, for any windowed op).

The rule, per output row r: the bytes of row r may cover only input rows that
no output row >= r reads. It holds however a kernel orders the work inside a
row, and for kernels that compute a few pixels at a time across a row
boundary, since such a chunk reads all it needs before it writes. Element-wise
ops (out[i] from in[i] only) may write over an input of the same shape and type
in place (shift 0). RESHAPE may share its input's bytes only exactly (same offset):
TFLM's kernel then copies nothing, but memcpy's whenever the two differ, and a
copy between overlapping ranges is undefined (a backward-copying memcpy would
corrupt it).

Only an input whose lifetime ends at the op qualifies, and never a graph
output, and no op whose kernel on the model's target breaks the rule (the
target's `no_overlap`). tinytrain_tflm.plan.memory places an output at least `shift` below such an
input (RESHAPE's exactly on it) where that is the lowest free spot, and writes the plan into the model
(OfflineMemoryAllocation metadata), which TFLM then follows to the byte."""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import target
from ..backend import schema_generated
from ..frontend import ir
from .geometry import WINDOWED, window

ELEMENT_WISE = ("ADD", schema_generated.ACTIVATION_GRAD, schema_generated.GRAD_ADD)


@dataclasses.dataclass(frozen=True)
class Overlap:
    input: int
    output: int
    shift: int  # bytes the output starts below the input, at least (the planner aligns it)
    exact: bool = False  # the output may share the input's bytes only at the input's own offset (RESHAPE)


def _bytes(tensor: ir.Tensor) -> int:
    return int(np.prod(tensor.shape)) * tensor.dtype.itemsize


def _rows_shift(graph: ir.Graph, op: ir.Op) -> int | None:
    """Smallest shift by which op's output may start below input 0 (see the module docstring)."""
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if len(x.shape) != 4 or x.shape[0] != 1 or y.shape[0] != 1:
        return None
    if op.kind == "PAD" and np.any(graph.tensors[op.inputs[1]].data[[0, 3]]):
        return None  # padding the channels changes every row's layout
    kernel, stride, dilation, pad = window(graph, op, 1)
    in_rows, out_rows = x.shape[1], y.shape[1]
    in_row_bytes, out_row_bytes = _bytes(x) // in_rows, _bytes(y) // out_rows
    last_reader = np.full(in_rows, -1)  # the last output row reading each input row
    for r in range(out_rows):
        rows = r * stride - pad + dilation * np.arange(kernel)
        last_reader[rows[(rows >= 0) & (rows < in_rows)]] = r
    shift = 0
    for r in range(out_rows):
        still_read = np.flatnonzero(last_reader >= r)
        first = int(still_read[0]) if len(still_read) else in_rows
        shift = max(shift, (r + 1) * out_row_bytes - first * in_row_bytes)
    return shift


def _candidates(graph: ir.Graph, op: ir.Op, no_overlap: frozenset[str]) -> list[Overlap]:
    """The overlaps op's output may have with its inputs, before lifetimes are considered."""
    if not op.outputs or (op.custom and op.kind not in ELEMENT_WISE + WINDOWED):  # other tinytrain ops: unknown order
        return []
    if not op.custom and op.kind in no_overlap:
        return []
    output = op.outputs[0]
    out = graph.tensors[output]
    if op.kind in WINDOWED:
        shift = _rows_shift(graph, op)
        return [] if shift is None else [Overlap(op.inputs[0], output, shift)]
    if op.kind in ELEMENT_WISE:
        same = [t for t in op.inputs if t >= 0 and graph.tensors[t].shape == out.shape]
        return [Overlap(t, output, 0) for t in same if graph.tensors[t].dtype == out.dtype]
    if op.kind == "RESHAPE":  # TFLM's kernel skips the copy when input and output share their bytes
        return [Overlap(op.inputs[0], output, 0, exact=True)]
    return []


def find_overlaps(graph: ir.Graph, last_use: dict[int, int]) -> list[Overlap]:
    """Every overlap the ops allow between planned tensors: per op, the largest input whose lifetime ends
    there. `last_use` maps each planned tensor to the scope of its last use (op i is scope i + 1), as
    TFLM's planner sees it."""
    found = []
    no_overlap = target.of_model(graph).no_overlap
    for scope, op in enumerate(graph.ops, start=1):
        output = op.outputs[0] if op.outputs else -1
        if output not in last_use or output in graph.outputs:
            continue
        dying = [
            o
            for o in _candidates(graph, op, no_overlap)
            if last_use.get(o.input) == scope and o.input not in graph.outputs and op.inputs.count(o.input) == 1
        ]
        if dying:
            found.append(max(dying, key=lambda o: _bytes(graph.tensors[o.input])))
    return found

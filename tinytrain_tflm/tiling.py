"""Patch-based execution of the memory-heavy first stage (the idea of MCUNetV2).

The early, high-resolution layers of a CNN hold the largest activations, so
they set the forward peak. This pass rewrites the first stage (the chain of
CONV_2D / DEPTHWISE_CONV_2D / PAD ops from the input up to the first tensor
read twice) to run tile by tile: for each tile of the stage output it slices
the input region the tile depends on, runs every stage op on that patch, and
finally concatenates the tiles back into the stage output. Tiles run one after
another, so TFLM's planner reuses their small buffers and the stage's peak
falls to about one patch's worth.

The result is bit-identical to the untiled graph: interior patch borders read
real neighbour values (the halo, recomputed per tile), and where a patch
touches the image border an explicit PAD supplies what the op's own padding
did. Both pad with the zero point, i.e. real 0. The stage must be frozen
(nothing in it trains): its ops are replaced.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from . import ir
from .autodiff.rules.geometry import padding_before
from .errors import TinyTrainError
from .memory import estimate

TILEABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "PAD")


@dataclasses.dataclass(frozen=True)
class Span:
    """Rows or columns [start, stop) of a tensor; may reach outside it before clipping."""

    start: int
    stop: int

    def clip(self, size: int) -> Span:
        return Span(max(0, self.start), min(size, self.stop))

    @property
    def length(self) -> int:
        return self.stop - self.start


def first_stage(graph: ir.Graph) -> list[int]:
    """Positions of the stage ops: a chain of tileable ops from a graph input, each output read by the next op only."""
    readers: dict[int, int] = {}
    for op in graph.ops:
        for tensor in set(op.inputs):
            readers[tensor] = readers.get(tensor, 0) + 1
    stage, current = [], graph.inputs[0] if graph.inputs else -1
    for position, op in enumerate(graph.ops):
        if op.custom or op.kind not in TILEABLE or op.inputs[0] != current:
            break
        stage.append(position)
        current = op.outputs[0]
        if readers.get(current, 0) != 1 or current in graph.outputs:
            break
    return stage


def _window(graph: ir.Graph, op: ir.Op, axis: int) -> tuple[int, int, int, int]:
    """(kernel, stride, dilation, pad_before) of a stage op along axis 1 (rows) or 2 (columns)."""
    x, y = graph.tensors[op.inputs[0]].shape[axis], graph.tensors[op.outputs[0]].shape[axis]
    if op.kind == "PAD":
        return 1, 1, 1, int(graph.tensors[op.inputs[1]].data[axis][0])
    o = op.builtin_options
    stride, dilation = (o.strideH, o.dilationHFactor) if axis == 1 else (o.strideW, o.dilationWFactor)
    kernel = graph.tensors[op.inputs[1]].shape[axis]
    return kernel, stride, dilation, padding_before(o.padding, x, y, kernel, stride, dilation)


def _needed(graph: ir.Graph, op: ir.Op, axis: int, out: Span) -> Span:
    """Input span (unclipped: it may cover padding) that op reads for output span `out`."""
    kernel, stride, dilation, pad = _window(graph, op, axis)
    return Span(out.start * stride - pad, (out.stop - 1) * stride - pad + (kernel - 1) * dilation + 1)


def _splits(size: int, parts: int) -> list[Span]:
    edges = np.linspace(0, size, parts + 1).round().astype(int)
    return [Span(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


class _Builder:
    def __init__(self, graph: ir.Graph):
        self.graph = graph
        self.ops: list[ir.Op] = []

    def tensor(self, like: int, shape: tuple[int, ...], name: str) -> int:
        source = self.graph.tensors[like]
        return self.graph.add_tensor(ir.Tensor(name, shape, source.dtype, source.quantization))

    def constant(self, name: str, values) -> int:
        values = np.asarray(values, np.int32)
        return self.graph.add_tensor(ir.Tensor(name, values.shape, np.dtype(np.int32), data=values))

    def op(self, kind: str, inputs: list[int], output: int, options) -> int:
        self.ops.append(ir.Op(kind, inputs, [output], builtin_options=options))
        return output


def _tile(graph: ir.Graph, stage: list[int], rows: Span, cols: Span, b: _Builder, tag: str) -> int:
    """Emits the ops computing the stage output over rows x cols; returns that patch tensor."""
    # Backwards: the output span each op must produce, clipped to its output.
    spans = [(rows, cols)]
    for position in reversed(stage):
        op = graph.ops[position]
        shape = graph.tensors[op.inputs[0]].shape
        r, c = spans[-1]
        spans.append((_needed(graph, op, 1, r).clip(shape[1]), _needed(graph, op, 2, c).clip(shape[2])))
    spans.reverse()  # spans[i] is op i's input span, spans[i + 1] its output span

    source = graph.ops[stage[0]].inputs[0]
    shape = graph.tensors[source].shape
    r, c = spans[0]
    begin = b.constant(f"{tag}/begin", [0, r.start, c.start, 0])
    size = b.constant(f"{tag}/size", [shape[0], r.length, c.length, shape[3]])
    sliced = b.tensor(source, (shape[0], r.length, c.length, shape[3]), f"{tag}/input")
    patch = b.op("SLICE", [source, begin, size], sliced, tfl.SliceOptionsT())
    for step, position in enumerate(stage):
        op = graph.ops[position]
        (r_in, c_in), (r_out, c_out) = spans[step], spans[step + 1]
        want_r, want_c = _needed(graph, op, 1, r_out), _needed(graph, op, 2, c_out)
        pad_rows = [r_in.start - want_r.start, want_r.stop - r_in.stop]
        pad_cols = [c_in.start - want_c.start, want_c.stop - c_in.stop]
        pads = [[0, 0], pad_rows, pad_cols, [0, 0]]
        name = f"{tag}/op{position}"
        if any(p for pair in pads for p in pair):
            channels = graph.tensors[op.inputs[0]].shape[3]
            padded = b.tensor(op.inputs[0], (shape[0], want_r.length, want_c.length, channels), f"{name}/padded")
            patch = b.op("PAD", [patch, b.constant(f"{name}/paddings", pads)], padded, tfl.PadOptionsT())
        if op.kind == "PAD":
            continue  # its padding is the explicit PAD above (or none inside the image)
        options = _copy(op.builtin_options)
        options.padding = tfl.Padding.VALID
        out_shape = (shape[0], r_out.length, c_out.length, graph.tensors[op.outputs[0]].shape[3])
        patch = b.op(op.kind, [patch, *op.inputs[1:]], b.tensor(op.outputs[0], out_shape, f"{name}/output"), options)
    return patch


def _copy(options):
    """A copy of an object-API options table (they are plain classes)."""
    copied = type(options)()
    copied.__dict__.update(options.__dict__)
    return copied


def tile_first_stage(
    graph: ir.Graph, tiles: tuple[int, int] = (4, 4), trained: set[int] | None = None
) -> tuple[ir.Graph, dict[int, int]]:
    """The graph with its first stage run in tiles[0] x tiles[1] patches (see the module docstring), compacted,
    and the map from old tensor indices to new ones. A stage op reading a tensor in `trained` is an error."""
    stage = first_stage(graph)
    if not stage or graph.ops[stage[-1]].kind == "PAD":
        raise TinyTrainError("model has no first stage to tile: it must start with CONV_2D / DEPTHWISE_CONV_2D on its input")
    for position in stage:
        if set(graph.ops[position].inputs) & (trained or set()):
            op = f"op {position} ({graph.ops[position].kind})"
            raise TinyTrainError(f"{op} is in the tiled first stage but trains; train later layers or don't tile")
    g = dataclasses.replace(graph, tensors=list(graph.tensors), ops=list(graph.ops))
    output = g.ops[stage[-1]].outputs[0]
    _, height, width, _ = g.tensors[output].shape
    b = _Builder(g)
    grid = [
        [_tile(g, stage, row_span, col_span, b, f"tile{ty}_{tx}") for tx, col_span in enumerate(_splits(width, tiles[1]))]
        for ty, row_span in enumerate(_splits(height, tiles[0]))
    ]
    rows = [_concatenate(b, patches, 2, output, f"tile_row{ty}") for ty, patches in enumerate(grid)]
    _concatenate(b, rows, 1, output, "tiles", final=output)
    stage_positions = set(stage)
    g.ops = b.ops + [op for position, op in enumerate(g.ops) if position not in stage_positions]
    return g.compact()


GRIDS = ((2, 2), (2, 3), (3, 2), (3, 3), (4, 4))


def choose_tiles(graph: ir.Graph) -> tuple[int, int] | None:
    """The grid with the smallest estimated arena, or None when no grid beats the untiled graph
    (each tile repeats the stage's ops, whose kernel data and bookkeeping cost memory too)."""
    best, best_bytes = None, estimate(graph).total
    for grid in GRIDS:
        size = estimate(tile_first_stage(graph, grid)[0]).total
        if size < best_bytes:
            best, best_bytes = grid, size
    return best


def _concatenate(b: _Builder, parts: list[int], axis: int, like: int, name: str, final: int | None = None) -> int:
    """Joins parts along axis; a single part is renamed to `final` instead (no copy)."""
    if len(parts) == 1:
        if final is not None:
            producer = next(op for op in b.ops if parts[0] in op.outputs)
            producer.outputs = [final]
            return final
        return parts[0]
    shapes = [b.graph.tensors[p].shape for p in parts]
    shape = list(shapes[0])
    shape[axis] = sum(s[axis] for s in shapes)
    output = final if final is not None else b.tensor(like, tuple(shape), name)
    options = tfl.ConcatenationOptionsT()
    options.axis = axis
    return b.op("CONCATENATION", parts, output, options)

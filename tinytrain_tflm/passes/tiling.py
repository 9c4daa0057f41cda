"""Patch-based execution of the memory-heavy first stage (the idea of MCUNetV2).

The early, high-resolution layers of a CNN hold the largest activations, so
they set the forward peak. This pass rewrites the first stage (the leading
CONV_2D / DEPTHWISE_CONV_2D / PAD / ADD ops, residual blocks included, up to a
tensor that alone carries everything on) to run tile by tile: for each tile of
the stage output it slices the input region the tile depends on, runs every
stage op on that patch (slicing a tensor again where one reader needs less of
it than another, as a residual ADD does), and finally concatenates the tiles
back into the stage output. Tiles run one after
another, so TFLM's planner reuses their small buffers and the stage's peak
falls to about one patch's worth.

The stage is emitted as one TT_TILED_STAGE op, whose kernel loops over the
tiles itself in one scratch buffer (its size: tinytrain_tflm.plan.tiled_stage):
one node and no tensor for the stage's inside, where copies of the stage ops
per tile would cost a node, tensors and kernel data each (about 140 ops on
MobileNetV2). Where that kernel cannot run a stage (a conv reading a patch wider
than its window, a batch above 1) or when measuring what it saves, the stage is
instead emitted as those per-tile copies: SLICE ops cut each tile's input
region, explicit PADs supply the image border, CONCATENATION joins the tiles.

The result is bit-identical to the untiled graph: interior patch borders read
real neighbour values (the halo, recomputed per tile), and at the image border
the op's own padding (or PAD) gives the zero point, i.e. real 0. The stage
must be frozen (nothing in it trains): its ops are replaced, so backward never
passes through them.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ..backend import schema, schema_generated
from ..errors import TinyTrainError
from ..frontend import ir, verify
from ..plan import geometry
from ..plan import tiled_stage as stage_plan
from ..plan.memory import MemoryOptions, estimate
from . import requantization

# Standalone, the estimates are of a model TFLM plans alone (what compile(overlap_buffers=False) emits).
TFLM_PLANNED = MemoryOptions(tiles=None, overlap_buffers=False, flash_requantization=False)

TILEABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "ADD")


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


def _activation_inputs(op: ir.Op) -> list[int]:
    return op.inputs[:2] if op.kind == "ADD" else op.inputs[:1]


def _tileable(graph: ir.Graph, op: ir.Op) -> bool:
    """Spatially local, per batch and pixel: a tile of its output depends on a window of its inputs only."""
    if op.custom or op.kind not in TILEABLE:
        return False
    if op.kind == "PAD":  # padding the batch or channel axis is not a spatial window
        paddings = graph.tensors[op.inputs[1]].data
        return paddings is not None and not np.any(paddings[[0, 3]])
    if op.kind == "ADD":  # no broadcasting: both inputs have the output's shape
        return all(graph.tensors[t].shape == graph.tensors[op.outputs[0]].shape for t in op.inputs)
    return True


def stage_lengths(graph: ir.Graph, trained: set[int] | None = None) -> list[int]:
    """The lengths k for which ops[:k] can be the tiled first stage: every op tileable, reading the
    graph input or outputs of earlier stage ops (plus constants that do not train), and op k-1's output
    the only stage tensor read after the stage. Residual blocks (ADD) may lie inside it."""
    last_reader: dict[int, int] = {}
    for position, op in enumerate(graph.ops):
        for tensor in op.inputs:
            last_reader[tensor] = position
    source = graph.inputs[0] if graph.inputs else -1
    produced: set[int] = set()
    lengths = []
    for position, op in enumerate(graph.ops):
        activations = _activation_inputs(op)
        constants = set(op.inputs) - set(activations)
        if (
            not _tileable(graph, op)
            or not set(activations) <= produced | {source}
            or set(op.inputs) & (trained or set())
            or any(graph.tensors[t].data is None for t in constants)
        ):
            break
        produced.add(op.outputs[0])
        live = {t for t in produced if last_reader.get(t, -1) > position or t in graph.outputs}
        if live <= {op.outputs[0]} and op.kind != "PAD":  # a PAD last would leave a tile with no op of its own
            lengths.append(position + 1)
    return lengths


def _needed(graph: ir.Graph, op: ir.Op, axis: int, out: Span) -> Span:
    """Input span (unclipped: it may cover padding) that op reads for output span `out`."""
    kernel, stride, dilation, pad = geometry.window(graph, op, axis)
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


def _hull(a: Span, b: Span) -> Span:
    return Span(min(a.start, b.start), max(a.stop, b.stop))


def _input_windows(graph: ir.Graph, op: ir.Op, rows: Span, cols: Span) -> list[tuple[int, Span, Span]]:
    """(input tensor, rows, cols) that op reads for its output over rows x cols, unclipped."""
    if op.kind == "ADD":
        return [(tensor, rows, cols) for tensor in op.inputs]
    return [(op.inputs[0], _needed(graph, op, 1, rows), _needed(graph, op, 2, cols))]


def _tile(graph: ir.Graph, stage: list[int], rows: Span, cols: Span, b: _Builder, tag: str) -> int:
    """Emits the ops computing the stage output over rows x cols; returns that patch tensor."""
    # Backwards: the span of each stage tensor this tile needs, the hull over its readers, clipped.
    need = {graph.ops[stage[-1]].outputs[0]: (rows, cols)}
    for position in reversed(stage):
        op = graph.ops[position]
        for tensor, r, c in _input_windows(graph, op, *need[op.outputs[0]]):
            shape = graph.tensors[tensor].shape
            r, c = r.clip(shape[1]), c.clip(shape[2])
            need[tensor] = (_hull(need[tensor][0], r), _hull(need[tensor][1], c)) if tensor in need else (r, c)

    # Forwards: patches[t] holds tensor t over have[t].
    source = graph.ops[stage[0]].inputs[0]
    patches = {source: source}
    have = {source: (Span(0, graph.tensors[source].shape[1]), Span(0, graph.tensors[source].shape[2]))}

    def window(tensor: int, r: Span, c: Span, name: str) -> int:
        """Tensor over r x c (inside what its patch holds): the patch itself, or a SLICE of it."""
        if have[tensor] == (r, c):
            return patches[tensor]
        (have_r, have_c), (n, _, _, channels) = have[tensor], graph.tensors[tensor].shape
        begin = b.constant(f"{name}/begin", [0, r.start - have_r.start, c.start - have_c.start, 0])
        size = b.constant(f"{name}/size", [n, r.length, c.length, channels])
        sliced = b.tensor(tensor, (n, r.length, c.length, channels), name)
        return b.op("SLICE", [patches[tensor], begin, size], sliced, tfl.SliceOptionsT())

    patches[source], have[source] = window(source, *need[source], f"{tag}/input"), need[source]
    for position in stage:
        op = graph.ops[position]
        name, out = f"{tag}/op{position}", op.outputs[0]
        r_out, c_out = need[out]
        n, _, _, channels = graph.tensors[out].shape
        if op.kind == "ADD":
            inputs = [window(t, r_out, c_out, f"{name}/input{i}") for i, t in enumerate(op.inputs)]
            patch = b.op(
                "ADD", inputs, b.tensor(out, (n, r_out.length, c_out.length, channels), f"{name}/output"), op.builtin_options
            )
        else:
            tensor, want_r, want_c = _input_windows(graph, op, r_out, c_out)[0]
            shape = graph.tensors[tensor].shape
            inside_r, inside_c = want_r.clip(shape[1]), want_c.clip(shape[2])
            patch = window(tensor, inside_r, inside_c, f"{name}/window")
            # Outside the tensor: the zero padding the op (or the PAD op) supplied in the whole graph.
            pads = [[0, 0], [inside_r.start - want_r.start, want_r.stop - inside_r.stop]]
            pads += [[inside_c.start - want_c.start, want_c.stop - inside_c.stop], [0, 0]]
            if any(p for pair in pads for p in pair):
                padded = b.tensor(tensor, (n, want_r.length, want_c.length, shape[3]), f"{name}/padded")
                patch = b.op("PAD", [patch, b.constant(f"{name}/paddings", pads)], padded, tfl.PadOptionsT())
            if op.kind != "PAD":  # a PAD op is the explicit PAD above, or nothing inside the image
                options = _copy(op.builtin_options)
                options.padding = tfl.Padding.VALID
                output = b.tensor(out, (n, r_out.length, c_out.length, channels), f"{name}/output")
                patch = b.op(op.kind, [patch, *op.inputs[1:]], output, options)
        patches[out], have[out] = patch, need[out]
    return patches[graph.ops[stage[-1]].outputs[0]]


def _copy(options):
    """A copy of an object-API options table (they are plain classes)."""
    copied = type(options)()
    copied.__dict__.update(options.__dict__)
    return copied


def tile_first_stage(
    graph: ir.Graph,
    tiles: tuple[int, int] = (4, 4),
    trained: set[int] | None = None,
    length: int | None = None,
    memory_options: MemoryOptions = TFLM_PLANNED,
    fused: bool = True,
) -> tuple[ir.Graph, dict[int, int]]:
    """The graph with its first `length` ops run in tiles[0] x tiles[1] patches (see the module docstring),
    compacted, and the map from old tensor indices to new ones; `fused` False emits per-tile copies of the
    stage ops even where one TT_TILED_STAGE op could run them. The stage holds no op reading a tensor in
    `trained`. By default its length is the one of stage_lengths whose tiled graph has the smallest
    estimated arena (of the model as compile() will emit it: see _estimate): deeper stages cut more
    activation memory but repeat more ops and halo pixels. Bytes alone, without tile_auto's speed bound
    (MAX_EXTRA_WORK): a grid given explicitly is a request for memory, and the bound would hand it the
    shortest stage on the very models (MobileNetV2's 16x16 over 13 ops) where the caller sized the grid
    for a deep one; tiles="auto", which also picks the grid, is where speed weighs in."""
    lengths = stage_lengths(graph, trained)
    if not lengths:
        first = graph.ops[0] if graph.ops else None
        if first is not None and _tileable(graph, first) and set(first.inputs) & (trained or set()):
            raise TinyTrainError(f"op 0 ({first.kind}) is in the tiled first stage but trains; train later layers or don't tile")
        raise TinyTrainError("model has no first stage to tile: it must start with CONV_2D / DEPTHWISE_CONV_2D on its input")
    if length is None:
        candidates = (_tiled(graph, tiles, k, fused) for k in _large_lengths(graph, lengths))
        return min(candidates, key=lambda tiled: _estimate(tiled[0], memory_options))
    if length not in lengths:
        raise TinyTrainError(f"the first stage cannot hold {length} ops; possible lengths: {lengths}")
    return _tiled(graph, tiles, length, fused)


def _large_lengths(graph: ir.Graph, lengths: list[int]) -> list[int]:
    """The stage lengths worth tiling: past 1/8 of the input's resolution activations are small, and tiling
    there only repeats ops."""
    source = graph.tensors[graph.inputs[0]].shape
    large = [k for k in lengths if _pixels(graph.tensors[graph.ops[k - 1].outputs[0]].shape) * 64 >= _pixels(source)]
    return large or lengths[:1]


def _estimate(graph: ir.Graph, memory_options: MemoryOptions) -> int:
    """Estimated arena of the graph with the compiler's later memory passes: overlapping buffers, convs
    reading their requantization from the model."""
    lowered = requantization.lower(graph) if memory_options.flash_requantization else graph
    if memory_options.stream_input and streamable(lowered):
        lowered = stream_input(lowered)
    return estimate(lowered, options=memory_options).total


def _pixels(shape: tuple[int, ...]) -> int:
    return shape[1] * shape[2]


def _tiled(graph: ir.Graph, tiles: tuple[int, int], length: int, fused: bool = True) -> tuple[ir.Graph, dict[int, int]]:
    fused_graph = _fused(graph, tiles, length) if fused else None
    return fused_graph.compact() if fused_graph is not None else _per_tile(graph, tiles, length)


_ACTIVATIONS = {  # TFLite's fused activations as the real range they clamp to
    tfl.ActivationFunctionType.NONE: (None, None),
    tfl.ActivationFunctionType.RELU: (0.0, None),
    tfl.ActivationFunctionType.RELU_N1_TO_1: (-1.0, 1.0),
    tfl.ActivationFunctionType.RELU6: (0.0, 6.0),
}


def _activation_range(activation: int, tensor: ir.Tensor) -> tuple[int, int]:
    """The int8 clamp of a fused activation, as TFLite's CalculateActivationRangeQuantized computes it (float32)."""
    scale, zero_point = np.float32(tensor.quantization.scale[0]), int(tensor.quantization.zero_point[0])

    def quantize(real: float) -> int:
        value = float(np.float32(real) / scale)
        return zero_point + int(np.sign(value) * np.floor(abs(value) + 0.5))  # roundf: halves away from zero

    if activation not in _ACTIVATIONS:
        raise TinyTrainError(f"the op writing {tensor.name!r} has fused activation {activation}, which int8 convs do not support")
    low, high = _ACTIVATIONS[activation]
    return (-128 if low is None else max(-128, quantize(low))), (127 if high is None else min(127, quantize(high)))


def _scale_and_zero_point(tensor: ir.Tensor) -> tuple[float, int]:
    return float(np.float32(tensor.quantization.scale[0])), int(tensor.quantization.zero_point[0])


def _add_fields(graph: ir.Graph, op: ir.Op) -> dict[str, int]:
    """TFLite's int8 ADD parameters, as its Prepare computes them (in double, from float32 scales)."""
    (s1, z1), (s2, z2), (so, zo) = (_scale_and_zero_point(graph.tensors[t]) for t in (*op.inputs, op.outputs[0]))
    left_shift = 20
    twice_max = 2 * max(s1, s2)
    fields = {"input_offset": -z1, "input2_offset": -z2, "output_offset": zo, "left_shift": left_shift}
    for name, real in (("input", s1 / twice_max), ("input2", s2 / twice_max), ("output", twice_max / ((1 << left_shift) * so))):
        fields[f"{name}_multiplier"], fields[f"{name}_shift"] = requantization.quantize_multiplier(real)
    return fields


def _stage_row(graph: ir.Graph, op: ir.Op, source: dict[int, int]) -> list[int]:
    """The description row of a stage op (plan.tiled_stage.FIELDS); `source` maps a tensor to -1 (the stage
    input) or the stage op writing it."""
    out = graph.tensors[op.outputs[0]]
    kinds = {"CONV_2D": schema_generated.STAGE_OP_CONV, "DEPTHWISE_CONV_2D": schema_generated.STAGE_OP_DEPTHWISE}
    kinds.update(PAD=schema_generated.STAGE_OP_PAD, ADD=schema_generated.STAGE_OP_ADD)
    row = dict.fromkeys(stage_plan.FIELDS, 0)
    row.update(kind=kinds[op.kind], input=source[op.inputs[0]], input2=source[op.inputs[1]] if op.kind == "ADD" else -1)
    row.update(height=out.shape[1], width=out.shape[2], channels=out.shape[3])
    row["output_scale_bits"] = int(np.float32(out.quantization.scale[0]).view(np.int32))
    if op.kind == "ADD":
        row.update(_add_fields(graph, op), activation=op.builtin_options.fusedActivationFunction)
        row["activation_min"], row["activation_max"] = _activation_range(row["activation"], out)
        return [row[name] for name in stage_plan.FIELDS]
    for axis, suffix in ((1, "h"), (2, "w")):  # a PAD's window: 1 x 1, after its rows and columns before
        kernel, stride, dilation, pad = geometry.window(graph, op, axis)
        row.update({f"kernel_{suffix}": kernel, f"stride_{suffix}": stride, f"dilation_{suffix}": dilation})
        row["pad_top" if axis == 1 else "pad_left"] = pad
    if op.kind != "PAD":
        x = graph.tensors[op.inputs[0]]
        options = op.builtin_options
        row.update(padding=options.padding, activation=options.fusedActivationFunction)
        row["depth_multiplier"] = out.shape[3] // x.shape[3] if op.kind == "DEPTHWISE_CONV_2D" else 1
        row["input_offset"], row["output_offset"] = -_scale_and_zero_point(x)[1], _scale_and_zero_point(out)[1]
        row["activation_min"], row["activation_max"] = _activation_range(row["activation"], out)
    return [row[name] for name in stage_plan.FIELDS]


def _fused(graph: ir.Graph, tiles: tuple[int, int], length: int) -> ir.Graph | None:
    """The graph with ops[:length] as one TT_TILED_STAGE op, or None where its kernel cannot run them."""
    g = dataclasses.replace(graph, tensors=list(graph.tensors), ops=list(graph.ops))
    stage = g.ops[:length]
    source = {stage[0].inputs[0]: -1} | {op.outputs[0]: k for k, op in enumerate(stage)}
    input_shape = g.tensors[stage[0].inputs[0]].shape
    pads_keep_quantization = all(
        _scale_and_zero_point(g.tensors[op.inputs[0]]) == _scale_and_zero_point(g.tensors[op.outputs[0]])
        for op in stage
        if op.kind == "PAD"
    )
    if input_shape[0] != 1 or len(stage) > schema_generated.STAGE_MAX_OPS or not pads_keep_quantization:
        return None
    if any(g.tensors[t].dtype != np.int8 for op in stage for t in (op.inputs[0], op.outputs[0])):
        return None
    description = np.array([_stage_row(g, op, source) for op in stage], np.int32)
    if stage_plan.scratch_bytes(description, input_shape, tiles) is None:
        return None
    inputs = [stage[0].inputs[0]]
    inputs.append(g.add_tensor(ir.Tensor("tiled_stage/description", description.shape, np.dtype(np.int32), data=description)))
    for op in stage:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            table = requantization.requantization(g, op)
            name = f"{g.tensors[op.outputs[0]].name}/requantization"
            bias = op.inputs[2] if len(op.inputs) > 2 else -1
            inputs += [op.inputs[1], bias, g.add_tensor(ir.Tensor(name, table.shape, np.dtype(np.int32), data=table))]
        else:
            inputs += [-1, -1, -1]
    options = schema.encode_blob("TILED_STAGE", num_ops=length, tiles_h=tiles[0], tiles_w=tiles[1])
    g.ops = [ir.Op(schema_generated.TILED_STAGE, inputs, [stage[-1].outputs[0]], True, None, options), *g.ops[length:]]
    return g


def streamable(graph: ir.Graph) -> bool:
    """Whether the graph's first op is a TT_TILED_STAGE reading the graph's first input, which stream_input
    can then stream."""
    first = graph.ops[0] if graph.ops else None
    return (
        first is not None
        and first.kind == schema_generated.TILED_STAGE
        and bool(graph.inputs)
        and first.inputs[0] == graph.inputs[0]
    )


def stream_input(graph: ir.Graph) -> ir.Graph:
    """The graph with its sample streamed into its tiled first stage (compile(stream_input=True)): the
    TT_TILED_STAGE op reads the sample from the firmware (tinytrain::SetStreamedInput: a constant or flash
    image, or a row reader) a few rows per tile, instead of from an arena tensor. The sample tensor keeps its
    index, name and quantization but becomes a constant int32 [4] holding its shape: the stage's last input,
    no longer a graph input. Nothing else may read the sample (the stage is frozen, so no gradient does)."""
    if not streamable(graph):
        raise TinyTrainError(
            "stream_input needs the model's first stage tiled as one TT_TILED_STAGE op reading the sample "
            "(compile with tiles, e.g. tiles='auto', and the fused stage)"
        )
    stage, sample = graph.ops[0], graph.inputs[0]
    if sample in graph.outputs or any(sample in op.inputs for op in graph.ops[1:]):
        raise TinyTrainError("stream_input: an op after the tiled first stage reads the sample, so it must stay in the arena")
    g = dataclasses.replace(graph, tensors=list(graph.tensors), ops=list(graph.ops), inputs=graph.inputs[1:])
    x = g.tensors[sample]
    g.tensors[sample] = ir.Tensor(x.name, (4,), np.dtype(np.int32), x.quantization, data=np.array(x.shape, np.int32))
    g.ops[0] = dataclasses.replace(stage, inputs=[-1, *stage.inputs[1:], sample])
    return g


def restore_stage(graph: ir.Graph, op: ir.Op) -> list[ir.Op]:
    """The builtin ops a TT_TILED_STAGE op runs, with new tensors between them (from its description's
    export columns: each op's padding, activation and output scale); any other op alone. For exported
    inference models, which stock TFLM runs. A streamed stage's sample becomes an int8 tensor again, at the
    index of its shape constant (graph.tensors is changed in place)."""
    if op.kind != schema_generated.TILED_STAGE:
        return [op]
    description = graph.tensors[op.inputs[1]].data
    if op.inputs[0] < 0:
        sample = graph.tensors[op.inputs[-1]]
        shape = stage_plan.input_shape(graph, op)
        graph.tensors[op.inputs[-1]] = ir.Tensor(sample.name, shape, np.dtype(np.int8), sample.quantization)
        op = dataclasses.replace(op, inputs=[op.inputs[-1], *op.inputs[1:-1]])
    tensors = [op.inputs[0]]  # stage tensor k + 1: the output of stage op k
    ops = []
    for k, values in enumerate(description):
        row = dict(zip(stage_plan.FIELDS, (int(v) for v in values), strict=True))
        x = tensors[row["input"] + 1]
        if k == len(description) - 1:
            out = op.outputs[0]
        else:
            scale = np.array([row["output_scale_bits"]], np.int32).view(np.float32)
            quantization = ir.Quantization(scale, np.array([row["output_offset"]], np.int64))
            if row["kind"] == schema_generated.STAGE_OP_PAD:
                quantization = graph.tensors[x].quantization
            shape = (1, row["height"], row["width"], row["channels"])
            out = graph.add_tensor(
                ir.Tensor(f"{graph.tensors[op.outputs[0]].name}/stage{k}", shape, np.dtype(np.int8), quantization)
            )
        tensors.append(out)
        weights = op.inputs[2 + 3 * k : 4 + 3 * k]
        if row["kind"] == schema_generated.STAGE_OP_PAD:
            _, h, w, _ = graph.tensors[x].shape
            pads = [[0, 0], [row["pad_top"], row["height"] - h - row["pad_top"]]]
            pads += [[row["pad_left"], row["width"] - w - row["pad_left"]], [0, 0]]
            paddings = graph.add_tensor(
                ir.Tensor(f"{graph.tensors[out].name}/paddings", (4, 2), np.dtype(np.int32), data=np.array(pads, np.int32))
            )
            ops.append(ir.Op("PAD", [x, paddings], [out], builtin_options=tfl.PadOptionsT()))
        elif row["kind"] == schema_generated.STAGE_OP_ADD:
            options = tfl.AddOptionsT()
            options.fusedActivationFunction = row["activation"]
            ops.append(ir.Op("ADD", [x, tensors[row["input2"] + 1]], [out], builtin_options=options))
        else:
            depthwise = row["kind"] == schema_generated.STAGE_OP_DEPTHWISE
            options = tfl.DepthwiseConv2DOptionsT() if depthwise else tfl.Conv2DOptionsT()
            options.padding, options.fusedActivationFunction = row["padding"], row["activation"]
            options.strideH, options.strideW = row["stride_h"], row["stride_w"]
            options.dilationHFactor, options.dilationWFactor = row["dilation_h"], row["dilation_w"]
            if depthwise:
                options.depthMultiplier = row["depth_multiplier"]
            ops.append(ir.Op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, *weights], [out], builtin_options=options))
    return ops


def _per_tile(graph: ir.Graph, tiles: tuple[int, int], length: int) -> tuple[ir.Graph, dict[int, int]]:
    stage = list(range(length))
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
    g.ops = b.ops + g.ops[length:]
    return g.compact()


GRIDS = ((2, 2), (2, 3), (3, 2), (3, 3), (4, 4))
# Finer grids cost TT_TILED_STAGE only halo recomputation, not memory: its scratch shrinks with the tile.
# Row bands are kept for stages whose width is small.
FINE_GRIDS = ((8, 8), (16, 8), (8, 16), (16, 12), (12, 16), (16, 16), (8, 1), (16, 1))
# Column strips of one output row per band (tile_auto makes these grids per stage length): TT_TILED_STAGE
# computes every row once (a band keeps the rows it shares with the next), so thin bands cost no halo and
# give the smallest patches; only the strips' columns are recomputed.
BAND_STRIPS = (4, 8, 12, 16)
# What one call of a stage conv costs beyond its multiply-accumulates (CMSIS-NN's per-call setup, the tile
# walk, the patch copies), in multiply-accumulates: about 2,600 Cortex-M7 instructions, at about 5.5
# instructions per multiply-accumulate (MobileNetV2-w0.35's 6-op stage with CMSIS-NN: 32x12 tiles cost
# 3.0 M instructions more than 16x12, with the same multiply-accumulates and 192 x 6 more calls).
STAGE_CALL_WORK = 500
# tile_auto's speed bound: a grid may add at most this share of the untiled graph's forward work (about
# 10% of an inference's instructions, the forward pass being mostly convs). Recomputed halos cost every
# training step, as every inference: picked for its bytes alone, MobileNetV2-w0.35's 13-op stage in 16x16
# tiles (more than half the forward work again) took the step from 187 M to 393 M instructions on the
# Cortex-M7. Within the bound the bytes decide, which is what tiles="auto" is asked for.
MAX_EXTRA_WORK = 0.10
# Estimates this close to the smallest allowed count as as small: among them tile_auto takes the least
# work (bytes that often do not matter, once the arena peaks outside the stage).
SPEED_SLACK_BYTES = 512


def forward_work(graph: ir.Graph) -> int:
    """Multiply-accumulates of the graph's convs, a TT_TILED_STAGE's as its kernel computes them (the
    columns' halos recomputed) plus STAGE_CALL_WORK per conv call: what a grid costs in speed."""
    work = 0
    for op in graph.ops:
        if op.kind == schema_generated.TILED_STAGE:
            options = schema.decode_blob("TILED_STAGE", op.custom_options)
            grid = (options["tiles_h"], options["tiles_w"])
            description = graph.tensors[op.inputs[1]].data
            work += stage_plan.stage_work(description, stage_plan.input_shape(graph, op), grid)
            convs = np.isin(description[:, stage_plan.COLUMN["kind"]], stage_plan.CONVS).sum()
            work += int(convs) * grid[0] * grid[1] * STAGE_CALL_WORK
        elif op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            taps = graph.tensors[op.inputs[1]].shape  # [out, h, w, in], or [1, h, w, out] for a depthwise conv
            depth = 1 if op.kind == "DEPTHWISE_CONV_2D" else taps[3]
            work += int(np.prod(graph.tensors[op.outputs[0]].shape)) * taps[1] * taps[2] * depth
    return work


def _band_grids(graph: ir.Graph, lengths: list[int]):
    """(grid, tiled graph, renumbering) of every BAND_STRIPS grid one TT_TILED_STAGE op can run, per stage
    length: one band per output row."""
    for length in lengths:
        _, height, width, _ = graph.tensors[graph.ops[length - 1].outputs[0]].shape
        for strips in (s for s in BAND_STRIPS if s <= width):
            fused = _fused(graph, (height, strips), length)
            if fused is not None:
                yield ((height, strips), *fused.compact())


def candidate_tilings(graph: ir.Graph, trained: set[int] | None = None, fused: bool = True):
    """Every (grid, tiled graph, tensor renumbering) tile_auto weighs: GRIDS at every stage length worth
    tiling, and where one TT_TILED_STAGE op runs the stage FINE_GRIDS and the BAND_STRIPS grids too."""
    large = _large_lengths(graph, stage_lengths(graph, trained))
    tilings = ((grid, *_tiled(graph, grid, length, fused)) for grid in GRIDS + (FINE_GRIDS if fused else ()) for length in large)
    return itertools.chain(tilings, _band_grids(graph, large) if fused else ())


def tile_auto(
    graph: ir.Graph, trained: set[int] | None = None, memory_options: MemoryOptions = TFLM_PLANNED, fused: bool = True
) -> tuple[tuple[int, int], ir.Graph, dict[int, int]] | None:
    """(grid, tiled graph, tensor renumbering) of the grid and stage length with the smallest estimated
    arena among those adding at most MAX_EXTRA_WORK to the untiled forward work (forward_work), the least
    work among those within SPEED_SLACK_BYTES of it; None when that is the untiled graph (per-tile copies of
    the stage repeat its ops, whose kernel data and bookkeeping cost memory too; a TT_TILED_STAGE op costs
    its scratch buffer). Memory first, but never at a stage that slows every step by much (MAX_EXTRA_WORK)."""
    if not stage_lengths(graph, trained):
        return None
    untiled = forward_work(graph)
    choices = [(_estimate(graph, memory_options), untiled, None)]
    for tiling in candidate_tilings(graph, trained, fused):
        work = forward_work(tiling[1])
        if work <= untiled * (1 + MAX_EXTRA_WORK):  # (the estimate is the slow part: only for these)
            choices.append((_estimate(tiling[1], memory_options), work, tiling))
    smallest = min(size for size, _, _ in choices)
    near = [choice for choice in choices if choice[0] <= smallest + SPEED_SLACK_BYTES]
    return min(near, key=lambda choice: (choice[1], choice[0]))[2]


def choose_tiles(
    graph: ir.Graph, trained: set[int] | None = None, memory_options: MemoryOptions = TFLM_PLANNED
) -> tuple[int, int] | None:
    """The grid tile_auto picks, or None."""
    best = tile_auto(graph, trained, memory_options)
    return None if best is None else best[0]


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


_TILE_TENSOR = re.compile(r"tile(\d+)_(\d+)/(?:input|op(\d+)/.*)|tile_row\d+")


def untile_first_stage(graph: ir.Graph) -> ir.Graph:
    """The graph with a tiled first stage (tile_first_stage) run whole again, as the source model ran it:
    one op per stage op, with its own padding, instead of the tiles' slices, explicit pads and
    concatenations; bit-identical, as the tiling itself is. The tiles are recognised by the names
    tile_first_stage gives their tensors ("tileY_X/opP/output", "tileY_X/opP/padded", "tile_rowY"):
    tile (0, 0) gives each stage op's kind, constants and options, and whether any tile pads for an op
    tells a SAME op from a VALID one (a PAD op's pads come from the first and last tiles). A PAD that pads
    no tile is an identity and is not restored. Tensor indices stay as they are (the tiles' tensors are
    left unused, for a compact() to drop). A graph without tiles is returned as it is, and so is one whose
    tile-named tensors do not form tiles this pass can rejoin into a valid graph (a model edited by hand):
    its export keeps the tiles, which predict the same."""
    try:
        untiled = _untiled(graph)
        verify.verify_graph(untiled)
    except (TinyTrainError, KeyError, IndexError, StopIteration, ValueError, TypeError, AttributeError):
        return graph
    return untiled


def _untiled(graph: ir.Graph) -> ir.Graph:
    producers = {t: op for op in graph.ops for t in op.outputs}
    named = {t: _TILE_TENSOR.fullmatch(graph.tensors[t].name) for t in producers}
    tiled = {id(op) for op in graph.ops if any(named[t] for t in op.outputs)}
    if not tiled:
        return graph
    g = dataclasses.replace(graph, tensors=list(graph.tensors), ops=list(graph.ops))
    # The op writing the stage output: the last concatenation, or the single tile's last op. It reads tile tensors only.
    tiled |= {id(op) for op in g.ops if op.inputs and all(named.get(t) for t in op.inputs if g.tensors[t].data is None)}
    final = next(t for op in g.ops if id(op) in tiled for t in op.outputs if not named[t])
    activations = (t for op in g.ops if id(op) in tiled for t in op.inputs if t >= 0 and g.tensors[t].data is None)
    source = next(t for t in activations if t not in producers)
    stage: dict[int, dict[tuple[int, int], dict[str, ir.Op]]] = {}  # position -> tile -> "output"/"padded" -> op
    for op in g.ops:
        match = named.get(op.outputs[0]) if op.outputs else None
        if match and match.group(3) is not None:
            part = g.tensors[op.outputs[0]].name.rsplit("/", 1)[1]
            stage.setdefault(int(match.group(3)), {}).setdefault((int(match.group(1)), int(match.group(2))), {})[part] = op
    if producers[final].kind != "CONCATENATION":  # one tile: its last op writes the stage output
        last, writer = max(stage), producers[final]
        pad = stage[last].get((0, 0), {}).get("padded")
        own_pad = pad is not None and "output" not in stage[last][(0, 0)] and _pads_as_same(g, pad, writer)
        stage.setdefault(last if own_pad else last + 1, {}).setdefault((0, 0), {})["output"] = writer
    last_tile = max(tile for tiles in stage.values() for tile in tiles)
    whole: dict[int, int] = {}  # stage position -> its whole output tensor

    def origin(tensor: int, position: int) -> int:
        """The whole tensor a tile's operand of the op at `position` is a window of (through slices and pads)."""
        while tensor != source:
            match = named.get(tensor)
            if match and match.group(3) is not None and int(match.group(3)) != position:
                return whole[int(match.group(3))]
            tensor = producers[tensor].inputs[0]  # a SLICE window or the op's own explicit PAD
        return source

    ops = []
    for position in sorted(stage):
        first = stage[position].get((0, 0), {})
        padded = [tiles["padded"] for tiles in stage[position].values() if "padded" in tiles]
        template = first.get("output") or first.get("padded") or (padded[0] if padded else None)
        if template is None:  # an identity PAD: the tiles of its readers read windows of its input
            continue
        output = g.tensors[template.outputs[0]]
        if "output" not in first:  # a PAD op of the source model
            inputs = [origin(template.inputs[0], position)]
            before = g.tensors[first["padded"].inputs[1]].data if "padded" in first else np.zeros((4, 2), np.int32)
            after = stage[position].get(last_tile, {}).get("padded")
            after = g.tensors[after.inputs[1]].data if after is not None else np.zeros((4, 2), np.int32)
            pads = np.stack([before[:, 0], after[:, 1]], axis=1).astype(np.int32)
            x = g.tensors[inputs[0]].shape
            shape = tuple(int(size + pad.sum()) for size, pad in zip(x, pads, strict=True))
            paddings = g.add_tensor(ir.Tensor(f"op{position}/paddings", pads.shape, np.dtype(np.int32), data=pads))
            op = ir.Op("PAD", [inputs[0], paddings], [], builtin_options=template.builtin_options)
        elif template.kind == "ADD":
            inputs = [origin(t, position) for t in template.inputs]
            shape = g.tensors[inputs[0]].shape
            op = dataclasses.replace(template, inputs=inputs)
        else:
            inputs = [origin(template.inputs[0], position)]
            options = _copy(template.builtin_options)
            options.padding = tfl.Padding.SAME if padded else tfl.Padding.VALID
            x, w = g.tensors[inputs[0]].shape, g.tensors[template.inputs[1]].shape
            sizes = []
            windows = ((1, options.strideH, options.dilationHFactor), (2, options.strideW, options.dilationWFactor))
            for axis, stride, dilation in windows:
                extent = (w[axis] - 1) * dilation + 1
                sizes.append(-(-x[axis] // stride) if padded else -(-(x[axis] - extent + 1) // stride))
            shape = (x[0], *sizes, output.shape[3])
            op = dataclasses.replace(template, inputs=[inputs[0], *template.inputs[1:]], builtin_options=options)
        whole[position] = g.add_tensor(ir.Tensor(f"op{position}/output", shape, output.dtype, output.quantization))
        op.outputs = [whole[position]]
        ops.append(op)
    ops[-1].outputs = [final]
    start = next(i for i, op in enumerate(g.ops) if id(op) in tiled)
    g.ops = g.ops[:start] + ops + [op for op in g.ops[start:] if id(op) not in tiled]
    return g


def _pads_as_same(graph: ir.Graph, pad: ir.Op, op: ir.Op) -> bool:
    """Whether `pad` pads op's input as op's own SAME padding would (so it is op's explicit pad, not a PAD of
    the source model): the only case a single tile leaves ambiguous."""
    if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or op.inputs[0] != pad.outputs[0]:
        return False
    paddings, x = graph.tensors[pad.inputs[1]].data, graph.tensors[pad.inputs[0]].shape
    o = op.builtin_options
    for axis, stride, dilation in ((1, o.strideH, o.dilationHFactor), (2, o.strideW, o.dilationWFactor)):
        extent = (graph.tensors[op.inputs[1]].shape[axis] - 1) * dilation + 1
        total = max((-(-x[axis] // stride) - 1) * stride + extent - x[axis], 0)
        if list(paddings[axis]) != [total // 2, total - total // 2]:
            return False
    return True

"""The one check every model passes before any tool works on it: the graph's structure and sizes.

read.read_graph runs verify_graph on every model it reads, so compile, Trainer, plan,
export and arena all refuse the same things, with a TinyTrainError naming the op or
tensor, before any pass loops over a shape or TFLM allocates one:

- every tensor index in range; no op writes its own input; every tensor is written by
  at most one op; ops run in order (a run-time tensor is read only after the op that
  writes it, which also rules out cycles);
- dims positive; element counts and byte sizes computed exactly (Python integers)
  and below MAX_TENSOR_BYTES, so no count wraps int32 in TFLM or the kernels;
- quantization, where present, one scale and zero point per channel, scales finite
  and positive, its axis inside the tensor; present on every int8 operand of a
  conv-like layer;
- windows, strides and dilations of builtin ops within the tensor sizes, and the
  output size of a windowed op what TFLite's SAME/VALID rule gives.

Buffers matching their shapes is checked earlier, on the flatbuffer (read.parse_flatbuffer).
The schema sits above this stage, so tinytrain ops' options are checked by
backend.schema.check_op_options, which compile and every interpreter run; the training metadata
and the offline memory plan by runtime.trainer and plan.memory.
"""

from __future__ import annotations

import math

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ..errors import TinyTrainError
from . import ir

# Largest tensor, in bytes, any tool accepts: TFLM counts elements and bytes in int32 on a device.
MAX_TENSOR_BYTES = (1 << 31) - 1
CONV_LIKE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
POOLS = ("AVERAGE_POOL_2D", "MAX_POOL_2D")
# The builtin options table each op kind must carry (a mutated opcode can pair CONV_2D's with a pool);
# the passes read the kinds in OPTIONS_REQUIRED unconditionally.
OPTIONS_OF = {
    "CONV_2D": tfl.Conv2DOptionsT,
    "DEPTHWISE_CONV_2D": tfl.DepthwiseConv2DOptionsT,
    "AVERAGE_POOL_2D": tfl.Pool2DOptionsT,
    "MAX_POOL_2D": tfl.Pool2DOptionsT,
    "FULLY_CONNECTED": tfl.FullyConnectedOptionsT,
    "SOFTMAX": tfl.SoftmaxOptionsT,
    "ADD": tfl.AddOptionsT,
    "MEAN": tfl.ReducerOptionsT,
}
OPTIONS_REQUIRED = ("CONV_2D", "DEPTHWISE_CONV_2D", *POOLS, "SOFTMAX")
# Inputs the passes read as constants (axes, paddings), by op.
CONSTANT_OPERANDS = {"MEAN": (1,), "PAD": (1,)}


def element_count(shape: tuple[int, ...]) -> int:
    """Exact element count of a shape (Python integers: never wraps)."""
    return math.prod(int(d) for d in shape)


def tensor_byte_count(shape: tuple[int, ...], itemsize: int) -> int:
    return element_count(shape) * itemsize


def _tensor_name(graph: ir.Graph, index: int) -> str:
    return f"tensor {index} ({graph.tensors[index].name!r})"


def _op_name(position: int, op: ir.Op) -> str:
    return f"op {position} ({op.kind})"


def verify_graph(graph: ir.Graph) -> None:
    """Raises TinyTrainError naming the first op or tensor that breaks a rule of the module docstring."""
    for index, tensor in enumerate(graph.tensors):
        _check_tensor(graph, index, tensor)
    _check_dataflow(graph)
    for position, op in enumerate(graph.ops):
        where = _op_name(position, op)
        if not op.custom and op.kind in OPTIONS_OF:
            _check_options_type(where, op)
        if op.kind in CONV_LIKE:
            _check_conv_like(graph, where, op)
        if op.kind == "SLICE":
            _check_slice(graph, where, op)
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", *POOLS):
            _check_builtin_window(graph, where, op)
        for operand in CONSTANT_OPERANDS.get(op.kind, ()):
            if operand < len(op.inputs) and op.inputs[operand] >= 0 and graph.tensors[op.inputs[operand]].data is None:
                raise TinyTrainError(f"{where}: its input {operand} {_tensor_name(graph, op.inputs[operand])} must be a constant")


def _check_tensor(graph: ir.Graph, index: int, tensor: ir.Tensor) -> None:
    where = _tensor_name(graph, index)
    if any(int(d) < 1 for d in tensor.shape):
        raise TinyTrainError(f"{where} has shape {tensor.shape}: every dimension must be at least 1")
    size = tensor_byte_count(tensor.shape, tensor.dtype.itemsize)
    if size > MAX_TENSOR_BYTES:
        raise TinyTrainError(
            f"{where} has shape {tensor.shape}: {size:,} bytes, more than the {MAX_TENSOR_BYTES:,} TFLM can count"
        )
    if tensor.is_variable and tensor.data is not None:
        raise TinyTrainError(f"{where} is a variable with constant data: TFLM zeroes variables and ignores the data")
    q = tensor.quantization
    if q is None:
        return
    if len(q.zero_point) != len(q.scale):
        raise TinyTrainError(f"{where} has {len(q.scale)} quantization scales but {len(q.zero_point)} zero points")
    if not np.all(np.isfinite(q.scale)) or not np.all(q.scale > 0):
        raise TinyTrainError(f"{where} has a quantization scale that is not finite and positive")
    if len(q.scale) > 1 and not (0 <= q.axis < len(tensor.shape) and tensor.shape[q.axis] == len(q.scale)):
        raise TinyTrainError(
            f"{where} has {len(q.scale)} per-channel scales on axis {q.axis}, which does not match its shape {tensor.shape}"
        )
    if tensor.dtype.kind == "i" and tensor.dtype.itemsize <= 2:
        info = np.iinfo(tensor.dtype)
        if np.any(q.zero_point < info.min) or np.any(q.zero_point > info.max):
            raise TinyTrainError(f"{where} has a zero point outside the {tensor.dtype.name} range")


def _check_dataflow(graph: ir.Graph) -> None:
    """Indices in range, outputs present, no op writing its input, one writer per tensor, reads after writes."""
    count = len(graph.tensors)
    for kind, indices in (("input", graph.inputs), ("output", graph.outputs)):
        for index in indices:
            if not 0 <= index < count:
                raise TinyTrainError(f"model {kind} {index} is not a tensor (the model has {count})")
    writer: dict[int, int] = {}
    for position, op in enumerate(graph.ops):
        where = _op_name(position, op)
        for index in op.inputs:
            if not -1 <= index < count:
                raise TinyTrainError(f"{where} reads tensor {index}, which does not exist (the model has {count})")
        for k, index in enumerate(op.outputs):
            if not 0 <= index < count:
                raise TinyTrainError(f"{where} writes tensor {index}, which does not exist (the model has {count})")
            if index in op.inputs:
                raise TinyTrainError(f"{where} writes its own input {_tensor_name(graph, index)}")
            if index in writer:
                raise TinyTrainError(f"{where} writes {_tensor_name(graph, index)}, which op {writer[index]} already writes")
            tensor = graph.tensors[index]
            if tensor.data is not None or (tensor.is_variable and not _scale_with_history(graph, op, k)) or index in graph.inputs:
                raise TinyTrainError(f"{where} writes {_tensor_name(graph, index)}, a constant, variable or model input")
            writer[index] = position
    for position, op in enumerate(graph.ops):
        for index in op.inputs:
            if index < 0 or index in graph.inputs:
                continue
            tensor = graph.tensors[index]
            if tensor.data is None and not tensor.is_variable and writer.get(index, position) >= position:
                raise TinyTrainError(
                    f"{_op_name(position, op)} reads {_tensor_name(graph, index)} before any op writes it "
                    "(ops must come in execution order, without cycles)"
                )


def _scale_with_history(graph: ir.Graph, op: ir.Op, k: int) -> bool:
    """Whether output k of op is the one variable an op may write: the scale of the int8 gradient before it,
    a float32 [3] with the history its writer keeps across steps (kernels/tflm/kernel_util.h)."""
    tensor = graph.tensors[op.outputs[k]]
    return (
        op.custom
        and k > 0
        and graph.tensors[op.outputs[k - 1]].dtype == np.int8
        and tensor.dtype == np.float32
        and tensor.shape == ir.GRAD_SCALE_WITH_HISTORY
    )


def _check_slice(graph: ir.Graph, where: str, op: ir.Op) -> None:
    """SLICE's begin and size are integer vectors with one entry per input dimension (the planner reads them)."""
    rank = len(_operand(graph, where, op, 0, "input").shape)
    for position, what in ((1, "begin"), (2, "size")):
        tensor = _operand(graph, where, op, position, what)
        if tensor.dtype.kind != "i" or tensor.shape != (rank,):
            raise TinyTrainError(
                f"{where}: its {what} must be an integer vector of {rank} entries, is {tensor.dtype.name} {tensor.shape}"
            )


def _check_options_type(where: str, op: ir.Op) -> None:
    expected = OPTIONS_OF[op.kind]
    if op.builtin_options is None and op.kind not in OPTIONS_REQUIRED:
        return
    if not isinstance(op.builtin_options, expected):
        found = type(op.builtin_options).__name__ if op.builtin_options is not None else "none"
        raise TinyTrainError(f"{where} carries {found} options, not {expected.__name__.removesuffix('T')}")


def _operand(graph: ir.Graph, where: str, op: ir.Op, position: int, what: str) -> ir.Tensor:
    if position >= len(op.inputs) or op.inputs[position] < 0:
        raise TinyTrainError(f"{where} has no {what} (input {position})")
    return graph.tensors[op.inputs[position]]


def _check_conv_like(graph: ir.Graph, where: str, op: ir.Op) -> None:
    if not op.outputs:
        raise TinyTrainError(f"{where} has no output")
    operands = [("input", _operand(graph, where, op, 0, "input")), ("weights", _operand(graph, where, op, 1, "weights"))]
    for what, tensor in [*operands, ("output", graph.tensors[op.outputs[0]])]:
        if tensor.dtype == np.int8 and tensor.quantization is None:
            raise TinyTrainError(f"{where}: its int8 {what} {tensor.name!r} has no quantization")


def in_range(where: str, name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise TinyTrainError(f"{where}: {name} {value} is outside [{low}, {high}] for its tensors")


def window_limit(size: int) -> int:
    """Largest window, stride or dilation accepted over `size` input rows or columns: SAME padding lets a
    window hang over the input (a 3x3 or 7x7 window over a 1x1 map is real), but the passes build arrays
    per window position, so a 2^30 window must stop here."""
    return 2 * size + 16


def _check_builtin_window(graph: ir.Graph, where: str, op: ir.Op) -> None:
    """Strides, dilations and windows within the input, and the output size TFLite's SAME/VALID rule gives."""
    options = op.builtin_options
    x = _operand(graph, where, op, 0, "input")
    if not op.outputs or options is None:
        raise TinyTrainError(f"{where} has no output or no options")
    y = graph.tensors[op.outputs[0]]
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise TinyTrainError(f"{where} needs 4-D NHWC input and output, got {x.shape} and {y.shape}")
    if op.kind in POOLS:
        windows = ((options.filterHeight, options.strideH, 1), (options.filterWidth, options.strideW, 1))
    else:
        w = _operand(graph, where, op, 1, "weights")
        if len(w.shape) != 4:
            raise TinyTrainError(f"{where} needs 4-D weights, got {w.shape}")
        windows = ((w.shape[1], options.strideH, options.dilationHFactor), (w.shape[2], options.strideW, options.dilationWFactor))
    for axis, (kernel, stride, dilation) in zip((1, 2), windows, strict=True):
        limit = window_limit(x.shape[axis])
        in_range(where, f"stride along axis {axis}", stride, 1, limit)
        in_range(where, f"dilation along axis {axis}", dilation, 1, limit)
        in_range(where, f"window along axis {axis}", kernel, 1, limit)
        extent = (kernel - 1) * dilation + 1
        in_range(where, f"dilated window along axis {axis}", extent, 1, limit)
        size = x.shape[axis]
        expected = -(-size // stride) if options.padding == tfl.Padding.SAME else -(-(size - extent + 1) // stride)
        if expected < 1 or y.shape[axis] != expected:
            raise TinyTrainError(
                f"{where}: output has {y.shape[axis]} along axis {axis}; a {extent}-wide window with stride {stride} "
                f"over {size} gives {max(expected, 0)}"
            )

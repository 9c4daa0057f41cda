"""Gradient rules of the layout ops (RESHAPE, EXPAND_DIMS, SQUEEZE, PAD, STRIDED_SLICE, CONCATENATION):
builtin TFLM ops on the gradient itself."""

from __future__ import annotations

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ....errors import TinyTrainError
from . import grad_rule, non_differentiable

# Keras' Flatten computes RESHAPE's target shape at run time from SHAPE.
non_differentiable("SHAPE")


def reshaped(b, grad, like: int, shape: tuple[int, ...] | None = None):
    """grad as a new gradient of forward tensor `like`, of `like`'s shape unless `shape` is given:
    a builtin RESHAPE; an int8 gradient keeps its scale."""
    tensor = b.graph.tensors[like]
    shape = np.asarray(tensor.shape if shape is None else shape, np.int32)
    result = b.new_grad(like, shape, scale_from=grad)
    options = tfl.ReshapeOptionsT()
    options.newShape = shape.tolist()
    b.emit("RESHAPE", [grad.data, b.constant(f"{tensor.name}/grad_shape", shape)], [result.data], builtin_options=options)
    return result


@grad_rule("RESHAPE", "EXPAND_DIMS", "SQUEEZE")
def reshape(b, op, grad, needs):
    """y = x with size-1 dimensions added, removed or the shape otherwise changed; dx = reshape(dy, shape of x)."""
    return (reshaped(b, grad, op.inputs[0]),) + (None,) * (len(op.inputs) - 1)


@grad_rule("PAD")
def pad(b, op, grad, needs):
    """y = pad(x, paddings); dx = slice(dy, begin = paddings[:, 0], size = shape of x): a builtin SLICE."""
    x, paddings = op.inputs
    padding = b.graph.tensors[paddings].data
    if padding is None:
        raise TinyTrainError(
            f"PAD producing {b.graph.tensors[op.outputs[0]].name!r} has run-time paddings; only constant ones train"
        )
    name = b.graph.tensors[x].name
    begin = b.constant(f"{name}/grad_begin", np.asarray(padding, np.int32)[:, 0].copy())
    size = b.constant(f"{name}/grad_size", np.asarray(b.graph.tensors[x].shape, np.int32))
    dx = b.new_grad(x, scale_from=grad)
    b.emit("SLICE", [grad.data, begin, size], [dx.data], builtin_options=tfl.SliceOptionsT())
    return (dx, None)


def _slice_bounds(b, op) -> tuple[list[int], list[int]]:
    """STRIDED_SLICE's begin and end per axis of x, masks and negative indices resolved (strides 1)."""
    x, begin_t, end_t, strides_t = op.inputs
    o = op.builtin_options
    name = b.graph.tensors[op.outputs[0]].name
    values = [b.graph.tensors[t].data for t in (begin_t, end_t, strides_t)]
    if any(v is None for v in values) or o.ellipsisMask or o.newAxisMask or o.offset:
        raise TinyTrainError(
            f"STRIDED_SLICE producing {name!r}: only constant begin, end and strides without ellipsis, new-axis or offset train"
        )
    begin, end, strides = (np.asarray(v).ravel().tolist() for v in values)
    if any(stride != 1 for stride in strides):
        raise TinyTrainError(f"STRIDED_SLICE producing {name!r} has strides {strides}; only strides of 1 train")
    shape = b.graph.tensors[x].shape
    lows, highs = [], []
    for axis, size in enumerate(shape):
        low = 0 if o.beginMask >> axis & 1 else begin[axis] + (size if begin[axis] < 0 else 0)
        low = min(max(low, 0), size)
        if o.shrinkAxisMask >> axis & 1:
            high = low + 1
        else:
            high = size if o.endMask >> axis & 1 else end[axis] + (size if end[axis] < 0 else 0)
            high = min(max(high, low), size)
        lows.append(low)
        highs.append(high)
    return lows, highs


@grad_rule("STRIDED_SLICE")
def strided_slice(b, op, grad, needs):
    """y = x[begin:end] (strides 1, shrunk axes dropped); dx = dy placed back in zeros: a builtin PAD by
    (begin, size - end) per axis, after a RESHAPE restoring shrunk axes."""
    x = op.inputs[0]
    lows, highs = _slice_bounds(b, op)
    sliced = tuple(high - low for low, high in zip(lows, highs, strict=True))
    if sliced != b.graph.tensors[op.outputs[0]].shape:
        grad = reshaped(b, grad, op.outputs[0], sliced)
    shape = b.graph.tensors[x].shape
    paddings = np.array([[low, size - high] for low, high, size in zip(lows, highs, shape, strict=True)], np.int32)
    dx = b.new_grad(x, scale_from=grad)
    b.emit(
        "PAD",
        [grad.data, b.constant(f"{b.graph.tensors[x].name}/grad_paddings", paddings)],
        [dx.data],
        builtin_options=tfl.PadOptionsT(),
    )
    return (dx, None, None, None)


@grad_rule("CONCATENATION")
def concatenation(b, op, grad, needs):
    """y = act(concat(x_0, x_1, ..., axis)); dx_i = slice of act'(y) * dy along axis (builtin SLICE each)."""
    dz = b.through_activation(op.outputs[0], op.builtin_options.fusedActivationFunction, grad)
    rank = len(b.graph.tensors[op.outputs[0]].shape)
    axis = op.builtin_options.axis % rank
    results, offset = [], 0
    for x, needed in zip(op.inputs, needs, strict=True):
        shape = b.graph.tensors[x].shape
        if needed:
            name = b.graph.tensors[x].name
            begin = np.zeros(rank, np.int32)
            begin[axis] = offset
            dx = b.new_grad(x, scale_from=dz)
            begin_tensor, size_tensor = (
                b.constant(f"{name}/grad_begin", begin),
                b.constant(f"{name}/grad_size", np.asarray(shape, np.int32)),
            )
            b.emit("SLICE", [dz.data, begin_tensor, size_tensor], [dx.data], builtin_options=tfl.SliceOptionsT())
            results.append(dx)
        else:
            results.append(None)
        offset += shape[axis]
    return tuple(results)

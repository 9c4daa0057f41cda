"""Gradient rules of RESHAPE and PAD: builtin TFLM ops on the gradient itself."""

from __future__ import annotations

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ....errors import TinyTrainError
from . import grad_rule, non_differentiable

# Keras' Flatten computes RESHAPE's target shape at run time from SHAPE.
non_differentiable("SHAPE")


@grad_rule("RESHAPE")
def reshape(b, op, grad, needs):
    """dx = reshape(dy, shape of x): a builtin RESHAPE; an int8 gradient keeps its scale."""
    x = op.inputs[0]
    shape = np.asarray(b.graph.tensors[x].shape, np.int32)
    dx = b.new_grad(x, scale_from=grad)
    options = tfl.ReshapeOptionsT()
    options.newShape = shape.tolist()
    b.emit("RESHAPE", [grad.data, b.constant(f"{b.graph.tensors[x].name}/grad_shape", shape)], [dx.data], builtin_options=options)
    return (dx,) + (None,) * (len(op.inputs) - 1)


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

"""Gradient rules of AVERAGE_POOL_2D, MAX_POOL_2D and MEAN."""

from __future__ import annotations

from ....errors import TinyTrainError
from ....plan.geometry import padding_before
from . import grad_rule
from .shape import reshaped


def _pool_geometry(b, op) -> dict:
    options = op.builtin_options
    (_, in_h, in_w, _), (_, out_h, out_w, _) = b.graph.tensors[op.inputs[0]].shape, b.graph.tensors[op.outputs[0]].shape
    return dict(
        filter_h=options.filterHeight,
        filter_w=options.filterWidth,
        stride_h=options.strideH,
        stride_w=options.strideW,
        pad_top=padding_before(options.padding, in_h, out_h, options.filterHeight, options.strideH),
        pad_left=padding_before(options.padding, in_w, out_w, options.filterWidth, options.strideW),
    )


@grad_rule("AVERAGE_POOL_2D")
def average_pool_2d(b, op, grad, needs):
    """y = mean of each window's in-bounds elements; dx spreads dz / count over the window (TT_AVERAGE_POOL_2D_GRAD)."""
    dz = b.through_activation(op.outputs[0], op.builtin_options.fusedActivationFunction, grad)
    return (b.grad_op("AVERAGE_POOL_2D_GRAD", [dz], [], b.new_grad(op.inputs[0]), **_pool_geometry(b, op)),)


@grad_rule("MAX_POOL_2D")
def max_pool_2d(b, op, grad, needs):
    """y = max of each window; dx routes dz to the window's first maximum in x (TT_MAX_POOL_2D_GRAD, reads x)."""
    dz = b.through_activation(op.outputs[0], op.builtin_options.fusedActivationFunction, grad)
    return (b.grad_op("MAX_POOL_2D_GRAD", [dz], [op.inputs[0]], b.new_grad(op.inputs[0]), **_pool_geometry(b, op)),)


@grad_rule("MEAN")
def mean(b, op, grad, needs):
    """y = mean of x over its spatial axes: height and width of [n, h, w, c] (global pooling) or time of
    [n, t, c] (1-D global pooling, viewed as [n, t, 1, c]); dx = dy / (h * w) broadcast (TT_MEAN_GRAD)."""
    x, axes = op.inputs
    shape = b.graph.tensors[x].shape
    axes_value = b.graph.tensors[axes].data
    spatial = {4: [1, 2], 3: [1]}.get(len(shape))
    if axes_value is None or spatial is None or sorted(int(a) % len(shape) for a in axes_value.ravel()) != spatial:
        raise TinyTrainError(
            f"MEAN producing {b.graph.tensors[op.outputs[0]].name!r}: only the mean over height and width of a 4-D "
            "tensor or over time of a 3-D one trains"
        )
    if len(shape) == 4:
        return (b.grad_op("MEAN_GRAD", [grad], [], b.new_grad(x)), None)
    n, t, c = shape
    if len(b.graph.tensors[op.outputs[0]].shape) != 2:  # keepdims: [n, 1, c]
        grad = reshaped(b, grad, op.outputs[0], (n, c))
    return (reshaped(b, b.grad_op("MEAN_GRAD", [grad], [], b.new_grad(x, (n, t, 1, c))), x), None)

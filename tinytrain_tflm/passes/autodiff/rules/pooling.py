"""Gradient rules of AVERAGE_POOL_2D, MAX_POOL_2D and MEAN."""

from __future__ import annotations

from ....errors import TinyTrainError
from ....plan.geometry import padding_before
from . import grad_rule


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
    """y = mean of x over height and width (global pooling); dx = dy / (h * w) broadcast (TT_MEAN_GRAD)."""
    x, axes = op.inputs
    axes_value = b.graph.tensors[axes].data
    if len(b.graph.tensors[x].shape) != 4 or axes_value is None or sorted(int(a) % 4 for a in axes_value.ravel()) != [1, 2]:
        raise TinyTrainError(
            f"MEAN producing {b.graph.tensors[op.outputs[0]].name!r}: only the mean over height and width trains"
        )
    return (b.grad_op("MEAN_GRAD", [grad], [], b.new_grad(x)), None)

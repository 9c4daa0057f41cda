"""Gradient rules of CONV_2D and DEPTHWISE_CONV_2D."""

from __future__ import annotations

from ....plan.geometry import padding_before
from . import grad_rule


@grad_rule("CONV_2D", "DEPTHWISE_CONV_2D")
def conv_2d(b, op, grad, needs):
    """y = act(conv(x, w) + bias), w per-channel quantized.

    dz = act'(y) * dy
    dx = conv_transpose(dz, w)                         TT_<OP>_INPUT_GRAD (reads w, not x)
    dw = correlate(x, dz), first c_update channels     TT_<OP>_FILTER_GRAD (reads x, not w)
    dbias = sum of dz over all but channels            TT_BIAS_GRAD

    The input gradient is emitted first so a weight update can follow its
    gradient at once without the input gradient reading updated weights.
    """
    x, w = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    options = op.builtin_options
    tensors = b.graph.tensors
    (_, in_h, in_w, in_c), (_, out_h, out_w, _) = tensors[x].shape, tensors[op.outputs[0]].shape
    depthwise = op.kind == "DEPTHWISE_CONV_2D"
    kernel_h, kernel_w = tensors[w].shape[1:3]
    geometry = dict(
        stride_h=options.strideH,
        stride_w=options.strideW,
        dilation_h=options.dilationHFactor,
        dilation_w=options.dilationWFactor,
        pad_top=padding_before(options.padding, in_h, out_h, kernel_h, options.strideH, options.dilationHFactor),
        pad_left=padding_before(options.padding, in_w, out_w, kernel_w, options.strideW, options.dilationWFactor),
    )
    if depthwise:
        geometry["depth_multiplier"] = tensors[w].shape[3] // in_c
    dz = b.through_activation(op.outputs[0], options.fusedActivationFunction, grad)
    results = [None] * len(op.inputs)
    if needs[0]:
        results[0] = b.grad_op(f"{op.kind}_INPUT_GRAD", [dz], [w], b.new_grad(x), **geometry)
    if needs[1]:
        shape = list(tensors[w].shape)
        shape[3 if depthwise else 0] = b.trainable[w]
        results[1] = b.grad_op(f"{op.kind}_FILTER_GRAD", [dz], [x], b.new_grad(w, shape), **geometry)
    if bias >= 0 and needs[2]:
        results[2] = b.grad_op("BIAS_GRAD", [dz], [], b.new_grad(bias, (b.trainable[bias],)))
    return tuple(results)

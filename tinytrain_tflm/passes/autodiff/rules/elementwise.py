"""Gradient rules of ADD, standalone activations and QUANTIZE."""

from __future__ import annotations

from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ....errors import TinyTrainError
from . import grad_rule


@grad_rule("ADD")
def add(b, op, grad, needs):
    """y = act(a + b) (a residual connection); da = db = act'(y) * dy: one tensor serves both."""
    a, other = op.inputs
    shapes = {b.graph.tensors[t].shape for t in (a, other, op.outputs[0])}
    if len(shapes) != 1:
        raise TinyTrainError(f"ADD producing {b.graph.tensors[op.outputs[0]].name!r} broadcasts; only same-shape ADD trains")
    dz = b.through_activation(op.outputs[0], op.builtin_options.fusedActivationFunction, grad)
    return (dz if needs[0] else None, dz if needs[1] else None)


@grad_rule("RELU", "RELU6", "RELU_N1_TO_1")
def activation(b, op, grad, needs):
    """y = clamp(x); dx = dy where y was not clamped, 0 elsewhere (TT_ACTIVATION_GRAD)."""
    return (b.through_activation(op.outputs[0], getattr(tfl.ActivationFunctionType, op.kind), grad),)


@grad_rule("QUANTIZE")
def quantize(b, op, grad, needs):
    """Requantization int8 -> int8 is the identity on real values (straight-through): dx = dy."""
    return (grad,)

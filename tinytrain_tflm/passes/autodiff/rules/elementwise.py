"""Gradient rules of ADD, SUB, MUL, standalone activations and QUANTIZE."""

from __future__ import annotations

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ....backend import schema_generated
from ....errors import TinyTrainError
from ....frontend import ir
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


# Element-wise activation functions: (TT_UNARY_GRAD function, whether f' is read from the output y).
UNARY_FUNCTIONS = {
    "LOGISTIC": (schema_generated.UNARY_LOGISTIC, True),
    "TANH": (schema_generated.UNARY_TANH, True),
    "HARD_SWISH": (schema_generated.UNARY_HARD_SWISH, False),
    "LEAKY_RELU": (schema_generated.UNARY_LEAKY_RELU, False),
}


@grad_rule(*UNARY_FUNCTIONS)
def unary(b, op, grad, needs):
    """y = f(x); dx = f'(x) * dy (TT_UNARY_GRAD). f' is read from the saved int8 y for LOGISTIC
    (y (1 - y)) and TANH (1 - y^2), from x for HARD_SWISH ((2x + 3) / 6 on (-3, 3)) and LEAKY_RELU
    (1 or alpha): hard-swish is not invertible, and x keeps leaky ReLU's slope exact."""
    function, from_output = UNARY_FUNCTIONS[op.kind]
    saved = op.outputs[0] if from_output else op.inputs[0]
    alpha = float(op.builtin_options.alpha) if op.kind == "LEAKY_RELU" else 0.0
    return (b.grad_op("UNARY_GRAD", [grad], [saved], b.new_grad(op.inputs[0]), function=function, alpha=alpha),)


def _operand_shapes(b, op) -> tuple[tuple[int, ...], ...]:
    """The shapes of op's two operands and output; broadcasting must keep the rank (the kernels' NHWC views)."""
    shapes = tuple(b.graph.tensors[t].shape for t in (*op.inputs, op.outputs[0]))
    if len({len(shape) for shape in shapes}) != 1 or len(shapes[-1]) > 4:
        raise TinyTrainError(
            f"{op.kind} producing {b.graph.tensors[op.outputs[0]].name!r} has operand shapes {list(shapes[:2])}; "
            "only operands of the output's rank (at most 4) train"
        )
    return shapes


def _times_constant(b, op, dz, operand: int, value: int):
    """dz * value summed back to `operand`'s shape (TT_MUL_GRAD with a constant int8 operand of 1s)."""
    rank = len(b.graph.tensors[op.outputs[0]].shape)
    quant = ir.Quantization(np.ones(1, np.float32), np.zeros(1, np.int64))
    name = f"{b.graph.tensors[operand].name}/grad_factor"
    factor = b.graph.add_tensor(ir.Tensor(name, (1,) * rank, np.dtype(np.int8), quant, np.full((1,) * rank, value, np.int8)))
    return b.grad_op("MUL_GRAD", [dz], [factor], b.new_grad(operand))


@grad_rule("SUB")
def sub(b, op, grad, needs):
    """y = act(a - b), either operand broadcast; da = act'(y) * dy and db = -act'(y) * dy, each summed over
    the dimensions its operand was broadcast along. A sum or a sign change is TT_MUL_GRAD with a constant 1 or -1."""
    *operand_shapes, y_shape = _operand_shapes(b, op)
    dz = b.through_activation(op.outputs[0], op.builtin_options.fusedActivationFunction, grad)
    results = []
    for operand, shape, needed, sign in zip(op.inputs, operand_shapes, needs, (1, -1), strict=True):
        if not needed:
            results.append(None)
        elif sign == 1 and shape == y_shape:
            results.append(dz)
        else:
            results.append(_times_constant(b, op, dz, operand, sign))
    return tuple(results)


@grad_rule("MUL")
def mul(b, op, grad, needs):
    """y = act(a * b), either operand broadcast (squeeze-and-excite's [n, h, w, c] * [n, 1, 1, c]);
    da = act'(y) * dy * b summed over a's broadcast dimensions, db likewise with a (TT_MUL_GRAD, reading
    the other int8 operand)."""
    _operand_shapes(b, op)
    for t in op.inputs:
        tensor = b.graph.tensors[t]
        if tensor.dtype != np.int8 or tensor.quantization is None or len(tensor.quantization.scale) != 1:
            raise TinyTrainError(f"MUL operand {tensor.name!r} must be int8 with per-tensor quantization to train")
    dz = b.through_activation(op.outputs[0], op.builtin_options.fusedActivationFunction, grad)
    a, other = op.inputs
    return (
        b.grad_op("MUL_GRAD", [dz], [other], b.new_grad(a)) if needs[0] else None,
        b.grad_op("MUL_GRAD", [dz], [a], b.new_grad(other)) if needs[1] else None,
    )

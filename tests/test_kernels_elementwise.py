"""TT_UNARY_GRAD (LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU backward) and TT_MUL_GRAD in TFLM against
TensorFlow's GradientTape, in both gradient representations."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import CONTROL, control, grad_outputs, grad_tensors, grad_values, op_model, read_grad, tf_input_grad

from tinytrain_tflm import Interpreter, TFLMError
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.frontend import ir

MODES = ["float32", "int8"]
BACKWARD = control(schema_generated.CONTROL_BACKWARD)
ARENA = 32 * 1024
ALPHA = 0.2


def quantization(scale: float, zero_point: int) -> ir.Quantization:
    return ir.Quantization(np.array([scale], np.float32), np.array([zero_point], np.int64))


# function -> (TensorFlow forward, the saved tensor's quantization, whether that is the output y).
# LOGISTIC and TANH use the converter's fixed output quantization; the input scale 1/16 is exact in
# binary, so HARD_SWISH's kinks at -3 and 3 and LEAKY_RELU's at 0 are hit exactly by some levels.
FUNCTIONS = {
    "LOGISTIC": (tf.sigmoid, quantization(1 / 256, -128), True),
    "TANH": (tf.tanh, quantization(1 / 128, 0), True),
    "HARD_SWISH": (lambda x: x * tf.nn.relu6(x + 3) / 6, quantization(1 / 16, -7), False),
    "LEAKY_RELU": (lambda x: tf.nn.leaky_relu(x, ALPHA), quantization(1 / 16, -7), False),
}
# f' read from the rounded y differs from f' at x by up to max|d f'/d y| (|1 - 2y| <= 1 for the sigmoid,
# 2|y| <= 2 for tanh) times y's error: half a step, or a whole one where y saturates at 127 (the int8
# grid has no +1). From x it is exact up to float rounding.
DERIVATIVE_ERROR = {"LOGISTIC": 1 / 256, "TANH": 2 / 128, "HARD_SWISH": 1e-6, "LEAKY_RELU": 1e-6}


def unary_options(kind: str, function: int | None = None, alpha: float = ALPHA) -> bytes:
    function = getattr(schema_generated, f"UNARY_{kind}") if function is None else function
    return schema.encode_blob("UNARY_GRAD", function=function, alpha=alpha)


def unary_model(kind: str, shape: tuple[int, ...], mode: str, saved: ir.Tensor, options: bytes | None = None) -> bytes:
    return op_model(
        schema_generated.UNARY_GRAD,
        [*grad_tensors("grad_output", shape, mode), saved, CONTROL],
        grad_outputs("grad_input", shape, mode),
        unary_options(kind) if options is None else options,
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 4, 4, 16), (2, 300)])
@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_unary_grad_matches_tensorflow(rng, kind, shape, mode):
    forward, quant, from_output = FUNCTIONS[kind]
    if from_output:
        # x over the function's whole non-saturated range; y its int8 output, as TFLM's LUT rounds it.
        x = rng.uniform(-6, 6, shape)
        saved_q = quant.quantize(forward(tf.constant(x)).numpy(), np.int8)
    else:
        saved_q = rng.integers(-128, 128, shape).astype(np.int8)
        x = quant.dequantize(saved_q)
    saved = ir.Tensor("saved", shape, np.dtype(np.int8), quant)
    feed, dy = grad_values(rng, shape, mode)
    got = read_grad(Interpreter(unary_model(kind, shape, mode, saved), ARENA).run([*feed, saved_q, BACKWARD]), mode)
    want = tf_input_grad(forward, x, dy.astype(np.float64))
    # Plus, for an int8 result, rounding to its scale max|g| / 127: half a step per element.
    rounding = np.abs(got).max() / 254 + 1e-9 if mode == "int8" else 1e-9
    np.testing.assert_array_less(np.abs(got - want), np.abs(dy) * DERIVATIVE_ERROR[kind] + rounding)


@pytest.mark.parametrize(
    "options,saved,grad_input_shape,message",
    [
        (unary_options("TANH", function=7), None, (2, 8), r"function must be one of the UNARY_\* constants \(0 to 3\), got 7"),
        (None, ir.Tensor("saved", (2, 8), np.dtype(np.float32), quantization(0.1, 0)), (2, 8), "saved must be the int8"),
        (None, ir.Tensor("saved", (2, 7), np.dtype(np.int8), quantization(0.1, 0)), (2, 8), "saved must have grad_output's 16"),
        (None, ir.Tensor("saved", (2, 8), np.dtype(np.int8)), (2, 8), "saved needs per-tensor quantization"),
        (None, None, (2, 9), "grad_input has 18 elements, grad_output 16"),
    ],
)
def test_unary_grad_prepare_rejects(options, saved, grad_input_shape, message):
    saved = ir.Tensor("saved", (2, 8), np.dtype(np.int8), quantization(0.1, 0)) if saved is None else saved
    model = op_model(
        schema_generated.UNARY_GRAD,
        [*grad_tensors("grad_output", (2, 8), "float32"), saved, CONTROL],
        grad_outputs("grad_input", grad_input_shape, "float32"),
        unary_options("TANH") if options is None else options,
    )
    with pytest.raises(TFLMError, match=f"TT_UNARY_GRAD: {message}"):
        Interpreter(model, ARENA)


OTHER_QUANT = quantization(0.03, 5)  # nonzero zero point, so a kernel that ignores it fails

# (a's shape, b's shape): same shape, squeeze-and-excite's channel scale, and both broadcast at once.
MUL_SHAPES = [((2, 5), (2, 5)), ((1, 4, 4, 6), (1, 1, 1, 6)), ((1, 3, 1, 2), (2, 1, 4, 1))]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("a_shape,b_shape", MUL_SHAPES)
def test_mul_grad_matches_tensorflow(rng, a_shape, b_shape, mode):
    y_shape = np.broadcast_shapes(a_shape, b_shape)
    a_q = rng.integers(-128, 128, a_shape).astype(np.int8)
    b_q = rng.integers(-128, 128, b_shape).astype(np.int8)
    a_real, b_real = OTHER_QUANT.dequantize(a_q), OTHER_QUANT.dequantize(b_q)
    feed, dy = grad_values(rng, y_shape, mode)
    a_t, b_t = tf.constant(a_real, tf.float64), tf.constant(b_real, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([a_t, b_t])
        y = a_t * b_t
    want = tape.gradient(y, [a_t, b_t], output_gradients=tf.constant(dy, tf.float64))
    # d/da reads b and d/db reads a: the same op with the operands' roles swapped.
    for result_shape, other_shape, other_q, reference in ((a_shape, b_shape, b_q, want[0]), (b_shape, a_shape, a_q, want[1])):
        model = op_model(
            schema_generated.MUL_GRAD,
            [
                *grad_tensors("grad_output", y_shape, mode),
                ir.Tensor("other", other_shape, np.dtype(np.int8), OTHER_QUANT),
                CONTROL,
            ],
            grad_outputs("grad_input", result_shape, mode),
            schema.encode_blob("MUL_GRAD"),
        )
        got = read_grad(Interpreter(model, ARENA).run([*feed, other_q, BACKWARD]), mode)
        reference = reference.numpy()
        relative = 1e-5 if mode == "float32" else 1 / 254 + 1e-5
        np.testing.assert_allclose(got, reference, rtol=0, atol=relative * np.abs(reference).max())


@pytest.mark.parametrize(
    "other,grad_input_shape,message",
    [
        (ir.Tensor("other", (1, 1, 1, 6), np.dtype(np.float32)), (1, 4, 4, 6), "other must be the int8 other operand"),
        (ir.Tensor("other", (1, 1, 1, 6), np.dtype(np.int8)), (1, 4, 4, 6), "other needs per-tensor quantization"),
        (
            ir.Tensor("other", (1, 6), np.dtype(np.int8), OTHER_QUANT),
            (1, 4, 4, 6),
            "other and grad_input must have grad_output's rank 4, got 2 and 4",
        ),
        (
            ir.Tensor("other", (1, 1, 1, 3), np.dtype(np.int8), OTHER_QUANT),
            (1, 4, 4, 6),
            "each dimension of other and grad_input",
        ),
        (
            ir.Tensor("other", (1, 1, 1, 6), np.dtype(np.int8), OTHER_QUANT),
            (1, 2, 4, 6),
            "each dimension of other and grad_input",
        ),
    ],
)
def test_mul_grad_prepare_rejects(other, grad_input_shape, message):
    model = op_model(
        schema_generated.MUL_GRAD,
        [*grad_tensors("grad_output", (1, 4, 4, 6), "float32"), other, CONTROL],
        grad_outputs("grad_input", grad_input_shape, "float32"),
        schema.encode_blob("MUL_GRAD"),
    )
    with pytest.raises(TFLMError, match=f"TT_MUL_GRAD: {message}"):
        Interpreter(model, ARENA)

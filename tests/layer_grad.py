"""Helpers of the layer gradient tests (conv, depthwise conv, fully connected): quantized operands,
one-op models, the TensorFlow reference and the tolerance check."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from conftest import CONTROL, control, grad_outputs, grad_tensors, grad_values, op_model, read_grad

from tinytrain_tflm import Interpreter
from tinytrain_tflm.backend import schema_generated
from tinytrain_tflm.frontend import ir

INPUT_SCALE = 0.05
INPUT_ZERO_POINT = -7  # nonzero, so a kernel that ignores it fails
ARENA = 64 * 1024
BACKWARD = control(schema_generated.CONTROL_BACKWARD)


def quantized_filter(rng: np.random.Generator, shape: tuple[int, ...], axis: int, per_channel: bool = True) -> ir.Tensor:
    """A constant int8 filter, symmetric, with one scale per channel along `axis` or one in all."""
    scales = rng.uniform(0.005, 0.02, shape[axis] if per_channel else 1).astype(np.float32)
    quant = ir.Quantization(scales, np.zeros(scales.size, np.int64), axis)
    return ir.Tensor("filter", shape, np.dtype(np.int8), quant, rng.integers(-127, 128, shape).astype(np.int8))


def real_filter(tensor: ir.Tensor) -> np.ndarray:
    return tensor.quantization.dequantize(tensor.data)


def input_tensor(shape: tuple[int, ...], scale: float = INPUT_SCALE, zero_point: int = INPUT_ZERO_POINT) -> ir.Tensor:
    """The forward input of a filter-gradient op: a graph input, int8 per-tensor."""
    quant = ir.Quantization(np.array([scale], np.float32), np.array([zero_point], np.int64))
    return ir.Tensor("input", shape, np.dtype(np.int8), quant)


def random_input(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """int8 values of input_tensor() and the real values they stand for."""
    q = rng.integers(-128, 128, shape).astype(np.int8)
    return q, INPUT_SCALE * (q.astype(np.float64) - INPUT_ZERO_POINT)


def layer_grad_model(
    op: str, grad_output_shape: tuple[int, ...], operand: ir.Tensor, result_shape: tuple[int, ...], mode: str, options: bytes
) -> bytes:
    """A model running one layer gradient op: inputs (grad_output, its scale, operand, control)."""
    return op_model(
        op,
        [*grad_tensors("grad_output", grad_output_shape, mode), operand, CONTROL],
        grad_outputs("grad", result_shape, mode),
        options,
    )


def run_input_grad(model: bytes, grad_feed: list[np.ndarray], mode: str) -> np.ndarray:
    """Real result of an input-gradient op (its filter is a constant)."""
    return read_grad(Interpreter(model, ARENA).run([*grad_feed, BACKWARD]), mode)


def run_filter_grad(model: bytes, grad_feed: list[np.ndarray], input_q: np.ndarray, mode: str) -> np.ndarray:
    """Real result of a filter-gradient op (its forward input is a graph input)."""
    return read_grad(Interpreter(model, ARENA).run([*grad_feed, input_q, BACKWARD]), mode)


def tf_grads(forward: Callable, x: np.ndarray, w: np.ndarray, gz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d loss / d x and d loss / d w of y = forward(x, w) given d loss / d y = gz, by TensorFlow's autodiff in float64."""
    x, w = tf.constant(x, tf.float64), tf.constant(w, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = forward(x, w)
    assert tuple(y.shape) == gz.shape, f"reference output {tuple(y.shape)} != grad_output {gz.shape}"
    gx, gw = tape.gradient(y, [x, w], output_gradients=tf.constant(gz, tf.float64))
    return gx.numpy(), gw.numpy()


def grad_feed(rng: np.random.Generator, shape: tuple[int, ...], mode: str) -> tuple[list[np.ndarray], np.ndarray]:
    """A random grad_output feed and its real values in float64."""
    feed, real = grad_values(rng, shape, mode)
    return feed, real.astype(np.float64)


def assert_grad_close(got: np.ndarray, want: np.ndarray, mode: str) -> None:
    """float32: float accumulation error only. int8: plus rounding to the output's scale, max|g| / 127, so
    half a step, max|g| / 254, per element."""
    relative = 1e-5 if mode == "float32" else 1 / 254 + 1e-5
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=relative * np.abs(want).max())

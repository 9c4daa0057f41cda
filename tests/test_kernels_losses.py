"""TT_BINARY_CROSS_ENTROPY and TT_MEAN_SQUARED_ERROR in TFLM against TensorFlow's losses and GradientTape,
in both gradient representations."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import CONTROL, control, grad_outputs, op_model, read_grad

from tinytrain_tflm import Interpreter, TFLMError
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.frontend import ir

MODES = ["float32", "int8"]
ARENA = 16 * 1024
BACKWARD = control(schema_generated.CONTROL_BACKWARD)
LOGITS_QUANT = ir.Quantization(np.array([0.08], np.float32), np.array([3], np.int64))
OUTPUT_QUANT = ir.Quantization(np.array([0.02], np.float32), np.array([-10], np.int64))
TARGET_QUANT = ir.Quantization(np.array([0.03], np.float32), np.array([4], np.int64))  # not the output's


def loss_op_model(kind: str, prediction: ir.Tensor, target: ir.Tensor, grad_shape: tuple[int, ...], mode: str) -> bytes:
    outputs = [ir.Tensor("loss", (1,), np.dtype(np.float32)), *grad_outputs("grad", grad_shape, mode)]
    blob = schema.encode_blob(kind.removeprefix("TT_"))
    return op_model(kind, [prediction, target, CONTROL], outputs, blob)


def tf_loss_and_grad(loss_fn, prediction: np.ndarray) -> tuple[float, np.ndarray]:
    x = tf.constant(prediction, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = loss_fn(x)
    return float(loss), tape.gradient(loss, x).numpy()


def pushed_out(q: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Where a saturated prediction would be pushed further out: the kernels' clipped straight-through estimator."""
    return ((q == 127) & (grad < 0)) | ((q == -128) & (grad > 0))


def assert_loss_and_grad(outputs: list[np.ndarray], mode: str, q: np.ndarray, loss: float, grad: np.ndarray) -> None:
    grad = np.where(pushed_out(q, grad), 0.0, grad)
    np.testing.assert_allclose(outputs[0][0], loss, rtol=1e-5)
    relative = 1e-5 if mode == "float32" else 1 / 254 + 1e-5
    np.testing.assert_allclose(read_grad(outputs[1:], mode), grad, rtol=0, atol=relative * np.abs(grad).max())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", [1, 7])
def test_binary_cross_entropy_matches_tensorflow(rng, batch, mode):
    q = rng.integers(-128, 128, (batch, 1)).astype(np.int8)
    q[0, 0] = 127  # a saturated logit: its gradient toward a 1 label is dropped
    labels = rng.integers(0, 2, batch).astype(np.int32)
    labels[0] = 1
    logits = ir.Tensor("logits", (batch, 1), np.dtype(np.int8), LOGITS_QUANT)
    model = loss_op_model(
        schema_generated.BINARY_CROSS_ENTROPY, logits, ir.Tensor("labels", (batch,), np.dtype(np.int32)), (batch, 1), mode
    )
    outputs = Interpreter(model, ARENA).run([q, labels, BACKWARD])
    y = tf.constant(labels[:, None], tf.float64)
    loss, grad = tf_loss_and_grad(
        lambda z: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)), LOGITS_QUANT.dequantize(q)
    )
    assert_loss_and_grad(outputs, mode, q, loss, grad)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 20), (3, 4, 4, 2)])
def test_mean_squared_error_matches_tensorflow(rng, shape, mode):
    q = rng.integers(-128, 128, shape).astype(np.int8)
    q.flat[0] = -128
    target_q = rng.integers(-128, 128, shape).astype(np.int8)
    target_q.flat[0] = 127  # the saturated output is below its target: no gradient pushing it lower
    output = ir.Tensor("output", shape, np.dtype(np.int8), OUTPUT_QUANT)
    target = ir.Tensor("target", shape, np.dtype(np.int8), TARGET_QUANT)
    model = loss_op_model(schema_generated.MEAN_SQUARED_ERROR, output, target, shape, mode)
    outputs = Interpreter(model, ARENA).run([q, target_q, BACKWARD])
    t = tf.constant(TARGET_QUANT.dequantize(target_q), tf.float64)
    loss, grad = tf_loss_and_grad(lambda o: tf.reduce_mean(tf.square(o - t)), OUTPUT_QUANT.dequantize(q))
    assert_loss_and_grad(outputs, mode, q, loss, grad)


def test_a_predict_only_invoke_reports_no_loss():
    logits = ir.Tensor("logits", (2, 1), np.dtype(np.int8), LOGITS_QUANT)
    model = loss_op_model(
        schema_generated.BINARY_CROSS_ENTROPY, logits, ir.Tensor("labels", (2,), np.dtype(np.int32)), (2, 1), "float32"
    )
    # Labels need not be valid when nothing is computed.
    outputs = Interpreter(model, ARENA).run([np.zeros((2, 1), np.int8), np.array([5, -1], np.int32), control(0)])
    assert np.isnan(outputs[0][0])


def test_binary_cross_entropy_rejects_a_label_at_run_time():
    logits = ir.Tensor("logits", (2, 1), np.dtype(np.int8), LOGITS_QUANT)
    model = loss_op_model(
        schema_generated.BINARY_CROSS_ENTROPY, logits, ir.Tensor("labels", (2,), np.dtype(np.int32)), (2, 1), "float32"
    )
    with pytest.raises(TFLMError, match=r"TT_BINARY_CROSS_ENTROPY: label 2 \(sample 1\) is neither 0 nor 1"):
        Interpreter(model, ARENA).run([np.zeros((2, 1), np.int8), np.array([1, 2], np.int32), BACKWARD])


@pytest.mark.parametrize(
    "logits,labels,grad_shape,message",
    [
        (ir.Tensor("logits", (2, 3), np.dtype(np.int8), LOGITS_QUANT), (2,), (2, 3), r"logits must be \[batch, 1\]"),
        (ir.Tensor("logits", (2, 1), np.dtype(np.int8), LOGITS_QUANT), (3,), (2, 1), r"labels must be int32 \[2\]"),
        (ir.Tensor("logits", (2, 1), np.dtype(np.int8)), (2,), (2, 1), "the prediction needs per-tensor quantization"),
        (ir.Tensor("logits", (2, 1), np.dtype(np.float32)), (2,), (2, 1), r"the prediction \(input 0\) must be int8"),
        (ir.Tensor("logits", (2, 1), np.dtype(np.int8), LOGITS_QUANT), (2,), (3, 1), "the gradient must have the prediction's 2"),
    ],
)
def test_binary_cross_entropy_prepare_rejects(logits, labels, grad_shape, message):
    model = loss_op_model(
        schema_generated.BINARY_CROSS_ENTROPY, logits, ir.Tensor("labels", labels, np.dtype(np.int32)), grad_shape, "float32"
    )
    with pytest.raises(TFLMError, match=f"TT_BINARY_CROSS_ENTROPY: {message}"):
        Interpreter(model, ARENA)


@pytest.mark.parametrize(
    "target,message",
    [
        (ir.Tensor("target", (2, 5), np.dtype(np.int8), TARGET_QUANT), "target must have the output's 8 elements, got 10"),
        (ir.Tensor("target", (2, 4), np.dtype(np.int32)), "target must be int8"),
        (ir.Tensor("target", (2, 4), np.dtype(np.int8)), "target needs per-tensor quantization"),
    ],
)
def test_mean_squared_error_prepare_rejects(target, message):
    output = ir.Tensor("output", (2, 4), np.dtype(np.int8), OUTPUT_QUANT)
    model = loss_op_model(schema_generated.MEAN_SQUARED_ERROR, output, target, (2, 4), "float32")
    with pytest.raises(TFLMError, match=f"TT_MEAN_SQUARED_ERROR: {message}"):
        Interpreter(model, ARENA)

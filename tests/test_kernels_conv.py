"""TT_CONV_2D_* and TT_DEPTHWISE_CONV_2D_* gradient ops in TFLM against TensorFlow's autodiff, in both
gradient representations, and the messages of their Prepare failures."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import control
from conv_geometry import ConvGeometry
from layer_grad import (
    ARENA,
    BACKWARD,
    assert_grad_close,
    grad_feed,
    input_tensor,
    layer_grad_model,
    quantized_filter,
    random_input,
    real_filter,
    run_filter_grad,
    run_input_grad,
    tf_grads,
)

from tinytrain_tflm import Interpreter, TFLMError
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.frontend import ir

CONV_INPUT_GRAD = schema_generated.CONV_2D_INPUT_GRAD
CONV_FILTER_GRAD = schema_generated.CONV_2D_FILTER_GRAD
DEPTHWISE_INPUT_GRAD = schema_generated.DEPTHWISE_CONV_2D_INPUT_GRAD
DEPTHWISE_FILTER_GRAD = schema_generated.DEPTHWISE_CONV_2D_FILTER_GRAD


class Case(ConvGeometry):
    """A ConvGeometry with its op options and its TensorFlow forward function."""

    def options(self, op: str, **overrides: int) -> bytes:
        (_, pad_top, _), (_, pad_left, _) = self.axes()
        fields = dict(
            stride_h=self.stride[0],
            stride_w=self.stride[1],
            dilation_h=self.dilation[0],
            dilation_w=self.dilation[1],
            pad_top=pad_top,
            pad_left=pad_left,
        )
        if op in (DEPTHWISE_INPUT_GRAD, DEPTHWISE_FILTER_GRAD):
            fields["depth_multiplier"] = self.channels
        return schema.encode_blob(op.removeprefix("TT_"), **{**fields, **overrides})

    def forward(self, depthwise: bool):
        """y = forward(x, w) in TensorFlow for real x [n, h, w, cin] and w in TFLite's filter layout."""
        (_, top, bottom), (_, left, right) = self.axes()
        (stride_h, stride_w), dilation = self.stride, list(self.dilation)
        # TF's CPU kernels cannot differentiate a dilated convolution with strides: run a dilated one at
        # stride 1 and keep every stride-th output, which is the same function.
        subsample = max(dilation) > 1
        tf_stride = [1, 1] if subsample else [stride_h, stride_w]

        def conv(x, w):
            x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
            if depthwise:
                kernel = tf.reshape(w, (*self.kernel, self.in_channels, self.channels))
                y = tf.nn.depthwise_conv2d(x, kernel, [1, *tf_stride, 1], "VALID", dilations=dilation)
            else:
                kernel = tf.transpose(w, (1, 2, 3, 0))  # [cout, kh, kw, cin] -> HWIO
                y = tf.nn.convolution(x, kernel, tf_stride, "VALID", dilations=dilation)
            if subsample:
                out_h, out_w = self.output_shape(depthwise)[1:3]
                y = y[:, ::stride_h, ::stride_w][:, :out_h, :out_w]
            return y

        return conv


# Depthwise reads `channels` as the depth multiplier (4, 3, 1, 2); `update` is partial in most cases for
# depthwise (its filter gradient has cin * m channels) and in some for conv.
CASES = {
    "same-3x3": Case(1, (5, 5), 3, (3, 3), 4, (1, 1), (1, 1), "SAME", 4),
    "valid-stride2-batch2-partial": Case(2, (6, 7), 2, (3, 2), 3, (2, 2), (1, 1), "VALID", 2),
    "same-stride2-asymmetric-pad": Case(1, (7, 6), 2, (3, 3), 3, (2, 2), (1, 1), "SAME", 3),
    "same-dilation2-one-channel": Case(1, (7, 7), 2, (3, 3), 1, (1, 1), (2, 2), "SAME", 1),
    "valid-stride2-dilation2-per-tensor": Case(2, (8, 9), 3, (2, 3), 2, (2, 2), (2, 2), "VALID", 2, per_channel=False),
    "same-even-kernel": Case(1, (4, 6), 2, (2, 2), 2, (2, 2), (1, 1), "SAME", 1),
    "same-axes-differ": Case(1, (7, 8), 2, (3, 2), 2, (2, 1), (1, 3), "SAME", 2),
}
MODES = ["float32", "int8"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("op,depthwise", [(CONV_INPUT_GRAD, False), (DEPTHWISE_INPUT_GRAD, True)])
def test_input_grad_matches_tensorflow(rng, op, depthwise, case, mode):
    filter_ = quantized_filter(rng, case.filter_shape(depthwise), 3 if depthwise else 0, case.per_channel)
    model = layer_grad_model(op, case.output_shape(depthwise), filter_, case.input_shape(), mode, case.options(op))
    feed, gz = grad_feed(rng, case.output_shape(depthwise), mode)
    x = rng.normal(0, 1, case.input_shape())  # the op does not read x; the reference needs a point
    want, _ = tf_grads(case.forward(depthwise), x, real_filter(filter_), gz)
    assert_grad_close(run_input_grad(model, feed, mode), want, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("op,depthwise", [(CONV_FILTER_GRAD, False), (DEPTHWISE_FILTER_GRAD, True)])
def test_filter_grad_matches_tensorflow(rng, op, depthwise, case, mode):
    model = layer_grad_model(
        op,
        case.output_shape(depthwise),
        input_tensor(case.input_shape()),
        case.grad_filter_shape(depthwise),
        mode,
        case.options(op),
    )
    feed, gz = grad_feed(rng, case.output_shape(depthwise), mode)
    x_q, x = random_input(rng, case.input_shape())
    w = rng.normal(0, 1, case.filter_shape(depthwise))  # the op does not read w; the reference needs a point
    _, want = tf_grads(case.forward(depthwise), x, w, gz)
    want = want[..., : case.update] if depthwise else want[: case.update]
    assert_grad_close(run_filter_grad(model, feed, x_q, mode), want, mode)


def test_without_backward_bit_gradient_is_untouched(rng):
    case = CASES["same-3x3"]
    filter_ = quantized_filter(rng, case.filter_shape(False), 0)
    model = layer_grad_model(
        CONV_INPUT_GRAD, case.output_shape(False), filter_, case.input_shape(), "float32", case.options(CONV_INPUT_GRAD)
    )
    interpreter = Interpreter(model, ARENA)
    first = interpreter.run([grad_feed(rng, case.output_shape(False), "float32")[0][0], BACKWARD])[0]
    other = grad_feed(rng, case.output_shape(False), "float32")[0][0]
    np.testing.assert_array_equal(interpreter.run([other, control(schema_generated.CONTROL_UPDATE)])[0], first)


# Prepare failures. Each model is CASES["same-3x3"] (SAME, 5x5 input, 3x3 kernel, 3 -> 4 channels; depthwise
# with multiplier 2: 3 -> 6 channels) with one thing broken.
BASE = CASES["same-3x3"]
DW = dataclasses.replace(BASE, channels=2, update=6)


def broken_model(op: str, grad_output_shape=None, operand=None, result_shape=None, options=None) -> bytes:
    """BASE's (or DW's) float32 model for `op` with the parts given replaced."""
    depthwise = op in (DEPTHWISE_INPUT_GRAD, DEPTHWISE_FILTER_GRAD)
    case = DW if depthwise else BASE
    if op in (CONV_INPUT_GRAD, DEPTHWISE_INPUT_GRAD):
        operand = operand or quantized_filter(np.random.default_rng(0), case.filter_shape(depthwise), 3 if depthwise else 0)
        result_shape = result_shape or case.input_shape()
    else:
        operand = operand or input_tensor(case.input_shape())
        result_shape = result_shape or case.grad_filter_shape(depthwise)
    grad_output_shape = grad_output_shape or case.output_shape(depthwise)
    return layer_grad_model(op, grad_output_shape, operand, result_shape, "float32", options or case.options(op))


def corrupted(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def float_filter(shape):
    return ir.Tensor("filter", shape, np.dtype(np.float32), data=np.zeros(shape, np.float32))


def filter_with_scales(shape, count, axis):
    return dataclasses.replace(
        quantized_filter(np.random.default_rng(0), shape, axis),
        quantization=ir.Quantization(np.full(count, 0.01, np.float32), np.zeros(count, np.int64), axis),
    )


PREPARE_FAILURES = {
    "corrupt-options": (
        CONV_INPUT_GRAD,
        dict(options=corrupted(BASE.options(CONV_INPUT_GRAD))),
        "custom options: options blob is corrupt (CRC-32 mismatch)",
    ),
    "stride-0": (CONV_INPUT_GRAD, dict(options=BASE.options(CONV_INPUT_GRAD, stride_h=0)), "strides must be >= 1, got 0, 1"),
    "dilation-0": (
        CONV_FILTER_GRAD,
        dict(options=BASE.options(CONV_FILTER_GRAD, dilation_w=0)),
        "dilations must be >= 1, got 1, 0",
    ),
    "negative-pad": (CONV_FILTER_GRAD, dict(options=BASE.options(CONV_FILTER_GRAD, pad_left=-1)), "pads must be >= 0, got 1, -1"),
    "wrong-pad": (
        CONV_INPUT_GRAD,
        dict(options=BASE.options(CONV_INPUT_GRAD, pad_top=0)),
        "pad_top is 0 but TFLite pads 1 for height output 5",
    ),
    "output-size": (
        CONV_INPUT_GRAD,
        dict(result_shape=(1, 6, 5, 3)),
        "height: output 5 is neither SAME (6) nor VALID (4) for input 6, kernel 3, stride 1, dilation 1",
    ),
    "batch": (CONV_FILTER_GRAD, dict(operand=input_tensor((2, 5, 5, 3))), "grad_output has batch 1 but the input has 2"),
    "float-filter": (CONV_INPUT_GRAD, dict(operand=float_filter((4, 3, 3, 3))), "filter must be int8, got float32"),
    "filter-scales": (
        CONV_INPUT_GRAD,
        dict(operand=filter_with_scales((4, 3, 3, 3), 3, 0)),
        "filter needs 1 scale or 4 on axis 0, got 3 on axis 0",
    ),
    "filter-channels": (
        CONV_INPUT_GRAD,
        dict(operand=quantized_filter(np.random.default_rng(0), (4, 3, 3, 2), 0)),
        "filter must be [4, kh, kw, 3] for grad_output and grad_input, got [4, 3, 3, 2]",
    ),
    "filter-rank": (
        CONV_INPUT_GRAD,
        dict(operand=quantized_filter(np.random.default_rng(0), (4, 9, 3), 0)),
        "filter must be 4-D [cout, kh, kw, cin], got rank 3",
    ),
    "update-too-many": (
        CONV_FILTER_GRAD,
        dict(result_shape=(5, 3, 3, 3)),
        "grad_filter updates 5 output channels; it must update 1 to 4 (grad_output's channels)",
    ),
    "float-input": (
        CONV_FILTER_GRAD,
        dict(operand=ir.Tensor("input", (1, 5, 5, 3), np.dtype(np.float32))),
        "input must be int8, got float32",
    ),
    "per-channel-input": (
        CONV_FILTER_GRAD,
        dict(
            operand=dataclasses.replace(
                input_tensor((1, 5, 5, 3)), quantization=ir.Quantization(np.full(3, 0.1, np.float32), np.zeros(3, np.int64), 3)
            )
        ),
        "input needs per-tensor quantization with a positive scale",
    ),
    "depth-multiplier-0": (
        DEPTHWISE_INPUT_GRAD,
        dict(options=DW.options(DEPTHWISE_INPUT_GRAD, depth_multiplier=0)),
        "depth_multiplier must be >= 1, got 0",
    ),
    "depthwise-channels": (
        DEPTHWISE_FILTER_GRAD,
        dict(operand=input_tensor((1, 5, 5, 2))),
        "grad_output has 6 channels but the input has 2 with depth_multiplier 2",
    ),
    "depthwise-filter-axis": (
        DEPTHWISE_INPUT_GRAD,
        dict(operand=filter_with_scales((1, 3, 3, 6), 6, 0)),
        "filter needs 1 scale or 6 on axis 3, got 6 on axis 0",
    ),
    "depthwise-update-too-many": (
        DEPTHWISE_FILTER_GRAD,
        dict(result_shape=(1, 3, 3, 7)),
        "grad_filter must be [1, kh, kw, c_update] with c_update 1 to 6 (grad_output's channels), got [1, 3, 3, 7]",
    ),
}


@pytest.mark.parametrize("op,parts,message", PREPARE_FAILURES.values(), ids=PREPARE_FAILURES.keys())
def test_prepare_rejects(op, parts, message):
    with pytest.raises(TFLMError, match=re.escape(f"{op}: {message}")):
        Interpreter(broken_model(op, **parts), ARENA, check_model=False)

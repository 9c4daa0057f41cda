"""TT_AVERAGE_POOL_2D_GRAD, TT_MAX_POOL_2D_GRAD and TT_MEAN_GRAD in TFLM against TensorFlow's
GradientTape, in both gradient representations; ties in max pooling against a NumPy loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from conftest import CONTROL, control, grad_outputs, grad_tensors, grad_values, op_model, read_grad, tf_input_grad

from tinytrain_tflm import Interpreter, TFLMError
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.frontend import ir

BACKWARD = control(schema_generated.CONTROL_BACKWARD)
MODES = ["float32", "int8"]
# (input h, w), (filter h, w), (stride h, w), padding: overlapping and disjoint windows, windows
# clipped by SAME padding on every side, and strides larger than the filter (inputs in no window).
GEOMETRIES = [
    ((6, 6), (2, 2), (2, 2), "VALID"),
    ((7, 5), (3, 3), (2, 2), "SAME"),
    ((5, 6), (3, 2), (1, 1), "SAME"),
    ((6, 7), (3, 2), (2, 1), "SAME"),
    ((7, 7), (2, 2), (3, 3), "VALID"),
    ((4, 4), (4, 4), (1, 1), "SAME"),
]
BATCH, CHANNELS = 2, 3


def tflite_geometry(size: int, filter_size: int, stride: int, padding: str) -> tuple[int, int]:
    """(output size, pad before) as TFLite computes them."""
    out = math.ceil(size / stride) if padding == "SAME" else (size - filter_size) // stride + 1
    pad_total = max((out - 1) * stride + filter_size - size, 0) if padding == "SAME" else 0
    return out, pad_total // 2


def pool_case(geometry) -> tuple[tuple[int, ...], tuple[int, ...], dict]:
    """grad_input shape, grad_output shape and the op's options for one geometry."""
    (ih, iw), (fh, fw), (sh, sw), padding = geometry
    oh, pad_top = tflite_geometry(ih, fh, sh, padding)
    ow, pad_left = tflite_geometry(iw, fw, sw, padding)
    options = dict(filter_h=fh, filter_w=fw, stride_h=sh, stride_w=sw, pad_top=pad_top, pad_left=pad_left)
    return (BATCH, ih, iw, CHANNELS), (BATCH, oh, ow, CHANNELS), options


def tolerance(want: np.ndarray, mode: str) -> float:
    """float32: a few roundings of sums; int8: half a quantum of the output's run-time scale."""
    return np.abs(want).max() * (1e-6 if mode == "float32" else 1 / 254) + 1e-12


def distinct_input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """int8 NHWC input whose values differ within each (n, c) plane: no window has a tie."""
    n, h, w, c = shape
    planes = [rng.permutation(256)[: h * w] - 128 for _ in range(n * c)]
    return np.array(planes, np.int8).reshape(n, c, h, w).transpose(0, 2, 3, 1).copy()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_average_pool_grad_matches_tensorflow(rng, geometry, mode):
    in_shape, out_shape, options = pool_case(geometry)
    _, filter_size, strides, padding = geometry
    model = op_model(
        schema_generated.AVERAGE_POOL_2D_GRAD,
        [*grad_tensors("grad_output", out_shape, mode), CONTROL],
        grad_outputs("grad_input", in_shape, mode),
        schema.encode_blob("AVERAGE_POOL_2D_GRAD", **options),
    )
    feed, real = grad_values(rng, out_shape, mode)
    outputs = Interpreter(model, 32 * 1024).run([*feed, BACKWARD])
    x = rng.normal(size=in_shape)  # the average's gradient does not depend on x
    want = tf_input_grad(lambda t: tf.nn.avg_pool2d(t, filter_size, strides, padding), x, real)
    np.testing.assert_allclose(read_grad(outputs, mode), want, atol=tolerance(want, mode))


def max_pool_model(in_shape, out_shape, options: dict, mode: str) -> bytes:
    return op_model(
        schema_generated.MAX_POOL_2D_GRAD,
        [*grad_tensors("grad_output", out_shape, mode), ir.Tensor("input", in_shape, np.dtype(np.int8)), CONTROL],
        grad_outputs("grad_input", in_shape, mode),
        schema.encode_blob("MAX_POOL_2D_GRAD", **options),
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_max_pool_grad_matches_tensorflow(rng, geometry, mode):
    in_shape, out_shape, options = pool_case(geometry)
    _, filter_size, strides, padding = geometry
    model = max_pool_model(in_shape, out_shape, options, mode)
    feed, real = grad_values(rng, out_shape, mode)
    x = distinct_input(rng, in_shape)
    outputs = Interpreter(model, 32 * 1024).run([*feed, x, BACKWARD])
    want = tf_input_grad(lambda t: tf.nn.max_pool2d(t, filter_size, strides, padding), x.astype(np.float64), real)
    np.testing.assert_allclose(read_grad(outputs, mode), want, atol=tolerance(want, mode))


def first_max_routing(x: np.ndarray, grad_output: np.ndarray, options: dict) -> np.ndarray:
    """The contract spelled out: each window's gradient goes to its first maximum in row-major order."""
    n, ih, iw, c = x.shape
    _, oh, ow, _ = grad_output.shape
    grad_input = np.zeros(x.shape)
    for b, oy, ox, ch in np.ndindex(n, oh, ow, c):
        top, left = oy * options["stride_h"] - options["pad_top"], ox * options["stride_w"] - options["pad_left"]
        rows = range(max(top, 0), min(top + options["filter_h"], ih))
        cols = range(max(left, 0), min(left + options["filter_w"], iw))
        window = [(x[b, y, xx, ch], y, xx) for y in rows for xx in cols]
        best = max(value for value, _, _ in window)
        _, y, xx = next(item for item in window if item[0] == best)
        grad_input[b, y, xx, ch] += grad_output[b, oy, ox, ch]
    return grad_input


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[2], GEOMETRIES[3]])
def test_max_pool_grad_routes_a_tie_to_the_first_maximum(rng, geometry):
    in_shape, out_shape, options = pool_case(geometry)
    model = max_pool_model(in_shape, out_shape, options, "float32")
    x = rng.integers(0, 2, in_shape).astype(np.int8)  # two values only: nearly every window has a tie
    x[0] = 5  # the whole first sample is one tie
    (feed,), real = grad_values(rng, out_shape, "float32")
    (grad_input,) = Interpreter(model, 32 * 1024).run([feed, x, BACKWARD])
    want = first_max_routing(x, real.astype(np.float64), options)
    np.testing.assert_allclose(grad_input, want, atol=tolerance(want, "float32"))
    # In the constant first sample every window's gradient lands on its top-left in-bounds element.
    corners = {
        (max(oy * options["stride_h"] - options["pad_top"], 0), max(ox * options["stride_w"] - options["pad_left"], 0))
        for oy in range(out_shape[1])
        for ox in range(out_shape[2])
    }
    assert set(zip(*np.nonzero(grad_input[0, :, :, 0]), strict=True)) == corners


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_mean_grad_matches_tensorflow(rng, keepdims, mode):
    in_shape = (BATCH, 5, 3, 4)
    out_shape = (BATCH, 1, 1, 4) if keepdims else (BATCH, 4)
    model = op_model(
        schema_generated.MEAN_GRAD,
        [*grad_tensors("grad_output", out_shape, mode), CONTROL],
        grad_outputs("grad_input", in_shape, mode),
        schema.encode_blob("MEAN_GRAD"),
    )
    feed, real = grad_values(rng, out_shape, mode)
    outputs = Interpreter(model, 32 * 1024).run([*feed, BACKWARD])
    want = tf_input_grad(lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=keepdims), rng.normal(size=in_shape), real)
    np.testing.assert_allclose(read_grad(outputs, mode), want, atol=tolerance(want, mode))


POOL_OPTIONS = dict(filter_h=2, filter_w=2, stride_h=2, stride_w=2, pad_top=0, pad_left=0)


@pytest.mark.parametrize(
    "options,out_shape,in_shape,message",
    [
        ({"filter_w": 0}, (1, 2, 2, 3), (1, 4, 4, 3), "filter and stride must be >= 1, got filter 2x0 and stride 2x2"),
        ({"pad_left": -1}, (1, 2, 2, 3), (1, 4, 4, 3), "pads must be >= 0, got pad_top 0 and pad_left -1"),
        ({}, (1, 2, 2, 3), (1, 4, 4, 2), r"grad_output \[1, 2, 2, 3\] and grad_input \[1, 4, 4, 2\] differ in batch"),
        ({}, (1, 2, 2, 3), (1, 16, 3), r"grad_output and grad_input must be 4-D \(NHWC\)"),
        ({}, (1, 3, 2, 3), (1, 4, 4, 3), "3 output rows with filter 2, stride 2 and pad 0 have windows outside the 4"),
        ({"pad_left": 2}, (1, 2, 2, 3), (1, 4, 4, 3), "2 output columns with filter 2, stride 2 and pad 2 have windows"),
    ],
)
def test_average_pool_grad_prepare_rejects(options, out_shape, in_shape, message):
    model = op_model(
        schema_generated.AVERAGE_POOL_2D_GRAD,
        [*grad_tensors("grad_output", out_shape, "float32"), CONTROL],
        grad_outputs("grad_input", in_shape, "float32"),
        schema.encode_blob("AVERAGE_POOL_2D_GRAD", **{**POOL_OPTIONS, **options}),
    )
    with pytest.raises(TFLMError, match=f"TT_AVERAGE_POOL_2D_GRAD: {message}"):
        Interpreter(model, 16 * 1024, check_model=False)


@pytest.mark.parametrize(
    "input_tensor", [ir.Tensor("x", (1, 4, 4, 2), np.dtype(np.int8)), ir.Tensor("x", (1, 4, 4, 3), np.dtype(np.float32))]
)
def test_max_pool_grad_prepare_rejects_a_wrong_input(input_tensor):
    model = op_model(
        schema_generated.MAX_POOL_2D_GRAD,
        [*grad_tensors("grad_output", (1, 2, 2, 3), "float32"), input_tensor, CONTROL],
        grad_outputs("grad_input", (1, 4, 4, 3), "float32"),
        schema.encode_blob("MAX_POOL_2D_GRAD", **POOL_OPTIONS),
    )
    with pytest.raises(TFLMError, match="TT_MAX_POOL_2D_GRAD: input must be the int8 forward input, of grad_input's shape"):
        Interpreter(model, 16 * 1024)


@pytest.mark.parametrize("out_shape", [(2, 1, 2, 4), (2, 3), (2, 4, 1)])
def test_mean_grad_prepare_rejects(out_shape):
    model = op_model(
        schema_generated.MEAN_GRAD,
        [*grad_tensors("grad_output", out_shape, "float32"), CONTROL],
        grad_outputs("grad_input", (2, 5, 3, 4), "float32"),
        schema.encode_blob("MEAN_GRAD"),
    )
    message = r"grad_output must be \[2, 4\] or \[2, 1, 1, 4\] for grad_input \[2, 5, 3, 4\]"
    with pytest.raises(TFLMError, match=f"TT_MEAN_GRAD: {message}"):
        Interpreter(model, 16 * 1024)

"""TT_FULLY_CONNECTED_* gradient ops in TFLM against TensorFlow's autodiff, in both gradient
representations, and the messages of their Prepare failures."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import CONTROL, grad_tensors
from layer_grad import (
    ARENA,
    BACKWARD,
    INPUT_SCALE,
    INPUT_ZERO_POINT,
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
from tinytrain_tflm.backend import emit, schema, schema_generated
from tinytrain_tflm.frontend import ir

INPUT_GRAD = schema_generated.FULLY_CONNECTED_INPUT_GRAD
FILTER_GRAD = schema_generated.FULLY_CONNECTED_FILTER_GRAD


@dataclasses.dataclass(frozen=True)
class Case:
    """A forward FULLY_CONNECTED: input of `input_shape` flattened to [batch, inputs], filter [outputs, inputs].
    `update` is the filter gradient's c_update."""

    input_shape: tuple[int, ...]
    outputs: int
    update: int
    per_channel: bool = True

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    @property
    def inputs(self) -> int:
        return int(np.prod(self.input_shape)) // self.batch


def matmul(x, w):
    return tf.matmul(tf.reshape(x, (x.shape[0], -1)), w, transpose_b=True)


CASES = {
    "per-channel": Case((1, 6), 4, 4),
    "per-tensor-batch2-partial": Case((2, 5), 3, 2, per_channel=False),
    "rank3-input": Case((2, 3, 2), 3, 1),
}
MODES = ["float32", "int8"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_input_grad_matches_tensorflow(rng, case, mode):
    filter_ = quantized_filter(rng, (case.outputs, case.inputs), 0, case.per_channel)
    model = layer_grad_model(
        INPUT_GRAD, (case.batch, case.outputs), filter_, case.input_shape, mode, schema.encode_blob("FULLY_CONNECTED_INPUT_GRAD")
    )
    feed, gz = grad_feed(rng, (case.batch, case.outputs), mode)
    x = rng.normal(0, 1, case.input_shape)  # the op does not read x; the reference needs a point
    want, _ = tf_grads(matmul, x, real_filter(filter_), gz)
    assert_grad_close(run_input_grad(model, feed, mode), want, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_filter_grad_matches_tensorflow(rng, case, mode):
    model = layer_grad_model(
        FILTER_GRAD,
        (case.batch, case.outputs),
        input_tensor(case.input_shape),
        (case.update, case.inputs),
        mode,
        schema.encode_blob("FULLY_CONNECTED_FILTER_GRAD"),
    )
    feed, gz = grad_feed(rng, (case.batch, case.outputs), mode)
    x_q, x = random_input(rng, case.input_shape)
    w = rng.normal(0, 1, (case.outputs, case.inputs))  # the op does not read w; the reference needs a point
    _, want = tf_grads(matmul, x, w, gz)
    assert_grad_close(run_filter_grad(model, feed, x_q, mode), want[: case.update], mode)


@pytest.mark.parametrize("batch", [1, 2])
def test_int8_filter_grad_at_batch_1_takes_one_pass_at_the_exact_scale(rng, batch):
    """At batch 1 the filter gradient is an outer product, so its max|g| is known before the pass
    (Conv2dFilterGradMaxAbs, kernels/core/common/layer_grad_kernels.h): every step writes in one pass at
    max|g| / 127, even when the input's range jumps and the history's gain mispredicts. At batch 2 delayed
    scaling runs as usual: the first step takes two passes, and a step whose range jumps takes a second one."""
    outputs, inputs = 4, 6
    graph = ir.Graph()
    grad_output, grad_scale, x, control_input = (
        graph.add_tensor(t)
        for t in [*grad_tensors("grad_output", (batch, outputs), "int8"), input_tensor((batch, inputs)), CONTROL]
    )
    grad = graph.add_tensor(ir.Tensor("grad", (outputs, inputs), np.dtype(np.int8)))
    scale = graph.add_tensor(ir.Tensor("grad_scale", ir.GRAD_SCALE_WITH_HISTORY, np.dtype(np.float32), is_variable=True))
    graph.inputs, graph.outputs = [grad_output, grad_scale, x, control_input], [grad]
    options = schema.encode_blob("FULLY_CONNECTED_FILTER_GRAD")
    graph.ops.append(ir.Op(FILTER_GRAD, graph.inputs, [grad, scale], custom=True, custom_options=options))
    interpreter = Interpreter(emit.emit_model(graph), ARENA, preserve_all_tensors=True)
    for input_range in (100, 100, 10, 120):
        levels = rng.integers(-127, 128, (batch, outputs)).astype(np.int8)
        x_q = rng.integers(-input_range, input_range, (batch, inputs)).astype(np.int8)
        (got,) = interpreter.run([levels, np.array([0.01], np.float32), x_q, BACKWARD])
        want = np.float32(0.01) * levels.T.astype(np.float64) @ (INPUT_SCALE * (x_q.astype(np.float64) - INPUT_ZERO_POINT))
        history = interpreter.tensor(scale)
        if batch == 1:
            np.testing.assert_allclose(history[0], np.abs(want).max() / 127, rtol=1e-6)
        np.testing.assert_allclose(got * np.float64(history[0]), want, atol=history[0] * (0.5 + 1e-5))
        second_passes = history[2]
    assert second_passes == 0 if batch == 1 else second_passes >= 2


# Prepare failures: a float32 model with a [2, 6] input and 4 outputs, with one thing broken.
def broken_model(op: str, grad_output_shape=(2, 4), operand=None, result_shape=None, options=None) -> bytes:
    if op == INPUT_GRAD:
        operand = operand or quantized_filter(np.random.default_rng(0), (4, 6), 0)
        result_shape = result_shape or (2, 6)
    else:
        operand = operand or input_tensor((2, 6))
        result_shape = result_shape or (4, 6)
    options = options or schema.encode_blob(op.removeprefix("TT_"))
    return layer_grad_model(op, grad_output_shape, operand, result_shape, "float32", options)


PREPARE_FAILURES = {
    "options-of-another-op": (
        INPUT_GRAD,
        dict(options=schema.encode_blob("FULLY_CONNECTED_FILTER_GRAD")),
        "custom options: options blob belongs to another op",
    ),
    "grad-output-rank": (INPUT_GRAD, dict(grad_output_shape=(2, 1, 4)), "grad_output must be 2-D [n, out], got rank 3"),
    "filter-rows": (
        INPUT_GRAD,
        dict(operand=quantized_filter(np.random.default_rng(0), (5, 6), 0)),
        "filter has 5 rows but grad_output has 4 columns",
    ),
    "filter-scales": (
        INPUT_GRAD,
        dict(operand=quantized_filter(np.random.default_rng(0), (4, 6), 1)),
        "filter needs 1 scale or 4 on axis 0, got 6 on axis 1",
    ),
    "grad-input-size": (INPUT_GRAD, dict(result_shape=(2, 7)), "grad_input has 14 elements; it must have 2 rows of 6"),
    "input-size": (FILTER_GRAD, dict(operand=input_tensor((2, 5))), "input has 10 elements; it must have 2 rows of 6"),
    "update-too-many": (
        FILTER_GRAD,
        dict(result_shape=(5, 6)),
        "grad_filter updates 5 rows; it must update 1 to 4 (grad_output's columns)",
    ),
}


@pytest.mark.parametrize("op,parts,message", PREPARE_FAILURES.values(), ids=PREPARE_FAILURES.keys())
def test_prepare_rejects(op, parts, message):
    with pytest.raises(TFLMError, match=re.escape(f"{op}: {message}")):
        Interpreter(broken_model(op, **parts), ARENA, check_model=False)

"""TT_GRAD_ADD in TFLM against NumPy, in both gradient representations."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONTROL, control, grad_outputs, grad_tensors, grad_values, op_model, read_grad

from tinytrain_tflm import Interpreter, TFLMError
from tinytrain_tflm.backend import schema, schema_generated

OPTIONS = schema.encode_blob("GRAD_ADD")


def grad_add_model(a_shape, b_shape, sum_shape, a_mode, b_mode, sum_mode) -> bytes:
    return op_model(
        schema_generated.GRAD_ADD,
        [*grad_tensors("a", a_shape, a_mode), *grad_tensors("b", b_shape, b_mode), CONTROL],
        grad_outputs("sum", sum_shape, sum_mode),
        OPTIONS,
    )


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("shape", [(1, 4, 4, 8), (3, 10), (7,)])
def test_grad_add_sums(rng, mode, shape):
    model = grad_add_model(shape, shape, shape, mode, mode, mode)
    a_feed, a_real = grad_values(rng, shape, mode)
    b_feed, b_real = grad_values(rng, shape, mode)
    outputs = Interpreter(model, 16 * 1024).run([*a_feed, *b_feed, control(schema_generated.CONTROL_BACKWARD)])
    want = a_real.astype(np.float64) + b_real
    tolerance = 1e-9 if mode == "float32" else np.abs(want).max() / 254 + 1e-9
    np.testing.assert_allclose(read_grad(outputs, mode), want, atol=tolerance)


def test_grad_add_reads_operands_of_different_shapes_with_equal_counts(rng):
    model = grad_add_model((1, 2, 2, 3), (12,), (4, 3), "float32", "float32", "float32")
    a_feed, a_real = grad_values(rng, (1, 2, 2, 3), "float32")
    b_feed, b_real = grad_values(rng, (12,), "float32")
    (total,) = Interpreter(model, 16 * 1024).run([*a_feed, *b_feed, control(schema_generated.CONTROL_BACKWARD)])
    np.testing.assert_array_equal(total, (a_real.ravel() + b_real).reshape(4, 3))


@pytest.mark.parametrize(
    "b_shape,b_mode,sum_shape,message",
    [
        ((2, 8), "int8", (2, 8), "a and b must both be float32 or both int8"),
        ((2, 7), "float32", (2, 8), "a, b and sum must have equal element counts, got 16, 14 and 16"),
        ((2, 8), "float32", (17,), "a, b and sum must have equal element counts, got 16, 16 and 17"),
    ],
)
def test_grad_add_prepare_rejects(b_shape, b_mode, sum_shape, message):
    model = grad_add_model((2, 8), b_shape, sum_shape, "float32", b_mode, "float32")
    with pytest.raises(TFLMError, match=f"TT_GRAD_ADD: {message}"):
        Interpreter(model, 16 * 1024)

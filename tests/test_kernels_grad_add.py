"""TT_GRAD_ADD in TFLM against NumPy, in both gradient representations."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONTROL, control, grad_outputs, grad_tensors, grad_values, op_model, read_grad

from tinytrain_tflm import Interpreter, TFLMError
from tinytrain_tflm.backend import emit, schema, schema_generated
from tinytrain_tflm.frontend import ir

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


def test_int8_sum_scales_from_the_smoothed_gain(rng):
    """Delayed scaling (kernels/core/tt_types.h) with a scale tensor that keeps its history: the first step
    takes the exact scale; later ones quantize in one pass at sqrt(2) times the maximum the smoothed gain
    predicts, and keep those levels unless a value saturates or the top level falls under 44.5, when a second
    pass takes the exact scale, counted; an all-0 step keeps its levels and leaves the gain as it was, and a
    gradient that was all 0 in every step so far takes one pass (its gain is -0)."""
    shape = (3, 10)
    graph = ir.Graph()
    a, a_scale, b, b_scale, control_input = (
        graph.add_tensor(t) for t in [*grad_tensors("a", shape, "int8"), *grad_tensors("b", shape, "int8"), CONTROL]
    )
    total = graph.add_tensor(ir.Tensor("sum", shape, np.dtype(np.int8)))
    scale = graph.add_tensor(ir.Tensor("sum_scale", ir.GRAD_SCALE_WITH_HISTORY, np.dtype(np.float32), is_variable=True))
    graph.inputs, graph.outputs = [a, a_scale, b, b_scale, control_input], [total]
    graph.ops.append(ir.Op(schema_generated.GRAD_ADD, graph.inputs, [total, scale], custom=True, custom_options=OPTIONS))
    interpreter = Interpreter(emit.emit_model(graph), 16 * 1024, preserve_all_tensors=True)
    levels = rng.integers(-127, 128, shape).astype(np.int8)
    levels.flat[0] = 127
    zero = np.zeros(shape, np.int8)

    def step(b_levels, s, a_levels=levels):
        feed = [a_levels, np.array([s], np.float32), b_levels, np.array([s], np.float32)]
        (got,) = interpreter.run([*feed, control(schema_generated.CONTROL_BACKWARD)])
        want = (a_levels.astype(np.float64) + b_levels) * np.float32(s)
        history = interpreter.tensor(scale)
        assert np.abs(got * np.float64(history[0]) - want).max() <= history[0] * (0.5 + 1e-5)
        return history, np.abs(got).max()

    # First step: two passes, exact scale; the gain is max|sum| / the larger input scale: 127 levels.
    history, top = step(zero, 0.01)
    np.testing.assert_allclose(history, [0.01, 127, 1], rtol=1e-6)
    assert top == 127
    # The gain holds at half the input scale: one pass at sqrt(2) * the predicted scale, top level 127 / sqrt(2).
    history, top = step(zero, 0.005)
    np.testing.assert_allclose(history, [0.005 * np.sqrt(2), 127, 1], rtol=1e-6)
    assert top == 90
    # The gain doubles: at the predicted scale the sum would saturate, so a second pass takes the exact one;
    # the gain moves a quarter of the way to 254.
    history, top = step(levels, 0.01)
    np.testing.assert_allclose(history, [0.02, 127 + (254 - 127) / 4, 2], rtol=1e-6)
    assert top == 127
    # An all-0 sum: its levels are exact at the predicted scale, no second pass, the gain stays.
    predicted = 158.75 * 0.01 * np.sqrt(2) / 127
    history, top = step(-levels, 0.01)
    np.testing.assert_allclose(history, [predicted, 158.75, 2], rtol=1e-6)
    assert top == 0
    # The gain falls to 88: the top level, 50, is under 64 but not under 44.5, so the one pass stands.
    under_used = np.clip(levels, -88, 88)
    history, top = step(zero, 0.01, under_used)
    np.testing.assert_allclose(history, [predicted, 158.75 + (88 - 158.75) / 4, 2], rtol=1e-6)
    assert top == 50
    # The gain falls to 40: top level 32, more than 1.5 bits unused, so a second pass takes the exact scale.
    history, top = step(zero, 0.01, np.clip(levels, -40, 40))
    np.testing.assert_allclose(history, [0.4 / 127, 141.0625 + (40 - 141.0625) / 4, 3], rtol=1e-6)
    assert top == 127
    # Reset zeroes the history: the next step is a first step again.
    interpreter.reset()
    history, _ = step(zero, 0.005)
    np.testing.assert_allclose(history, [0.005, 127, 1], rtol=1e-6)
    # A first step whose sum is all 0 takes the two passes and marks the gain -0: from then on an all-0
    # sum takes one pass, and the first one that is not takes the exact scale in a second pass.
    interpreter.reset()
    for passes in (1, 1):
        history, top = step(-levels, 0.01)
        np.testing.assert_array_equal(history, [1, 0, passes])
        assert np.signbit(history[1]) and top == 0
    history, top = step(zero, 0.01)
    np.testing.assert_allclose(history, [0.01, 127, 2], rtol=1e-6)

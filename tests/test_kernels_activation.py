"""TT_ACTIVATION_MASK and TT_ACTIVATION_GRAD in TFLM against NumPy, in both gradient representations."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONTROL, control, grad_outputs, grad_tensors, grad_values, op_model

from tinytrain_tflm import Interpreter, TFLMError
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.frontend import ir

# (lower_q, upper_q): ReLU with zero point -128, ReLU6 with zero point -20 and scale 6/100, no clamp at all.
CLAMPS = [(-128, 128), (-20, 80), (-129, 128)]
SHAPES = [(1, 5, 5, 3), (2, 8), (13,)]


def clamp_options(kind: str, lower_q: int, upper_q: int) -> bytes:
    return schema.encode_blob(kind, lower_q=lower_q, upper_q=upper_q)


def passes(y: np.ndarray, lower_q: int, upper_q: int) -> np.ndarray:
    return (lower_q < y.astype(np.int32)) & (y.astype(np.int32) < upper_q)


def reference_mask(y: np.ndarray, lower_q: int, upper_q: int) -> np.ndarray:
    return np.packbits(passes(y, lower_q, upper_q).ravel(), bitorder="little")


def random_activation(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    # Every int8 value, the clamps included, is likely to occur.
    return rng.integers(-128, 128, shape).astype(np.int8)


@pytest.mark.parametrize("lower_q,upper_q", CLAMPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_mask_packs_one_bit_per_element(rng, shape, lower_q, upper_q):
    count = int(np.prod(shape))
    model = op_model(
        schema_generated.ACTIVATION_MASK,
        [ir.Tensor("y", shape, np.dtype(np.int8))],
        [ir.Tensor("mask", ((count + 7) // 8,), np.dtype(np.uint8))],
        clamp_options("ACTIVATION_MASK", lower_q, upper_q),
    )
    y = random_activation(rng, shape)
    (mask,) = Interpreter(model, 16 * 1024).run([y])
    np.testing.assert_array_equal(mask, reference_mask(y, lower_q, upper_q))


def activation_grad_model(shape: tuple[int, ...], mode: str, activation: ir.Tensor, lower_q: int, upper_q: int) -> bytes:
    return op_model(
        schema_generated.ACTIVATION_GRAD,
        [*grad_tensors("grad_output", shape, mode), activation, CONTROL],
        grad_outputs("grad_input", shape, mode),
        clamp_options("ACTIVATION_GRAD", lower_q, upper_q),
    )


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("from_mask", [False, True], ids=["from_y", "from_mask"])
@pytest.mark.parametrize("lower_q,upper_q", CLAMPS)
@pytest.mark.parametrize("shape", SHAPES)
def test_grad_passes_inside_the_clamp_range(rng, shape, lower_q, upper_q, from_mask, mode):
    y = random_activation(rng, shape)
    if from_mask:
        activation_value = reference_mask(y, lower_q, upper_q)
        activation = ir.Tensor("mask", activation_value.shape, np.dtype(np.uint8))
    else:
        activation_value, activation = y, ir.Tensor("y", shape, np.dtype(np.int8))
    model = activation_grad_model(shape, mode, activation, lower_q, upper_q)
    feed, _ = grad_values(rng, shape, mode)
    outputs = Interpreter(model, 16 * 1024).run([*feed, activation_value, control(schema_generated.CONTROL_BACKWARD)])
    # Values are copied, not recomputed, and an int8 gradient keeps its scale: exact in both representations.
    np.testing.assert_array_equal(outputs[0], np.where(passes(y, lower_q, upper_q), feed[0], 0))
    if mode == "int8":
        assert outputs[1][0] == feed[1][0]


@pytest.mark.parametrize(
    "options,activation,grad_input_shape,message",
    [
        (
            (0, 0),
            ir.Tensor("y", (2, 8), np.dtype(np.int8)),
            (2, 8),
            "needs -129 <= lower_q < upper_q <= 128, got lower_q 0 and upper_q 0",
        ),
        (
            (-129, 129),
            ir.Tensor("y", (2, 8), np.dtype(np.int8)),
            (2, 8),
            "needs -129 <= lower_q < upper_q <= 128, got lower_q -129 and upper_q 129",
        ),
        ((0, 128), ir.Tensor("y", (3, 8), np.dtype(np.int8)), (2, 8), "an int8 activation must have grad_output's 16"),
        ((0, 128), ir.Tensor("mask", (3,), np.dtype(np.uint8)), (2, 8), "a uint8 mask activation must have 2 bytes"),
        ((0, 128), ir.Tensor("y", (2, 8), np.dtype(np.float32)), (2, 8), "activation must be the int8 output or its"),
        ((0, 128), ir.Tensor("y", (2, 8), np.dtype(np.int8)), (2, 7), "grad_input has 14 elements, grad_output 16"),
    ],
)
def test_grad_prepare_rejects(options, activation, grad_input_shape, message):
    model = op_model(
        schema_generated.ACTIVATION_GRAD,
        [*grad_tensors("grad_output", (2, 8), "float32"), activation, CONTROL],
        grad_outputs("grad_input", grad_input_shape, "float32"),
        clamp_options("ACTIVATION_GRAD", *options),
    )
    with pytest.raises(TFLMError, match=f"TT_ACTIVATION_GRAD: {message}"):
        Interpreter(model, 16 * 1024)


@pytest.mark.parametrize(
    "mask,message",
    [
        (ir.Tensor("mask", (3,), np.dtype(np.uint8)), r"mask must be uint8 \[2\]"),
        (ir.Tensor("mask", (2,), np.dtype(np.int8)), r"mask must be uint8 \[2\]"),
    ],
)
def test_mask_prepare_rejects(mask, message):
    model = op_model(
        schema_generated.ACTIVATION_MASK,
        [ir.Tensor("y", (13,), np.dtype(np.int8))],
        [mask],
        clamp_options("ACTIVATION_MASK", 0, 128),
    )
    with pytest.raises(TFLMError, match=f"TT_ACTIVATION_MASK: {message}"):
        Interpreter(model, 16 * 1024)

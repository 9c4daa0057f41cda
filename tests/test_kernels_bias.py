"""TT_BIAS_GRAD in TFLM against NumPy, in both gradient representations."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONTROL, control, grad_outputs, grad_tensors, grad_values, op_model, read_grad

from tinytrain_tflm import Interpreter, TFLMError
from tinytrain_tflm.backend import schema, schema_generated

OPTIONS = schema.encode_blob("BIAS_GRAD")


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("shape,update", [((1, 5, 5, 8), 8), ((1, 3, 3, 16), 4), ((1, 10), 10), ((2, 7), 1)])
def test_bias_grad_sums_all_but_channels(rng, mode, shape, update):
    model = op_model(
        schema_generated.BIAS_GRAD,
        [*grad_tensors("grad_output", shape, mode), CONTROL],
        grad_outputs("grad_bias", (update,), mode),
        OPTIONS,
    )
    feed, real = grad_values(rng, shape, mode)
    outputs = Interpreter(model, 32 * 1024).run([*feed, control(schema_generated.CONTROL_BACKWARD)])
    want = real.reshape(-1, shape[-1]).astype(np.float64).sum(axis=0)[:update]
    tolerance = 1e-6 if mode == "float32" else np.abs(want).max() / 254 + 1e-9
    np.testing.assert_allclose(read_grad(outputs, mode), want, atol=tolerance)


@pytest.mark.parametrize(
    "outputs,message",
    [
        (grad_outputs("grad_bias", (9,), "float32"), "grad_bias has 9 channels; it must have 1 to 8"),
        (grad_outputs("grad_bias", (8,), "int8"), "gradient output 0 must be float32 like the input gradient"),
    ],
)
def test_bias_grad_prepare_rejects(outputs, message):
    model = op_model(schema_generated.BIAS_GRAD, [*grad_tensors("g", (1, 8), "float32"), CONTROL], outputs, OPTIONS)
    with pytest.raises(TFLMError, match=f"TT_BIAS_GRAD: {message}"):
        Interpreter(model, 16 * 1024)

"""TT_INIT_VARIABLES in TFLM: a builtin FULLY_CONNECTED reading the variables computes what it computes
from the constants, on the first invoke and again after reset()."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from tinytrain_tflm import Interpreter, TFLMError, emit_model
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.frontend import ir

ARENA = 32 * 1024


def quant(scale: float) -> ir.Quantization:
    return ir.Quantization(np.array([scale], np.float32), np.array([0], np.int64))


def fully_connected_model(rng: np.random.Generator, through_variables: bool) -> tuple[bytes, dict[str, int]]:
    """y = FULLY_CONNECTED(x, w, b) with constant w and b, or with variables initialised from them."""
    graph = ir.Graph()
    x = graph.add_tensor(ir.Tensor("x", (2, 6), np.dtype(np.int8), quant(0.05)))
    weights = rng.integers(-127, 128, (4, 6)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 4).astype(np.int32)
    w = graph.add_tensor(ir.Tensor("w", (4, 6), np.dtype(np.int8), quant(0.02), weights))
    b = graph.add_tensor(ir.Tensor("b", (4,), np.dtype(np.int32), quant(0.05 * 0.02), bias))
    y = graph.add_tensor(ir.Tensor("y", (2, 4), np.dtype(np.int8), quant(0.1)))
    indices = {"x": x, "w": w, "b": b, "y": y}
    if through_variables:
        w_var = graph.add_tensor(ir.Tensor("w_var", (4, 6), np.dtype(np.int8), quant(0.02), is_variable=True))
        b_var = graph.add_tensor(ir.Tensor("b_var", (4,), np.dtype(np.int32), quant(0.05 * 0.02), is_variable=True))
        options = schema.encode_blob("INIT_VARIABLES", num_pairs=2)
        graph.ops.append(ir.Op(schema_generated.INIT_VARIABLES, [w, w_var, b, b_var], [], custom=True, custom_options=options))
        w, b = w_var, b_var
        indices.update(w_var=w_var, b_var=b_var)
    graph.ops.append(ir.Op("FULLY_CONNECTED", [x, w, b], [y], builtin_options=tfl.FullyConnectedOptionsT()))
    graph.inputs, graph.outputs = [x], [y]
    return emit_model(graph), indices


def test_fully_connected_reads_the_copied_variables_before_and_after_reset():
    with_constants, _ = fully_connected_model(np.random.default_rng(7), through_variables=False)
    with_variables, index = fully_connected_model(np.random.default_rng(7), through_variables=True)
    reference = Interpreter(with_constants, ARENA)
    trained = Interpreter(with_variables, ARENA, preserve_all_tensors=True)
    rng = np.random.default_rng(0)
    for step in range(4):
        if step == 2:
            trained.reset()  # zeroes the variables: the next invoke must copy again
        x = rng.integers(-128, 128, (2, 6)).astype(np.int8)
        want = reference.run([x])[0]
        assert np.abs(want.astype(np.int32)).max() > 0
        np.testing.assert_array_equal(trained.run([x])[0], want)
        np.testing.assert_array_equal(trained.tensor(index["w_var"]), trained.tensor(index["w"]))
        np.testing.assert_array_equal(trained.tensor(index["b_var"]), trained.tensor(index["b"]))


def init_model(source: ir.Tensor, variable: ir.Tensor, num_pairs: int = 1, outputs: int = 0) -> bytes:
    graph = ir.Graph()
    inputs = [graph.add_tensor(source), graph.add_tensor(variable)]
    out = [graph.add_tensor(ir.Tensor(f"out{i}", (1,), np.dtype(np.float32))) for i in range(outputs)]
    options = schema.encode_blob("INIT_VARIABLES", num_pairs=num_pairs)
    graph.ops.append(ir.Op(schema_generated.INIT_VARIABLES, inputs, out, custom=True, custom_options=options))
    graph.inputs = [i for i, t in zip(inputs, (source, variable), strict=True) if t.data is None and not t.is_variable]
    graph.outputs = out
    return emit_model(graph)


def source(shape=(3,), dtype=np.int8) -> ir.Tensor:
    return ir.Tensor("source", shape, np.dtype(dtype), data=np.ones(shape, dtype))


def variable(shape=(3,), dtype=np.int8) -> ir.Tensor:
    return ir.Tensor("variable", shape, np.dtype(dtype), is_variable=True)


@pytest.mark.parametrize(
    "model,message",
    [
        (init_model(source(), variable(), num_pairs=2), "num_pairs is 2, so it expects 4 inputs .source, variable pairs., got 2"),
        (init_model(source(), variable(), outputs=1), "expects no outputs, got 1"),
        (init_model(ir.Tensor("source", (3,), np.dtype(np.int8)), variable()), "pair 0: source must be a constant tensor"),
        (init_model(source(), ir.Tensor("v", (3,), np.dtype(np.int8))), "pair 0: variable must be a variable tensor"),
        (
            init_model(source(), variable(dtype=np.uint8)),
            r"pair 0: source \(int8, 3 bytes\) and variable \(uint8, 3 bytes\) must have one type and size",
        ),
        (
            init_model(source((2, 2), np.float32), variable((5,), np.float32)),
            r"pair 0: source \(float32, 16 bytes\) and variable \(float32, 20 bytes\) must have one type and size",
        ),
    ],
)
def test_init_variables_prepare_rejects(model, message):
    with pytest.raises(TFLMError, match=f"TT_INIT_VARIABLES: {message}"):
        Interpreter(model, 16 * 1024, check_model=False)

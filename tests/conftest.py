"""Shared helpers: one-op loss models built directly in the IR, the NumPy reference, the rule for
tests that need the cross tools or TFLM's sources, and the order the test files are handed to workers in."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pytest

from tinytrain_tflm.backend import emit, schema, schema_generated
from tinytrain_tflm.errors import TinyTrainError
from tinytrain_tflm.frontend import ir

T = TypeVar("T")


def require(locate: Callable[[], T]) -> T:
    """What `locate` returns (a check of the cross tools, a source tree). When it cannot (a one-line
    TinyTrainError), the test fails in CI (CI=true), which must have everything, and skips elsewhere."""
    try:
        return locate()
    except TinyTrainError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(str(error))
        pytest.skip(str(error))


def loss_options(num_classes: int, label_smoothing: float = 0.0) -> bytes:
    return schema.encode_blob("SOFTMAX_CROSS_ENTROPY", num_classes=num_classes, label_smoothing=label_smoothing)


def loss_model(
    batch: int,
    classes: int,
    scale: float = 0.1,
    zero_point: int = 0,
    gradient: str = "float32",
    label_smoothing: float = 0.0,
    options: bytes | None | str = "default",
    logits_dtype=np.int8,
    labels_dtype=np.int32,
    grad_scale_output: bool | None = None,
) -> bytes:
    """A model whose only op is TT_SOFTMAX_CROSS_ENTROPY on its two inputs (logits, labels)."""
    graph = ir.Graph()
    quant = ir.Quantization(np.array([scale], np.float32), np.array([zero_point], np.int64))
    logits = graph.add_tensor(ir.Tensor("logits", (batch, classes), np.dtype(logits_dtype), quant))
    labels = graph.add_tensor(ir.Tensor("labels", (batch,), np.dtype(labels_dtype)))
    loss = graph.add_tensor(ir.Tensor("loss", (1,), np.dtype(np.float32)))
    grad = graph.add_tensor(ir.Tensor("grad", (batch, classes), np.dtype(gradient)))
    outputs = [loss, grad]
    if grad_scale_output if grad_scale_output is not None else gradient == "int8":
        outputs.append(graph.add_tensor(ir.Tensor("grad_scale", (1,), np.dtype(np.float32))))
    blob = loss_options(classes, label_smoothing) if options == "default" else options
    graph.ops.append(ir.Op(schema_generated.SOFTMAX_CROSS_ENTROPY, [logits, labels], outputs, custom=True, custom_options=blob))
    graph.inputs, graph.outputs = [logits, labels], outputs
    return emit.emit_model(graph)


def reference_loss(q: np.ndarray, labels: np.ndarray, scale: float, zero_point: int, smoothing: float = 0.0):
    """Mean softmax cross-entropy and its gradient w.r.t. the dequantized logits, in float64."""
    x = scale * (q.astype(np.float64) - zero_point)
    x = x - x.max(axis=1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    batch, classes = q.shape
    target = (1 - smoothing) * np.eye(classes)[labels] + smoothing / classes
    loss = -(target * log_p).sum(axis=1).mean()
    grad = (np.exp(log_p) - target) / batch
    # Saturated logits get no gradient pushing them further out (the kernel's clipped STE).
    grad[((q == 127) & (grad < 0)) | ((q == -128) & (grad > 0))] = 0.0
    return loss, grad


def op_model(kind: str, inputs: list[ir.Tensor | None], outputs: list[ir.Tensor], options: bytes | None) -> bytes:
    """A model running one custom op. Inputs with data become constants, None becomes an omitted (-1)
    input, the rest are graph inputs in order; every output is a graph output."""
    graph = ir.Graph()
    indices = []
    for tensor in inputs:
        indices.append(-1 if tensor is None else graph.add_tensor(tensor))
    graph.inputs = [i for i, t in zip(indices, inputs, strict=True) if t is not None and t.data is None]
    graph.outputs = [graph.add_tensor(t) for t in outputs]
    graph.ops.append(ir.Op(kind, indices, graph.outputs, custom=True, custom_options=options))
    return emit.emit_model(graph)


def grad_tensors(name: str, shape: tuple[int, ...], mode: str) -> list[ir.Tensor | None]:
    """A gradient operand (data, scale) as op inputs: float32 with no scale, or int8 with a float32 [1] scale."""
    if mode == "float32":
        return [ir.Tensor(name, shape, np.dtype(np.float32)), None]
    return [ir.Tensor(name, shape, np.dtype(np.int8)), ir.Tensor(name + "_scale", (1,), np.dtype(np.float32))]


def grad_outputs(name: str, shape: tuple[int, ...], mode: str) -> list[ir.Tensor]:
    """A gradient output: float32, or int8 followed by its float32 [1] scale output."""
    return [t for t in grad_tensors(name, shape, mode) if t is not None]


def grad_values(rng: np.random.Generator, shape: tuple[int, ...], mode: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Random gradient feed for an operand and the real values it stands for."""
    real = rng.normal(0, 0.01, shape).astype(np.float32)
    if mode == "float32":
        return [real], real
    scale = np.abs(real).max() / 127
    q = np.round(real / scale).astype(np.int8)
    return [q, np.array([scale], np.float32)], q * np.float32(scale)


def read_grad(outputs: list[np.ndarray], mode: str) -> np.ndarray:
    """The real values of a gradient output (and its scale output in int8 mode)."""
    return outputs[0].astype(np.float64) if mode == "float32" else outputs[0] * np.float64(outputs[1][0])


CONTROL = ir.Tensor("control", (1,), np.dtype(np.int32))


def control(bits: int) -> np.ndarray:
    return np.array([bits], np.int32)


# The test files that keep one worker busiest, longest first (the README's test section says how to measure).
# `make test` and `make sanitize` hand whole files to the xdist workers in collection order
# (--dist loadfile --no-loadscope-reorder); starting with these, the short files fill the gaps at the end.
# xdist's own order (most tests first) left the long files with few tests (the fuzz run, the device and
# firmware builds) for last, with the other worker idle while one of them ran.
LONGEST_FILES = (
    "test_device.py",
    "test_firmware.py",
    "test_search.py",
    "test_cortex_m.py",
    "test_codegen.py",
    "test_checkpoint.py",
    "test_fuzz.py",
    "test_memory.py",
    "test_fleet_device.py",
    "test_training.py",
    "test_reliability.py",
    "test_partial.py",
    "test_workflow.py",
    "test_compiler.py",
    "test_fleet.py",
    "test_tiling.py",
    "test_optimizer.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))  # stable: each file's own order kept


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def tf_input_grad(forward: Callable, x: np.ndarray, grad_output: np.ndarray) -> np.ndarray:
    """d sum(forward(x) * grad_output) / d x: the vector-Jacobian product TensorFlow computes, in float64."""
    import tensorflow as tf

    x = tf.constant(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = forward(x)
    return tape.gradient(y, x, output_gradients=tf.constant(grad_output, tf.float64)).numpy()

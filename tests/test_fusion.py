"""Backward fusions (tinytrain_tflm.passes.fusion): fewer ops and tensors, the same training bits (with
float32 gradients for the bias fusion, whose int8 update steps with the exact sum).

Every case states its compile options: activation masks on (the fusion needs them), untiled, no
flash requantization (neither touches the backward ops), gradients as parametrized, and the biases of
the last 6 layers trained: the activations then have no reader but their ReLU backward, so it reads
their masks (training a layer's weights keeps its input whole for the filter gradient)."""

from __future__ import annotations

import numpy as np
import pytest
from models import int8_model

import tinytrain_tflm as tt
from tinytrain_tflm.backend import emit
from tinytrain_tflm.backend import schema_generated as names
from tinytrain_tflm.compiler import compile_with
from tinytrain_tflm.errors import TinyTrainError
from tinytrain_tflm.frontend import ir
from tinytrain_tflm.options import Ablation, CompileOptions, MemoryOptions
from tinytrain_tflm.passes.fusion import MASK_INPUT
from tinytrain_tflm.plan import memory

INPUT_GRADS = (names.CONV_2D_INPUT_GRAD, names.DEPTHWISE_CONV_2D_INPUT_GRAD)
UNFUSED = Ablation(fuse_backward=False)
BIAS_GRADS_UNFUSED = Ablation(fuse_bias_updates=False)


def _options(gradient: str) -> CompileOptions:
    memory = MemoryOptions(tiles=None, overlap_buffers=True, flash_requantization=False)
    optimizer = tt.SGD(lr=0.05)
    return CompileOptions(update={"bias_last": 6}, gradient=gradient, activation_masks=True, optimizer=optimizer, memory=memory)


def _pair(gradient: str) -> tuple[tt.TrainingModel, tt.TrainingModel]:
    model, options = int8_model("mobilenet_v2_blocks"), _options(gradient)
    return compile_with(model, options), compile_with(model, options, ablation=UNFUSED)


def _assert_trains_identically(fused: tt.TrainingModel, unfused: tt.TrainingModel) -> None:
    """Three steps on random samples: equal losses, then bit-identical weights."""
    a, b = tt.Trainer(fused), tt.Trainer(unfused)
    for seed in range(3):
        x = np.random.default_rng(seed).integers(-128, 128, a.input.shape, dtype=np.int8)
        assert a.step(x, seed % 5) == b.step(x, seed % 5)
    for name, weight in b.weights().items():
        np.testing.assert_array_equal(a.weights()[name], weight, err_msg=name)


def _fused_ops(graph: tt.Graph) -> list[tt.Op]:
    return [op for op in graph.ops if op.kind in INPUT_GRADS and len(op.inputs) == MASK_INPUT + 2]


def test_each_mask_moves_into_the_input_gradient_that_feeds_it():
    fused, unfused = (tt.read_graph(m.bytes) for m in _pair("int8"))
    masked_activation_grads = [
        op for op in unfused.ops if op.kind == names.ACTIVATION_GRAD and unfused.tensors[op.inputs[2]].dtype == np.uint8
    ]
    fused_ops = _fused_ops(fused)
    assert len(fused_ops) >= 2
    assert all(fused.tensors[op.inputs[MASK_INPUT]].dtype == np.uint8 for op in fused_ops)
    left = [op for op in fused.ops if op.kind == names.ACTIVATION_GRAD]
    assert len(left) == len(masked_activation_grads) - len(fused_ops)
    # One op and two tensors (the gradient and its scale) fewer per fusion.
    assert len(unfused.ops) - len(fused.ops) == len(fused_ops)
    assert len(unfused.tensors) - len(fused.tensors) == 2 * len(fused_ops)


@pytest.mark.parametrize("gradient", ["int8", "float32"])
def test_fused_training_is_bit_identical_and_smaller(gradient):
    fused, unfused = _pair(gradient)
    assert tt.minimum_arena_size(fused.bytes) < tt.minimum_arena_size(unfused.bytes)
    _assert_trains_identically(fused, unfused)


def test_a_mask_of_the_wrong_size_is_named():
    graph = tt.read_graph(_pair("int8")[0].bytes)
    op = _fused_ops(graph)[0]
    mask = graph.tensors[op.inputs[MASK_INPUT]]
    short = np.zeros(mask.shape[0] - 1, np.uint8)
    op.inputs[MASK_INPUT] = graph.add_tensor(ir.Tensor("short", short.shape, short.dtype, data=short))
    graph.metadata.pop(memory.OFFLINE_PLAN)  # planned for the right mask
    message = rf"mask input 3 must be uint8 \[{mask.shape[0]}\] \(one bit per element of grad_input\)"
    with pytest.raises(TinyTrainError, match=message):
        tt.Trainer(tt.TrainingModel(emit.emit_model(graph)))


@pytest.mark.parametrize("gradient", ["int8", "float32"])
def test_each_bias_gradient_is_summed_inside_its_update(gradient):
    model, options = int8_model("mobilenet_v2_blocks"), _options(gradient)
    fused, unfused = compile_with(model, options), compile_with(model, options, ablation=BIAS_GRADS_UNFUSED)
    fused_graph, unfused_graph = tt.read_graph(fused.bytes), tt.read_graph(unfused.bytes)
    bias_grads = sum(op.kind == names.BIAS_GRAD for op in unfused_graph.ops)
    assert bias_grads == 6 and not any(op.kind == names.BIAS_GRAD for op in fused_graph.ops)
    # One op and its gradient (and an int8 gradient's scale) fewer per bias.
    assert len(unfused_graph.ops) - len(fused_graph.ops) == bias_grads
    assert len(unfused_graph.tensors) - len(fused_graph.tensors) == bias_grads * (2 if gradient == "int8" else 1)
    assert tt.minimum_arena_size(fused.bytes) < tt.minimum_arena_size(unfused.bytes)
    if gradient == "float32":  # the same float32 sums: the same bits
        _assert_trains_identically(fused, unfused)

"""TT_CONV_2D and TT_DEPTHWISE_CONV_2D (tinytrain_tflm.passes.requantization): TFLM's int8 convolutions with
the per-channel requantization read from the model. References: TFLM's own builtin kernels, run on the
same tensors, and the arena TFLM reports."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
from models import int8_model, mobilenet_v2_035_128

import tinytrain_tflm as tt
from tinytrain_tflm import TFLMError
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.passes import requantization
from tinytrain_tflm.plan import memory
from tinytrain_tflm.runtime import interpreter

MODELS = ["ds_cnn", "small_cnn", "mobilenet_v2_blocks"]


def _every_tensor(model: bytes, sample: np.ndarray) -> list[np.ndarray]:
    interpreter = tt.Interpreter(model, 4 << 20, preserve_all_tensors=True)
    interpreter.run([sample])
    return [interpreter.tensor(i) for i in range(len(tt.read_graph(model).tensors))]


@pytest.mark.parametrize("name", MODELS)
def test_every_activation_is_bit_identical_to_tflms_kernels(name):
    source = int8_model(name)
    graph = tt.read_graph(source)
    lowered = requantization.lower(graph)
    assert {op.kind for op in lowered.ops} & set(schema.RESTORED)
    assert not {op.kind for op in lowered.ops} & set(schema.LOWERED)
    x = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(0)
    for _ in range(3):
        sample = rng.integers(-128, 128, x.shape, dtype=np.int8)
        ours = _every_tensor(tt.emit_model(lowered), sample)
        reference = _every_tensor(source, sample)
        for index, tensor in enumerate(graph.tensors):  # the lowered graph adds tensors after these
            np.testing.assert_array_equal(ours[index], reference[index], err_msg=tensor.name)


def test_mobilenet_v2_logits_are_bit_identical_and_its_kernel_data_shrinks():
    source = mobilenet_v2_035_128()
    graph = tt.read_graph(source)
    lowered = tt.emit_model(requantization.lower(graph))
    image = np.random.default_rng(0).integers(-128, 128, graph.tensors[graph.inputs[0]].shape, dtype=np.int8)
    logits = [tt.Interpreter(model, 1 << 20).run([image])[0] for model in (lowered, source)]
    np.testing.assert_array_equal(*logits)
    measured, plain = tt.minimum_arena_size(lowered), tt.minimum_arena_size(source)
    assert plain - measured > 40_000  # 8 B per output channel of every conv
    assert abs(memory.estimate(tt.read_graph(lowered)).total - measured) <= 0.05 * measured


def test_multipliers_reproduce_the_real_scale():
    # Independent of TFLite: q * 2^(shift - 31) must be the nearest such number to the real scale.
    for real in [1e-9, 3.2e-5, 0.0042, 0.3, 0.5, 0.75, 0.99999999, 1.0, 1.7, 23.0]:
        q, shift = requantization.quantize_multiplier(real)
        assert 1 << 30 <= q < 1 << 31
        assert abs(q * 2.0 ** (shift - 31) - real) <= 2.0 ** (shift - 32)
    assert requantization.quantize_multiplier(0.0) == (0, 0)
    assert requantization.quantize_multiplier(2.0**-40) == (0, 0)  # flushed, as TFLite does
    q, shift = requantization.quantize_multiplier(math.nextafter(1.0, 0.0))  # rounds up to 2^31: renormalized
    assert (q, shift) == (1 << 30, 1)


@pytest.mark.parametrize("name", MODELS)
def test_training_is_bit_identical_and_export_restores_tflms_ops(name):
    source = int8_model(name)
    graph = tt.read_graph(source)
    x = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(1)
    samples = [(rng.integers(-128, 128, x.shape[1:], dtype=np.int8), i % 3) for i in range(4)]
    trainers = [tt.Trainer(tt.compile(source, update="all", flash_requantization=flag)) for flag in (True, False)]
    for sample, label in samples:
        losses = [trainer.step(sample, label) for trainer in trainers]
        assert losses[0] == losses[1]
    exported = [trainer.export() for trainer in trainers]
    assert not any(op.custom for op in tt.read_graph(exported[0]).ops)
    assert exported[0] == exported[1]


def _lowered_small_cnn() -> tt.Graph:
    return requantization.lower(tt.read_graph(int8_model("small_cnn")))


def _first_conv(graph: tt.Graph) -> tt.Op:
    return next(op for op in graph.ops if op.kind == schema_generated.CONV_2D)


def _corrupt_table(graph: tt.Graph, channel: int, row: int, value: int) -> None:
    table = graph.tensors[_first_conv(graph).inputs[3]]
    data = table.data.copy()
    data[row, channel] = value
    graph.tensors[_first_conv(graph).inputs[3]] = dataclasses.replace(table, data=data)


def _with_options(graph: tt.Graph, **changes: int) -> None:
    op = _first_conv(graph)
    fields = schema.decode_blob("CONV_2D", op.custom_options)
    op.custom_options = schema.encode_blob("CONV_2D", **{**fields, **changes})


def _drop_table_data(graph: tt.Graph) -> None:
    table = _first_conv(graph).inputs[3]
    graph.tensors[table] = dataclasses.replace(graph.tensors[table], data=None)
    graph.inputs.append(table)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda g: _corrupt_table(g, 1, 1, 40), "requantization of channel 1: multiplier"),
        (lambda g: _corrupt_table(g, 2, 0, -5), "requantization of channel 2: multiplier -5 must be >= 0"),
        (_drop_table_data, "requantization must be a constant int32 [2, 4]"),
        (lambda g: _with_options(g, padding=7), "padding must be SAME (0) or VALID (1), got 7"),
        (lambda g: _with_options(g, activation=9), "activation 9 is not NONE"),
        (lambda g: _with_options(g, padding=1), "height: output 12 but VALID padding gives 10"),
        (lambda g: _with_options(g, stride_h=0), "strides must be >= 1"),
    ],
)
def test_prepare_rejects_corrupt_options_and_tables(corrupt, message):
    graph = _lowered_small_cnn()
    corrupt(graph)
    with pytest.raises(TFLMError, match=re.escape(f"TT_CONV_2D: {message}")):
        tt.Interpreter(tt.emit_model(graph), 1 << 20, check_model=False).run(interpreter.zero_inputs(tt.emit_model(graph)))

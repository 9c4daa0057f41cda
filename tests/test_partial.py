"""Partial-channel layers split so only the updated channels live in RAM: exact, and smaller."""

from __future__ import annotations

import numpy as np
import pytest
from models import int8_model, mobilenet_v2_035_128
from tf_oracle import cosine

import tinytrain_tflm as tt
from tinytrain_tflm.compiler import compile_with
from tinytrain_tflm.options import Ablation, CompileOptions
from tinytrain_tflm.passes import partial

WHOLE_LAYERS = Ablation(split_partial=False)
SCHEME = {"bias_last": 3, "weights": {"7": 0.5, "6": 0.25, "4": 0.5}}  # FC 3/5, two pointwise convs 2/8 and 4/8


@pytest.fixture
def always_split(monkeypatch):
    """Split every partial layer, even where it costs more than it saves, to test the rewrite itself."""
    monkeypatch.setattr(partial, "MIN_SAVING_BYTES", 0)
    monkeypatch.setattr(partial, "OUTPUT_FACTOR", 0)


def _pair(gradient: str) -> tuple[tt.Trainer, tt.Trainer]:
    model = int8_model("mobilenet_v2_blocks")
    whole = tt.Trainer(compile_with(model, CompileOptions(update=SCHEME, gradient=gradient), ablation=WHOLE_LAYERS))
    split = tt.Trainer(tt.compile(model, update=SCHEME, gradient=gradient))
    return whole, split


@pytest.mark.parametrize("gradient", ["float32", "int8"])
def test_split_layers_compute_the_same_function_and_gradients(gradient, always_split):
    whole, split = _pair(gradient)
    rng = np.random.default_rng(0)
    for label in (0, 3):
        x = rng.integers(-128, 128, whole.input.shape, dtype=np.int8)
        np.testing.assert_array_equal(whole.predict(x), split.predict(x))
        ours, reference = split.gradients(x, label), whole.gradients(x, label)
        assert set(ours) == set(reference)
        for name, grad in reference.items():
            assert ours[name].shape == grad.shape
            if gradient == "float32":  # only the float summation order differs
                np.testing.assert_allclose(ours[name], grad, rtol=1e-5, atol=1e-9)
            else:  # each part picks its own int8 gradient scale
                assert cosine(ours[name], grad) >= 0.97, name


def test_only_updated_channels_are_variables(always_split):
    whole, split = _pair("int8")

    def variable_bytes(trainer):
        return sum(t.dtype.itemsize * int(np.prod(t.shape)) for t in trainer.graph.tensors if t.is_variable)

    assert variable_bytes(split) < variable_bytes(whole)
    weights = {t.name: t.shape for t in split.graph.tensors if t.is_variable and t.dtype == np.int8}
    assert any(shape[0] == 2 for shape in weights.values())  # 1/4 of an 8-channel pointwise conv


def test_split_shrinks_the_arena_where_it_pays_and_is_skipped_where_not():
    scheme = {"bias_last": 8, "weights": {"52": 1, "51": 0.125}}  # 1/8 of the 1280x112 conv
    model = mobilenet_v2_035_128()
    whole = compile_with(model, CompileOptions(update=scheme, gradient="int8"), ablation=WHOLE_LAYERS).bytes
    split = tt.compile(model, update=scheme, gradient="int8").bytes
    assert "CONCATENATION" in [op.kind for op in tt.read_graph(split).ops]
    assert tt.minimum_arena_size(split) < tt.minimum_arena_size(whole) - 100_000
    small = tt.compile(int8_model("mobilenet_v2_blocks"), update=SCHEME).bytes  # savings of bytes, not KB
    assert "CONCATENATION" not in [op.kind for op in tt.read_graph(small).ops]


def test_trained_split_model_exports_its_source_layers_and_predicts_the_same(always_split):
    _, split = _pair("float32")
    rng = np.random.default_rng(1)
    samples = [rng.integers(-128, 128, split.input.shape, dtype=np.int8) for _ in range(3)]
    for i, x in enumerate(samples):
        split.step(x, i)
    exported = split.export()
    graph = tt.read_graph(exported)
    source = tt.read_graph(int8_model("mobilenet_v2_blocks"))
    assert [op.kind for op in graph.ops] == [op.kind for op in source.ops]  # the split layers joined again
    assert [graph.tensors[op.inputs[1]].shape for op in graph.ops if op.kind == "CONV_2D"] == [
        source.tensors[op.inputs[1]].shape for op in source.ops if op.kind == "CONV_2D"
    ]
    interpreter = tt.Interpreter(exported, 64 * 1024)
    for x in samples:
        logits = graph.tensors[graph.outputs[0]].quantization.dequantize(interpreter.run([x])[0])
        np.testing.assert_array_equal(logits, split.predict(x))

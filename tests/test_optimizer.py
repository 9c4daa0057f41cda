"""The optimizer step against float SGD's (QAS), and the weights around training: gradients alone change
nothing, a step does, reset restores the source, and export carries the trained weights into a plain
inference model."""

from __future__ import annotations

import numpy as np
from models import int8_model
from tf_oracle import float_gradients

import tinytrain_tflm as tt

LR = 0.05


def _step_ratio(qas: bool) -> float:
    """Mean over samples of the projection of the real weight change on float SGD's step -lr * g."""
    model = int8_model("small_cnn")
    trainer = tt.Trainer(tt.compile(model, update="last", optimizer=tt.SGD(lr=LR, qas=qas, rounding="nearest")))
    weight = next(p for p in trainer.parameters if trainer.graph.tensors[p.source].data.ndim == 2)
    quant = trainer.graph.tensors[weight.source].quantization
    rng = np.random.default_rng(5)
    ratios = []
    for label in range(3):
        trainer.reset()
        x = trainer.input.quantization.quantize(rng.uniform(-1, 1, trainer.input.shape), np.int8)
        before = quant.dequantize(trainer.weights()[weight.name])
        trainer.step(x, label)
        moved = quant.dequantize(trainer.weights()[weight.name]) - before
        float_step = -LR * float_gradients(model, x, label)[1][weight.name]
        ratios.append(float(np.sum(moved * float_step) / np.sum(float_step * float_step)))
    return float(np.mean(ratios))


def test_qas_step_is_the_float_sgd_step():
    assert 0.9 <= _step_ratio(qas=True) <= 1.1


def test_without_qas_the_int8_step_is_far_too_small():
    assert abs(_step_ratio(qas=False)) < 0.1


def test_gradients_do_not_update_and_reset_restores_the_source():
    trainer = tt.Trainer(tt.compile(int8_model("ds_cnn"), update="all", optimizer=tt.SGD(lr=LR)))
    source = trainer.weights()
    x = np.zeros(trainer.input.shape, np.int8)
    trainer.gradients(x, 1)
    trainer.predict(x)
    assert all(np.array_equal(trainer.weights()[k], v) for k, v in source.items())
    trainer.step(x, 1)
    assert any(not np.array_equal(trainer.weights()[k], v) for k, v in source.items())
    trainer.reset()
    trainer.predict(x)
    assert all(np.array_equal(trainer.weights()[k], v) for k, v in source.items())


def test_export_is_a_plain_inference_model_with_the_trained_weights():
    model = int8_model("mobilenet_v2_blocks")
    trainer = tt.Trainer(tt.compile(model, update={"bias_last": 3, "weights": {"7": 1, "4": 0.5}}))
    rng = np.random.default_rng(0)
    samples = [trainer.input.quantization.quantize(rng.uniform(-1, 1, trainer.input.shape), np.int8) for _ in range(4)]
    for i, x in enumerate(samples):
        trainer.step(x, i % 5)
    exported = trainer.export()
    graph = tt.read_graph(exported)
    assert not any(op.custom for op in graph.ops) and [op.kind for op in graph.ops] == [
        op.kind for op in tt.read_graph(model).ops
    ]
    interpreter = tt.Interpreter(exported, 64 * 1024)
    for x in samples:
        logits = graph.tensors[graph.outputs[0]].quantization.dequantize(interpreter.run([x])[0])
        np.testing.assert_array_equal(logits, trainer.predict(x))

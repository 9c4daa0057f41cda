"""Whole-model gradients from TFLM against TensorFlow GradientTape (tests/tf_oracle.py).

Two references, because an int8 model is not its float model:
- the int8 graph's own forward (activations rounded to their int8 grids, straight-through
  backward): our backward must match it almost exactly, whatever the weights;
- the float model with the dequantized weights: the training issue's criterion (cosine >= 0.99
  per tensor with float32 gradients, >= 0.97 with int8). It holds on a trained model with real
  inputs. On random-weight models the int8 forward itself drifts from the float one with depth
  (measured: DS-CNN per-sample minimum 0.954, MobileNetV2 blocks 0.984, while the same
  gradients match the int8 forward to >= 0.998), so there the bound is looser.
"""

from __future__ import annotations

import numpy as np
import pytest
from models import BUILDERS, int8_model
from tf_oracle import cosine, float_gradients

import tinytrain_tflm as tt
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.tools import tasks

FLOAT_MODEL_COSINE = {"float32": 0.99, "int8": 0.97}  # the training issue's criterion
INT8_FORWARD_COSINE = 0.998
RANDOM_WEIGHTS_FLOAT_MODEL_COSINE = 0.95


def _compare(model: bytes, gradient: str, samples: list[tuple[np.ndarray, int]], quantize_activations: bool) -> dict[str, float]:
    """Smallest cosine per trainable tensor over the samples."""
    trainer = tt.Trainer(tt.compile(model, update="all", gradient=gradient))
    worst: dict[str, float] = {}
    for x, label in samples:
        ours = trainer.gradients(x, label)
        _, reference = float_gradients(model, x, label, quantize_activations=quantize_activations)
        assert set(ours) == set(reference)
        for name, grad in ours.items():
            worst[name] = min(worst.get(name, 1.0), cosine(grad, reference[name]))
    return worst


def _random_samples(model: bytes, count: int = 2) -> list[tuple[np.ndarray, int]]:
    graph = tt.read_graph(model)
    x = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(1)
    return [(x.quantization.quantize(rng.uniform(-1, 1, x.shape), np.int8), 2 * i) for i in range(count)]


@pytest.mark.parametrize("gradient", ["float32", "int8"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_gradients_match_the_int8_forward(name, gradient):
    model = int8_model(name)
    for parameter, similarity in _compare(model, gradient, _random_samples(model), quantize_activations=True).items():
        assert similarity >= INT8_FORWARD_COSINE, f"{parameter}: cosine {similarity:.4f}"


@pytest.mark.parametrize("gradient", ["float32", "int8"])
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_random_weight_models_stay_close_to_the_float_model(name, gradient):
    model = int8_model(name)
    for parameter, similarity in _compare(model, gradient, _random_samples(model), quantize_activations=False).items():
        assert similarity >= RANDOM_WEIGHTS_FLOAT_MODEL_COSINE, f"{parameter}: cosine {similarity:.4f}"


@pytest.fixture(scope="module")
def trained_digits_model():
    task = tasks.digits_new_classes()
    model = keras_to_int8(tasks.pretrained_cnn(task), task.pretrain_x[:200])
    graph = tt.read_graph(model)
    quant = graph.tensors[graph.inputs[0]].quantization
    samples = [(quant.quantize(task.test_x[i][None], np.int8), int(task.test_y[i])) for i in range(6)]
    return model, samples


@pytest.mark.parametrize("gradient", ["float32", "int8"])
def test_trained_model_matches_the_float_model(trained_digits_model, gradient):
    model, samples = trained_digits_model
    for parameter, similarity in _compare(model, gradient, samples, quantize_activations=False).items():
        assert similarity >= FLOAT_MODEL_COSINE[gradient], f"{parameter}: cosine {similarity:.4f}"

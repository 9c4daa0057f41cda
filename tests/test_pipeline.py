"""read -> IR -> emit on a model from the TensorFlow converter, and the loss pass on it."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import reference_loss

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

import tinytrain_tflm as tt
from tinytrain_tflm.backend import schema
from tinytrain_tflm.frontend.convert import keras_to_int8


@pytest.fixture(scope="module")
def converted():
    """A small int8 CNN with a trailing softmax, from the TensorFlow converter."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((12, 12, 2)),
            tf.keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu"),
            tf.keras.layers.DepthwiseConv2D(3, activation="relu6"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(7),
            tf.keras.layers.Softmax(),
        ]
    )
    samples = np.random.default_rng(0).uniform(-1, 1, (32, 12, 12, 2)).astype(np.float32)
    return keras_to_int8(model, samples), samples


def test_read_emit_round_trip_runs_identically(converted):
    model, samples = converted
    graph = tt.read_graph(model)
    assert [op.kind for op in graph.ops][-1] == "SOFTMAX"
    emitted = tt.emit_model(graph)
    x = graph.tensors[graph.inputs[0]].quantization.quantize(samples[:1], np.int8)
    original = tt.Interpreter(model, 64 * 1024).run([x])
    rebuilt = tt.Interpreter(emitted, 64 * 1024).run([x])
    np.testing.assert_array_equal(original[0], rebuilt[0])
    again = tt.read_graph(emitted)
    for a, b in zip(graph.tensors, again.tensors, strict=True):
        assert (a.name, a.shape, a.dtype) == (b.name, b.shape, b.dtype)
        assert (a.data is None) == (b.data is None) and (a.data is None or np.array_equal(a.data, b.data))
    assert again.metadata == graph.metadata


def test_constant_buffers_are_16_byte_aligned(converted):
    emitted = tt.emit_model(tt.read_graph(converted[0]))
    base = np.frombuffer(emitted, np.uint8).ctypes.data
    model = tfl.Model.GetRootAsModel(emitted, 0)
    offsets = [
        model.Buffers(i).DataAsNumpy().ctypes.data - base for i in range(model.BuffersLength()) if model.Buffers(i).DataLength()
    ]
    assert offsets and all(offset % 16 == 0 for offset in offsets)


@pytest.mark.parametrize("gradient", ["float32", "int8"])
def test_attach_loss_on_a_converted_model(converted, gradient):
    model, samples = converted
    graph = tt.read_graph(model)
    training = tt.attach_loss(graph, label_smoothing=0.05, gradient=gradient)
    assert "SOFTMAX" not in [op.kind for op in training.ops]
    assert [op.kind for op in graph.ops][-1] == "SOFTMAX"  # the input graph is untouched
    interpreter = tt.Interpreter(tt.emit_model(training), 64 * 1024)
    logits_quant = training.tensors[training.outputs[1]].quantization
    for i, label in enumerate([0, 3, 6]):
        x = graph.tensors[graph.inputs[0]].quantization.quantize(samples[i : i + 1], np.int8)
        loss, logits, *grad = interpreter.run([x, np.array([label], np.int32)])
        want_loss, want_grad = reference_loss(
            logits, np.array([label]), float(logits_quant.scale[0]), int(logits_quant.zero_point[0]), 0.05
        )
        np.testing.assert_allclose(loss[0], want_loss, rtol=2e-5)
        got_grad = grad[0] if gradient == "float32" else grad[0] * grad[1][0]
        np.testing.assert_allclose(
            got_grad, want_grad, atol=2e-6 if gradient == "float32" else np.abs(want_grad).max() / 254 + 1e-7
        )
    metadata = schema.decode_blob("TRAINING_METADATA", training.metadata["TINYTRAIN_TRAINING"])
    assert metadata["label_tensor"] == training.inputs[1] and metadata["num_classes"] == 7


def test_attach_loss_rejects_models_it_cannot_train(converted):
    graph = tt.read_graph(converted[0])
    with pytest.raises(tt.TinyTrainError, match="gradient must be one of"):
        tt.attach_loss(graph, gradient="int4")
    with pytest.raises(tt.TinyTrainError, match=r"label_smoothing must be in \[0, 1\)"):
        tt.attach_loss(graph, label_smoothing=1.5)
    two_outputs = tt.read_graph(converted[0])
    two_outputs.outputs = two_outputs.outputs * 2
    with pytest.raises(tt.TinyTrainError, match="has 2 outputs"):
        tt.attach_loss(two_outputs)
    float_head = tt.read_graph(converted[0])
    float_head.tensors[float_head.ops[-1].inputs[0]].dtype = np.dtype(np.float32)
    with pytest.raises(tt.TinyTrainError, match="is float32; training needs an int8"):
        tt.attach_loss(float_head)

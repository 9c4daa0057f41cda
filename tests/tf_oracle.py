"""Gradient oracle: the int8 model re-evaluated in float with TensorFlow ops.

Every weight and bias is dequantized and becomes a tf.Variable; the forward pass
is rebuilt op by op from the flatbuffer with tf.nn ops, and GradientTape gives
d loss / d (real) parameter. Nothing here runs tinytrain's kernels or rules.

What it does not emulate: activation quantization (activations stay float, so
rounding and int8 saturation of intermediate tensors are absent) and the
straight-through estimator; the tests' cosine tolerances absorb that difference.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

import tinytrain_tflm as tt

ACTIVATIONS = {
    tfl.ActivationFunctionType.NONE: lambda v: v,
    tfl.ActivationFunctionType.RELU: tf.nn.relu,
    tfl.ActivationFunctionType.RELU6: tf.nn.relu6,
}
PADDING = {tfl.Padding.SAME: "SAME", tfl.Padding.VALID: "VALID"}


def _real(tensor: tt.Tensor) -> np.ndarray:
    return tensor.quantization.dequantize(tensor.data).astype(np.float32)


def float_gradients(model: bytes, x: np.ndarray, label: int) -> tuple[float, dict[str, np.ndarray]]:
    """(loss, {parameter name: d loss / d real parameter}) for every conv-like weight and bias."""
    graph = tt.read_graph(model)
    params = {}
    for op in graph.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            for t in op.inputs[1:3]:
                if t >= 0:
                    params[t] = tf.Variable(_real(graph.tensors[t]))
    x_tensor = graph.tensors[graph.inputs[0]]
    values = {graph.inputs[0]: tf.constant(x_tensor.quantization.dequantize(x).astype(np.float32))}

    def const(t):
        return params[t] if t in params else tf.constant(_real(graph.tensors[t]))

    with tf.GradientTape() as tape:
        for op in graph.ops:
            if op.kind == "SOFTMAX":  # the loss takes the logits
                continue
            o = op.builtin_options
            a = values[op.inputs[0]]
            act = ACTIVATIONS[o.fusedActivationFunction] if hasattr(o, "fusedActivationFunction") else None
            if op.kind == "CONV_2D":
                w = tf.transpose(const(op.inputs[1]), (1, 2, 3, 0))
                dilations = (1, o.dilationHFactor, o.dilationWFactor, 1)
                y = tf.nn.conv2d(a, w, (1, o.strideH, o.strideW, 1), PADDING[o.padding], dilations=dilations)
                y = act(y + const(op.inputs[2]))
            elif op.kind == "DEPTHWISE_CONV_2D":
                w = const(op.inputs[1])
                w = tf.reshape(w, (w.shape[1], w.shape[2], a.shape[3], w.shape[3] // a.shape[3]))
                y = tf.nn.depthwise_conv2d(
                    a, w, (1, o.strideH, o.strideW, 1), PADDING[o.padding], dilations=(o.dilationHFactor, o.dilationWFactor)
                )
                y = act(y + const(op.inputs[2]))
            elif op.kind == "FULLY_CONNECTED":
                w = const(op.inputs[1])
                y = tf.matmul(tf.reshape(a, (-1, w.shape[1])), w, transpose_b=True)
                y = act(y + const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else y)
            elif op.kind == "ADD":
                y = act(a + values[op.inputs[1]])
            elif op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
                pool = tf.nn.avg_pool2d if op.kind == "AVERAGE_POOL_2D" else tf.nn.max_pool2d
                y = act(pool(a, (o.filterHeight, o.filterWidth), (o.strideH, o.strideW), PADDING[o.padding]))
            elif op.kind == "MEAN":
                y = tf.reduce_mean(a, axis=graph.tensors[op.inputs[1]].data.tolist(), keepdims=bool(o.keepDims))
            elif op.kind == "RESHAPE":
                y = tf.reshape(a, graph.tensors[op.outputs[0]].shape)
            elif op.kind == "PAD":
                y = tf.pad(a, graph.tensors[op.inputs[1]].data)
            elif op.kind == "QUANTIZE":
                y = a
            else:
                raise NotImplementedError(f"oracle has no float version of {op.kind}")
            values[op.outputs[0]] = y
        logits_index = graph.outputs[0]
        if graph.ops[-1].kind == "SOFTMAX":
            logits_index = graph.ops[-1].inputs[0]
        logits = values[logits_index]
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(np.array([label]), logits))
    grads = tape.gradient(loss, list(params.values()))
    return float(loss), {graph.tensors[t].name: g.numpy() for t, g in zip(params, grads, strict=True)}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))

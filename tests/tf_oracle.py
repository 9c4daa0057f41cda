"""Gradient oracle: the int8 model re-evaluated in float with TensorFlow ops.

Every weight and bias is dequantized and becomes a tf.Variable; the forward pass
is rebuilt op by op from the flatbuffer with tf.nn ops, and GradientTape gives
d loss / d (real) parameter. Nothing here runs tinytrain's kernels or rules.

By default activations stay float: that is the float model the int8 one
approximates, and the tests' cosine tolerances absorb the difference. With
quantize_activations=True every op output is rounded to its int8 grid in the
forward pass, with the straight-through estimator backward and ReLU clamps
decided on the rounded value, as the int8 graph computes; what remains then is
only the int32-accumulator rounding of TFLM's kernels, which is not emulated.
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
# Standalone activation functions: float version given the input and the op's builtin options.
UNARY = {
    "LOGISTIC": lambda v, o: tf.sigmoid(v),
    "TANH": lambda v, o: tf.tanh(v),
    "HARD_SWISH": lambda v, o: v * tf.nn.relu6(v + 3.0) / 6.0,
    "LEAKY_RELU": lambda v, o: tf.nn.leaky_relu(v, o.alpha),
}
PADDING = {tfl.Padding.SAME: "SAME", tfl.Padding.VALID: "VALID"}


def _real(tensor: tt.Tensor) -> np.ndarray:
    return tensor.quantization.dequantize(tensor.data).astype(np.float32)


CLAMPS = {
    tfl.ActivationFunctionType.NONE: (-np.inf, np.inf),
    tfl.ActivationFunctionType.RELU: (0.0, np.inf),
    tfl.ActivationFunctionType.RELU6: (0.0, 6.0),
}


def _to_int8_grid(z, activation: int, tensor: tt.Tensor):
    """Forward: act(z) rounded to the tensor's int8 grid. Backward: identity where the rounded
    value lies strictly inside the activation's clamp range, zero elsewhere."""
    scale, zero_point = float(tensor.quantization.scale[0]), float(tensor.quantization.zero_point[0])
    low, high = CLAMPS[activation]
    q = tf.clip_by_value(tf.round(tf.clip_by_value(z, low, high) / scale) + zero_point, -128.0, 127.0)
    lower_q = max(-128.0, zero_point + round(low / scale)) if np.isfinite(low) else -129.0
    # A fused activation's backward also stops at the int8 limits (the compiler's clipped straight-through
    # estimator): a ReLU output saturated at 127 passes no gradient. Without one, everything passes.
    if activation == tfl.ActivationFunctionType.NONE:
        upper_q = 128.0
    else:
        upper_q = min(127.0, zero_point + round(high / scale)) if np.isfinite(high) else 127.0
    passes = tf.cast((q > lower_q) & (q < upper_q), z.dtype)
    return tf.stop_gradient(scale * (q - zero_point)) + tf.stop_gradient(passes) * (z - tf.stop_gradient(z))


# The head activation each loss takes the input of (tinytrain_tflm.passes.loss.attach_loss drops it).
DROPPED_HEAD = {"softmax_cross_entropy": "SOFTMAX", "binary_cross_entropy": "LOGISTIC", "mean_squared_error": None}


def _saturation_stops_outward_gradient(v, tensor: tt.Tensor):
    """Identity forward; backward, no gradient pushing a value at an int8 limit further out: the loss
    kernels' clipped straight-through estimator on the output they read."""
    scale, zero_point = float(tensor.quantization.scale[0]), float(tensor.quantization.zero_point[0])
    q = tf.round(v / scale) + zero_point

    @tf.custom_gradient
    def clip(z):
        def backward(g):
            return tf.where(((q >= 127.0) & (g < 0)) | ((q <= -128.0) & (g > 0)), tf.zeros_like(g), g)

        return tf.identity(z), backward

    return clip(v)


def _loss(loss: str, output, label):
    """The training loss in float: label is a class, 0/1, or the real target of the output's shape."""
    if loss == "softmax_cross_entropy":
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(np.array([label]), output))
    if loss == "binary_cross_entropy":
        labels = tf.constant(np.full(output.shape, float(label), np.float32))
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=output))
    return tf.reduce_mean(tf.square(output - tf.constant(np.reshape(label, output.shape), output.dtype)))


def float_gradients(
    model: bytes, x: np.ndarray, label, quantize_activations: bool = False, loss: str = "softmax_cross_entropy"
) -> tuple[float, dict[str, np.ndarray]]:
    """(loss, {parameter name: d loss / d real parameter}) for every conv-like weight and bias.
    label: the class (0 or 1 for binary cross-entropy), or the real-valued target for mean squared error."""
    graph = tt.read_graph(model)
    params = {}
    for op in graph.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            if len(op.inputs) < 3 or op.inputs[2] < 0:
                # The compiler gives a bias-less layer a zero bias so it can train; so does the oracle.
                weight = graph.tensors[op.inputs[1]]
                channels = weight.shape[3 if op.kind == "DEPTHWISE_CONV_2D" else 0]
                bias = tt.Tensor(f"{weight.name}/bias", (channels,), np.dtype(np.int32))
                op.inputs = op.inputs[:2] + [graph.add_tensor(bias)]
                params[op.inputs[2]] = tf.Variable(np.zeros(channels, np.float32))
            for t in op.inputs[1:3]:
                if t not in params:
                    params[t] = tf.Variable(_real(graph.tensors[t]))
    x_tensor = graph.tensors[graph.inputs[0]]
    values = {graph.inputs[0]: tf.constant(x_tensor.quantization.dequantize(x).astype(np.float32))}

    def const(t):
        return params[t] if t in params else tf.constant(_real(graph.tensors[t]))

    with tf.GradientTape() as tape:
        for op in graph.ops:
            if op is graph.ops[-1] and op.kind == DROPPED_HEAD[loss]:  # the loss takes the logits
                continue
            if graph.tensors[op.outputs[0]].dtype == np.int32:  # shape arithmetic (Keras' Flatten); RESHAPE uses static shapes
                continue
            o = op.builtin_options
            a = values[op.inputs[0]]
            activation = getattr(o, "fusedActivationFunction", tfl.ActivationFunctionType.NONE)
            output = graph.tensors[op.outputs[0]]

            def act(z, activation=activation, output=output):
                if quantize_activations and output.dtype == np.int8:
                    return _to_int8_grid(z, activation, output)
                return ACTIVATIONS[activation](z)

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
                y = act(tf.matmul(tf.reshape(a, (-1, w.shape[1])), w, transpose_b=True) + const(op.inputs[2]))
            elif op.kind in ("ADD", "SUB", "MUL"):
                other = values[op.inputs[1]] if op.inputs[1] in values else const(op.inputs[1])
                y = act({"ADD": tf.add, "SUB": tf.subtract, "MUL": tf.multiply}[op.kind](a, other))
            elif op.kind in UNARY:
                y = act(UNARY[op.kind](a, o))
            elif op.kind == "STRIDED_SLICE":
                begin, end, strides = (graph.tensors[t].data for t in op.inputs[1:])
                y = tf.strided_slice(
                    a, begin, end, strides, begin_mask=o.beginMask, end_mask=o.endMask, shrink_axis_mask=o.shrinkAxisMask
                )
            elif op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
                pool = tf.nn.avg_pool2d if op.kind == "AVERAGE_POOL_2D" else tf.nn.max_pool2d
                y = act(pool(a, (o.filterHeight, o.filterWidth), (o.strideH, o.strideW), PADDING[o.padding]))
            elif op.kind == "MEAN":
                y = act(tf.reduce_mean(a, axis=graph.tensors[op.inputs[1]].data.tolist(), keepdims=bool(o.keepDims)))
            elif op.kind in ("RESHAPE", "EXPAND_DIMS", "SQUEEZE"):
                y = tf.reshape(a, output.shape)
            elif op.kind == "PAD":
                y = tf.pad(a, graph.tensors[op.inputs[1]].data)
            elif op.kind == "QUANTIZE":
                y = a
            else:
                raise NotImplementedError(f"oracle has no float version of {op.kind}")
            values[op.outputs[0]] = y
        logits_index = graph.outputs[0]
        if graph.ops[-1].kind == DROPPED_HEAD[loss]:
            logits_index = graph.ops[-1].inputs[0]
        logits = values[logits_index]
        if quantize_activations:
            logits = _saturation_stops_outward_gradient(logits, graph.tensors[logits_index])
        value = _loss(loss, logits, label)
    grads = tape.gradient(value, list(params.values()))
    return float(value), {graph.tensors[t].name: g.numpy() for t, g in zip(params, grads, strict=True)}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))

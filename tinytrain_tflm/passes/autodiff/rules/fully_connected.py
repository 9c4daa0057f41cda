"""Gradient rule of FULLY_CONNECTED."""

from __future__ import annotations

from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ....errors import TinyTrainError
from . import grad_rule


@grad_rule("FULLY_CONNECTED")
def fully_connected(b, op, grad, needs):
    """y = act(x w^T + bias), x flattened to [n, in], w [out, in].

    dz = act'(y) * dy;  dx = dz w (TT_FULLY_CONNECTED_INPUT_GRAD, in x's shape);
    dw = dz^T x for the first c_update rows (TT_FULLY_CONNECTED_FILTER_GRAD);
    dbias = sum over n of dz (TT_BIAS_GRAD).
    """
    x, w = op.inputs[0], op.inputs[1]
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    options = op.builtin_options
    y_shape = b.graph.tensors[op.outputs[0]].shape
    if options.weightsFormat != tfl.FullyConnectedOptionsWeightsFormat.DEFAULT or len(y_shape) != 2:
        raise TinyTrainError(
            f"FULLY_CONNECTED producing {b.graph.tensors[op.outputs[0]].name!r}: only plain weights and 2-D outputs train"
        )
    dz = b.through_activation(op.outputs[0], options.fusedActivationFunction, grad)
    results = [None] * len(op.inputs)
    if needs[0]:
        results[0] = b.grad_op("FULLY_CONNECTED_INPUT_GRAD", [dz], [w], b.new_grad(x))
    if needs[1]:
        shape = (b.trainable[w], b.graph.tensors[w].shape[1])
        results[1] = b.grad_op("FULLY_CONNECTED_FILTER_GRAD", [dz], [x], b.new_grad(w, shape))
    if bias >= 0 and needs[2]:
        results[2] = b.grad_op("BIAS_GRAD", [dz], [], b.new_grad(bias, (b.trainable[bias],)))
    return tuple(results)

"""Attach the training loss to a model's logits: the seed of the backward pass."""

from __future__ import annotations

import copy

import numpy as np

from ..backend import schema, schema_generated
from ..errors import TinyTrainError
from ..frontend import ir
from ..plan import memory

GRADIENT_DTYPES = {"float32": np.dtype(np.float32), "int8": np.dtype(np.int8)}
TRAINING_METADATA = schema_generated.BLOBS["TRAINING_METADATA"]["metadata_name"]


def _producer(graph: ir.Graph, tensor: int) -> ir.Op | None:
    return next((op for op in graph.ops if tensor in op.outputs), None)


# compile(loss=...) names -> (TRAINING_METADATA loss constant, loss op).
LOSSES = {
    "softmax_cross_entropy": (schema_generated.LOSS_SOFTMAX_CROSS_ENTROPY, schema_generated.SOFTMAX_CROSS_ENTROPY),
    "binary_cross_entropy": (schema_generated.LOSS_BINARY_CROSS_ENTROPY, schema_generated.BINARY_CROSS_ENTROPY),
    "mean_squared_error": (schema_generated.LOSS_MEAN_SQUARED_ERROR, schema_generated.MEAN_SQUARED_ERROR),
}
# The head activation each loss takes the input of: its op kind, and the metadata field keeping its output for export.
DROPPED_HEADS = {"softmax_cross_entropy": ("SOFTMAX", "softmax_tensor"), "binary_cross_entropy": ("LOGISTIC", "sigmoid_tensor")}


def attach_loss(
    graph: ir.Graph,
    label_smoothing: float = 0.0,
    gradient: str = "float32",
    control: bool = False,
    loss: str = "softmax_cross_entropy",
) -> ir.Graph:
    """A copy of `graph` that also computes the training loss on its one output.

    loss: "softmax_cross_entropy" (class scores [batch, classes], int32 class labels [batch]),
    "binary_cross_entropy" (one logit [batch, 1], int32 labels 0 or 1) or "mean_squared_error" (any
    int8 output; the label is an int8 target of the output's shape and quantization, e.g. the input
    itself for an autoencoder). The copy takes one more input, the labels or target (and with
    `control` an int32 [1] control input, CONTROL_* bits, that lets one model predict, compute
    gradients or train per invoke), and its outputs become (loss, logits, grad_logits) plus
    grad_scale when `gradient` is "int8"; "logits" is the output the loss reads. A trailing SOFTMAX
    (cross-entropy) or LOGISTIC (binary cross-entropy) is dropped: the loss takes its input, as a
    saturated probability would lose the gradient; the metadata records it for export. The input
    model is not modified.
    """
    if gradient not in GRADIENT_DTYPES:
        raise TinyTrainError(f"gradient must be one of {sorted(GRADIENT_DTYPES)}, got {gradient!r}")
    if loss not in LOSSES:
        raise TinyTrainError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise TinyTrainError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if label_smoothing and loss != "softmax_cross_entropy":
        raise TinyTrainError(f"label_smoothing applies to softmax_cross_entropy only, not {loss}")
    if len(graph.outputs) != 1:
        raise TinyTrainError(f"model has {len(graph.outputs)} outputs; training needs exactly one, the one the loss reads")
    g = copy.deepcopy(graph)
    g.metadata.pop(memory.OFFLINE_PLAN, None)  # planned for the model without the loss's tensors
    logits = g.outputs[0]
    producer = _producer(g, logits)
    dropped = {"softmax_tensor": -1, "softmax_beta": 1.0, "sigmoid_tensor": -1}
    head_kind, head_field = DROPPED_HEADS.get(loss, (None, None))
    if producer is not None and producer.kind == head_kind:
        g.ops.remove(producer)
        dropped[head_field] = logits
        if head_kind == "SOFTMAX":
            dropped["softmax_beta"] = float(producer.builtin_options.beta)
        logits = producer.inputs[0]
    tensor = g.tensors[logits]
    if producer is not None and producer.kind == "DEQUANTIZE":
        raise TinyTrainError(
            "model output is float (it ends in DEQUANTIZE): tinytrain_tflm.compile strips it, attach_loss alone does not; "
            "compile the model, or convert with inference_output_type=tf.int8"
        )
    if producer is not None and producer.kind == "QUANTIZE" and tensor.dtype == np.uint8:
        raise TinyTrainError(
            "model output is uint8 (it ends in QUANTIZE to uint8), which tinytrain does not train through; convert with "
            "inference_output_type=tf.int8, or keep the converter's default float32 output"
        )
    if tensor.dtype != np.int8:
        raise TinyTrainError(
            f"logits tensor {tensor.name!r} is {tensor.dtype.name}; training needs an int8 (full-integer quantized) model"
        )
    if tensor.quantization is None or len(tensor.quantization.scale) != 1:
        raise TinyTrainError(f"logits tensor {tensor.name!r} needs per-tensor quantization")
    batch = tensor.shape[0]
    if loss == "mean_squared_error":
        label = g.add_tensor(ir.Tensor("tinytrain/target", tensor.shape, np.dtype(np.int8), copy.deepcopy(tensor.quantization)))
        num_classes = int(np.prod(tensor.shape[1:]))
    elif len(tensor.shape) != 2 or (loss == "binary_cross_entropy" and tensor.shape[1] != 1):
        expected = "[batch, classes]" if loss == "softmax_cross_entropy" else "[batch, 1] (one logit per sample)"
        raise TinyTrainError(f"logits tensor {tensor.name!r} has shape {tensor.shape}; {loss} expects {expected}")
    else:
        label = g.add_tensor(ir.Tensor("tinytrain/labels", (batch,), np.dtype(np.int32)))
        num_classes = tensor.shape[1] if loss == "softmax_cross_entropy" else 2

    loss_tensor = g.add_tensor(ir.Tensor("tinytrain/loss", (1,), np.dtype(np.float32)))
    grad = g.add_tensor(ir.Tensor("tinytrain/grad_logits", tensor.shape, GRADIENT_DTYPES[gradient]))
    outputs = [loss_tensor, grad]
    if gradient == "int8":
        outputs.append(g.add_tensor(ir.Tensor("tinytrain/grad_logits_scale", (1,), np.dtype(np.float32))))
    loss_inputs = [logits, label]
    if control:
        loss_inputs.append(g.add_tensor(ir.Tensor("tinytrain/control", (1,), np.dtype(np.int32))))
    loss_id, loss_op = LOSSES[loss]
    if loss == "softmax_cross_entropy":
        options = schema.encode_blob(loss_op.removeprefix("TT_"), num_classes=num_classes, label_smoothing=float(label_smoothing))
    else:
        options = schema.encode_blob(loss_op.removeprefix("TT_"))
    g.ops.append(ir.Op(loss_op, loss_inputs, outputs, custom=True, custom_options=options))
    g.inputs = g.inputs + loss_inputs[1:]
    g.outputs = [loss_tensor, logits] + outputs[1:]
    g.metadata[TRAINING_METADATA] = schema.encode_blob(
        "TRAINING_METADATA",
        input_tensor=g.inputs[0],
        label_tensor=label,
        control_tensor=loss_inputs[2] if control else -1,
        loss_tensor=loss_tensor,
        logits_tensor=logits,
        num_classes=num_classes,
        loss=loss_id,
        **dropped,
    )
    return g

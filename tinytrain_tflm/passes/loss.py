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


def attach_loss(graph: ir.Graph, label_smoothing: float = 0.0, gradient: str = "float32", control: bool = False) -> ir.Graph:
    """A copy of `graph` that also computes the softmax cross-entropy loss.

    The copy takes one more input, the int32 labels [batch] (and with
    `control` an int32 [1] control input, CONTROL_* bits, that lets one model
    predict, compute gradients or train per invoke), and its outputs become
    (loss, logits, grad_logits) plus grad_scale when `gradient` is "int8". A
    trailing SOFTMAX is dropped: the loss takes logits, and a softmax output
    would lose their scale; the metadata records it for export. The input
    model is not modified.
    """
    if gradient not in GRADIENT_DTYPES:
        raise TinyTrainError(f"gradient must be one of {sorted(GRADIENT_DTYPES)}, got {gradient!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise TinyTrainError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if len(graph.outputs) != 1:
        raise TinyTrainError(f"model has {len(graph.outputs)} outputs; training needs exactly one, the class scores")
    g = copy.deepcopy(graph)
    g.metadata.pop(memory.OFFLINE_PLAN, None)  # planned for the model without the loss's tensors
    logits = g.outputs[0]
    producer = _producer(g, logits)
    softmax_tensor, softmax_beta = -1, 1.0
    if producer is not None and producer.kind == "SOFTMAX":
        g.ops.remove(producer)
        softmax_tensor, softmax_beta = logits, float(producer.builtin_options.beta)
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
    if len(tensor.shape) != 2:
        raise TinyTrainError(f"logits tensor {tensor.name!r} has shape {tensor.shape}; expected [batch, classes]")
    if tensor.quantization is None or len(tensor.quantization.scale) != 1:
        raise TinyTrainError(f"logits tensor {tensor.name!r} needs per-tensor quantization")
    batch, classes = tensor.shape

    label = g.add_tensor(ir.Tensor("tinytrain/labels", (batch,), np.dtype(np.int32)))
    loss = g.add_tensor(ir.Tensor("tinytrain/loss", (1,), np.dtype(np.float32)))
    grad = g.add_tensor(ir.Tensor("tinytrain/grad_logits", (batch, classes), GRADIENT_DTYPES[gradient]))
    outputs = [loss, grad]
    if gradient == "int8":
        outputs.append(g.add_tensor(ir.Tensor("tinytrain/grad_logits_scale", (1,), np.dtype(np.float32))))
    loss_inputs = [logits, label]
    if control:
        loss_inputs.append(g.add_tensor(ir.Tensor("tinytrain/control", (1,), np.dtype(np.int32))))
    options = schema.encode_blob("SOFTMAX_CROSS_ENTROPY", num_classes=classes, label_smoothing=float(label_smoothing))
    g.ops.append(ir.Op(schema_generated.SOFTMAX_CROSS_ENTROPY, loss_inputs, outputs, custom=True, custom_options=options))
    g.inputs = g.inputs + loss_inputs[1:]
    g.outputs = [loss, logits] + outputs[1:]
    g.metadata[TRAINING_METADATA] = schema.encode_blob(
        "TRAINING_METADATA",
        input_tensor=g.inputs[0],
        label_tensor=label,
        control_tensor=loss_inputs[2] if control else -1,
        loss_tensor=loss,
        logits_tensor=logits,
        num_classes=classes,
        softmax_tensor=softmax_tensor,
        softmax_beta=softmax_beta,
    )
    return g

"""Train a compiled model on the TFLM x86 reference runtime, inspect it, export it."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from .. import target
from ..backend import emit, schema, schema_generated
from ..compiler import TrainingModel
from ..errors import TinyTrainError
from ..frontend import edges, ir, read
from ..passes import loss, partial, requantization, tiling
from ..plan import memory
from .interpreter import MAX_ARENA_BYTES, Interpreter


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A trainable parameter of a training model."""

    name: str  # the tensor's name in the source model
    source: int  # constant tensor holding the source model's values
    variable: int  # RAM copy the forward pass reads and TT_SGD updates
    grad: int  # gradient tensor TT_SGD reads ([c_update, ...] for a partial update)
    grad_scale: int  # its scale tensor (int8 gradients), or -1


def _merge_split_parts(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rejoins the channel parts a partial split made ("name" and "name[k:]", tinytrain_tflm.passes.partial),
    so results are keyed by the source model's parameter names."""
    merged = dict(values)
    for key in list(values):
        match = re.fullmatch(r"(.*)\[(\d+):\]", key)
        if match and match.group(1) in merged:
            merged[match.group(1)] = np.concatenate([merged[match.group(1)], merged.pop(key)])
    return merged


def _model_bytes(model: TrainingModel | bytes | str | Path) -> bytes:
    if isinstance(model, TrainingModel):
        return model.bytes
    if isinstance(model, str | Path):
        try:
            return Path(model).read_bytes()
        except OSError as error:
            raise TinyTrainError(f"cannot read {model}: {error.strerror}") from None
    if not isinstance(model, bytes | bytearray | memoryview):
        raise TinyTrainError(f"Trainer takes a TrainingModel, its bytes or a file path, got {type(model).__name__}")
    return bytes(model)


def _class_index(label) -> int:
    """An integer class label (a Python or NumPy integer, or an integer array of one element)."""
    value = np.asarray(label)
    if value.dtype.kind not in "iu" or value.size != 1:
        raise TinyTrainError(f"label must be one integer class index, got {label!r}")
    return int(value.reshape(()))


def _parameters(graph: ir.Graph) -> list[Parameter]:
    """The trainable parameters TT_INIT_VARIABLES and TT_SGD name, each checked: a constant source, a
    variable of its shape and type, and one TT_SGD updating it."""
    inits = [op for op in graph.ops if op.kind == schema_generated.INIT_VARIABLES]
    if len(inits) != 1:
        raise TinyTrainError(f"training model has {len(inits)} TT_INIT_VARIABLES ops; it needs exactly one")
    init = inits[0]
    grads = {}
    for op in graph.ops:
        if op.kind == schema_generated.SGD:
            if len(op.inputs) != 5 or op.inputs[0] < 0 or op.inputs[1] < 0 or op.inputs[0] in grads:
                raise TinyTrainError(
                    f"TT_SGD with inputs {op.inputs} needs (parameter, gradient, its scale, momentum, control), one per parameter"
                )
            grads[op.inputs[0]] = (op.inputs[1], op.inputs[2])
    if len(init.inputs) % 2 or any(t < 0 for t in init.inputs):
        raise TinyTrainError(f"TT_INIT_VARIABLES inputs {init.inputs} are not (source, variable) pairs")
    parameters = []
    for source, variable in zip(init.inputs[0::2], init.inputs[1::2], strict=True):
        s, v = graph.tensors[source], graph.tensors[variable]
        if s.data is None or not v.is_variable or s.shape != v.shape or s.dtype != v.dtype:
            raise TinyTrainError(
                f"TT_INIT_VARIABLES pairs tensor {source} ({s.name!r}) with tensor {variable} ({v.name!r}): "
                "it needs a constant and a variable of the same shape and type"
            )
        if variable not in grads:
            raise TinyTrainError(f"trainable variable {variable} ({v.name!r}) has no TT_SGD updating it")
        grad, scale = grads[variable]
        parameters.append(Parameter(s.name, source, variable, grad, scale))
    return parameters


# The loss op each TRAINING_METADATA loss id names.
_LOSS_OPS = dict(loss.LOSSES.values())


def training_metadata(graph: ir.Graph) -> dict:
    """The TRAINING_METADATA of a compiled training model (which tensors are sample, label, control, loss, logits),
    checked against the graph: each tensor exists and has the type and shape its role needs."""
    if loss.TRAINING_METADATA not in graph.metadata:
        raise TinyTrainError("not a tinytrain training model (no training metadata); compile it first")
    try:
        metadata = schema.decode_blob("TRAINING_METADATA", graph.metadata[loss.TRAINING_METADATA])
    except TinyTrainError as error:
        raise TinyTrainError(f"training metadata: {error}") from None
    if metadata["control_tensor"] < 0:
        raise TinyTrainError("training model has no control input; compile it with tinytrain_tflm.compile")
    count = len(graph.tensors)
    heads = ("softmax_tensor", "sigmoid_tensor")  # -1: the model had no such head to put back on export
    for role in ("input_tensor", "label_tensor", "control_tensor", "loss_tensor", "logits_tensor", *heads):
        index = metadata[role]
        if not (0 <= index < count or (role in heads and index == -1)):
            raise TinyTrainError(f"training metadata names tensor {index} as {role}; the model has {count} tensors")
    inputs = [metadata[role] for role in ("input_tensor", "label_tensor", "control_tensor")]
    if graph.inputs != inputs:
        raise TinyTrainError(f"training metadata names inputs {inputs} (sample, label, control); the model's are {graph.inputs}")
    if metadata["loss"] not in _LOSS_OPS:
        raise TinyTrainError(f"training metadata names loss {metadata['loss']}; this tinytrain_tflm knows {sorted(_LOSS_OPS)}")
    loss_op_kind = _LOSS_OPS[metadata["loss"]]
    logits = graph.tensors[metadata["logits_tensor"]]
    classes = metadata["num_classes"]
    regression = metadata["loss"] == schema_generated.LOSS_MEAN_SQUARED_ERROR
    if regression:  # the "classes" of a regression output are its values per sample
        logits_ok = len(logits.shape) >= 2 and int(np.prod(logits.shape[1:])) == classes
        expected_logits = f"[batch, ...] with {classes} values per sample"
    else:
        width = 1 if metadata["loss"] == schema_generated.LOSS_BINARY_CROSS_ENTROPY else classes
        logits_ok = len(logits.shape) == 2 and logits.shape[1] == width
        expected_logits = f"[batch, {width}]"
    if logits.dtype != np.int8 or not logits_ok or logits.quantization is None:
        raise TinyTrainError(
            f"training metadata: logits tensor {logits.name!r} is {logits.dtype.name} {logits.shape}; "
            f"it must be quantized int8 {expected_logits}"
        )
    # Mean squared error's label is its int8 target, of the output's shape; the others' are class indices.
    label = (np.int8, logits.shape) if regression else (np.int32, (logits.shape[0],))
    roles = {"label_tensor": label, "control_tensor": (np.int32, (1,))}
    for role, (dtype, shape) in roles.items():
        tensor = graph.tensors[metadata[role]]
        if tensor.dtype != dtype or tensor.shape != shape:
            raise TinyTrainError(
                f"training metadata: {role} {tensor.name!r} must be {np.dtype(dtype).name} {shape}, "
                f"is {tensor.dtype.name} {tensor.shape}"
            )
    sample = graph.tensors[metadata["input_tensor"]]
    if sample.dtype.kind == "i" and sample.quantization is None:
        raise TinyTrainError(f"training metadata: the sample tensor {sample.name!r} has no quantization")
    losses = [op for op in graph.ops if op.kind in _LOSS_OPS.values()]
    if (
        len(losses) != 1
        or losses[0].kind != loss_op_kind
        or losses[0].inputs[:1] != [metadata["logits_tensor"]]
        or losses[0].outputs[:1] != [metadata["loss_tensor"]]
    ):
        raise TinyTrainError(f"training metadata: the model needs one {loss_op_kind} from its logits to its loss tensor")
    if not np.isfinite(metadata["softmax_beta"]):
        raise TinyTrainError("training metadata: softmax_beta is not finite")
    return metadata


class Trainer:
    """Runs a training model in TFLM: one invoke per step, predict or gradient query.

    The host interpreter preserves every tensor so gradients and weights can be
    read back; a device plans memory instead (see tinytrain_tflm.runtime.interpreter).
    """

    def __init__(self, training_model: TrainingModel | bytes | str | Path, kernel_library: str | Path | None = None):
        """training_model: a compiled TrainingModel, its bytes or the path of its file. kernel_library: a library
        of kernels generated for this model (tinytrain_tflm.firmware.codegen) to run instead of the generic ones."""
        self.model = _model_bytes(training_model)
        self.graph = read.read_graph(self.model)
        self.metadata = training_metadata(self.graph)
        self.parameters = _parameters(self.graph)
        self.input = self.graph.tensors[self.metadata["input_tensor"]]
        # Every tensor gets its own memory with preserve_all_tensors: size the arena for all of them.
        live = sum(t.data is None and int(np.prod(t.shape, dtype=object)) * t.dtype.itemsize for t in self.graph.tensors)
        arena = 2 * live + 256 * len(self.graph.tensors) + (1 << 20)
        if arena > MAX_ARENA_BYTES:
            raise TinyTrainError(
                f"the model's tensors need a {arena:,}-byte arena on the host, over the {MAX_ARENA_BYTES:,}-byte limit "
                "(a damaged file? `tinytrain-tflm plan MODEL` shows its tensors)"
            )
        self._interpreter = Interpreter(
            self.model,
            arena,
            preserve_all_tensors=True,
            kernel_library=kernel_library,
        )

    def _sample(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape == self.input.shape[1:]:
            x = x[None]
        if x.shape != self.input.shape:
            raise TinyTrainError(f"sample must have shape {self.input.shape} or {self.input.shape[1:]}, got {x.shape}")
        if x.dtype == self.input.dtype:
            return x
        if x.dtype.kind == "f" and self.input.quantization is not None:
            if not np.isfinite(x).all():
                raise TinyTrainError("sample holds NaN or infinite values")
            return self.input.quantization.quantize(x, self.input.dtype)
        raise TinyTrainError(
            f"sample must be float (quantized with the model's input scale) or {self.input.dtype.name}, got {x.dtype.name}"
        )

    def _labels(self, label, control: int) -> np.ndarray:
        """The label input: int32 [batch] class labels, or the mean squared error's int8 target
        (float values are quantized with its scale); anything on a predict-only invoke (control 0)."""
        tensor = self.graph.tensors[self.metadata["label_tensor"]]
        if self.metadata["loss"] == schema_generated.LOSS_MEAN_SQUARED_ERROR:
            if not control:
                return np.zeros(tensor.shape, np.int8)
            target = np.asarray(label)
            if target.size != int(np.prod(tensor.shape)):
                raise TinyTrainError(f"target must have the output's shape {tensor.shape}, got {target.shape}")
            if target.dtype.kind == "f":
                target = tensor.quantization.quantize(target, np.int8)
            elif target.dtype != np.int8:
                raise TinyTrainError(f"target must be float or int8, got {target.dtype.name}")
            return target.reshape(tensor.shape)
        label = _class_index(label)
        classes = self.metadata["num_classes"]
        if control and not 0 <= label < classes:
            raise TinyTrainError(f"label {label} is out of range [0, {classes})")
        return np.full(tensor.shape, label, np.int32)

    def _run(self, x: np.ndarray, label, control: int) -> list[np.ndarray]:
        return self._interpreter.run([self._sample(x), self._labels(label, control), np.array([control], np.int32)])

    def step(self, x: np.ndarray, label) -> float:
        """One SGD step on one sample; returns the loss before the update. label: the class (0 or 1 for
        binary cross-entropy), or the target for mean squared error (the sample itself for an autoencoder)."""
        return float(self._run(x, label, schema_generated.CONTROL_BACKWARD | schema_generated.CONTROL_UPDATE)[0][0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Dequantized output the loss reads (logits [batch, classes]); no gradient, no update."""
        logits = self._run(x, 0, 0)[1]
        return self.graph.tensors[self.metadata["logits_tensor"]].quantization.dequantize(logits)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Fraction of samples x whose predicted class is their label y (no update): the largest logit,
        or a positive logit for binary cross-entropy."""
        loss_kind = self.metadata["loss"]
        if loss_kind == schema_generated.LOSS_MEAN_SQUARED_ERROR:
            raise TinyTrainError("accuracy needs class labels; this model trains with mean squared error")
        if loss_kind == schema_generated.LOSS_BINARY_CROSS_ENTROPY:
            predicted = [int(self.predict(sample).ravel()[0] > 0) for sample in x]
        else:
            predicted = [int(np.argmax(self.predict(sample))) for sample in x]
        return float(np.mean(np.asarray(predicted) == np.asarray(y)))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(accuracy, mean loss) over samples x with labels y, without updating: each sample runs the
        backward pass too, since the loss is computed only there, but no update is applied."""
        correct, losses = 0, []
        logits_quantization = self.graph.tensors[self.metadata["logits_tensor"]].quantization
        for sample, label in zip(x, y, strict=True):
            loss_value, logits = self._run(sample, label, schema_generated.CONTROL_BACKWARD)[:2]
            losses.append(float(loss_value[0]))
            correct += int(np.argmax(logits_quantization.dequantize(logits)) == int(label))
        return correct / len(losses), float(np.mean(losses))

    def gradients(self, x: np.ndarray, label: int) -> dict[str, np.ndarray]:
        """d loss / d (real) parameter for every trainable parameter, keyed by its source name; no update.
        A partially updated weight has gradients for its updated channels only."""
        self._run(x, label, schema_generated.CONTROL_BACKWARD)
        gradients = {}
        for parameter in self.parameters:
            grad = self._interpreter.tensor(parameter.grad).astype(np.float64)
            if parameter.grad_scale >= 0:
                grad *= self._interpreter.tensor(parameter.grad_scale)[0]
            gradients[parameter.name] = grad
        return _merge_split_parts(gradients)

    def weights(self) -> dict[str, np.ndarray]:
        """Current integer values of every trainable parameter, keyed by source name."""
        return _merge_split_parts(self.tensor_values())

    def tensor_values(self) -> dict[str, np.ndarray]:
        """Current values of every trained tensor of the training model, by tensor name (split parts apart)."""
        if not self._interpreter.invoked:  # variables are filled on the first invoke after creation or reset
            return {p.name: self.graph.tensors[p.source].data.copy() for p in self.parameters}
        return {p.name: self._interpreter.tensor(p.variable) for p in self.parameters}

    def reset(self) -> None:
        """Back to the source model's weights; momentum cleared (TFLM zeroes variables, TT_INIT_VARIABLES copies again)."""
        self._interpreter.reset()

    def _trained_graph(self) -> ir.Graph:
        graph = copy.deepcopy(self.graph)
        values = self.tensor_values()
        for parameter in self.parameters:
            graph.tensors[parameter.source].data = values[parameter.name]
        return graph

    def training_model(self) -> TrainingModel:
        """The training model with the current weights as its starting point (to save and resume)."""
        return TrainingModel(emit.emit_model(self._trained_graph()))

    def export(self) -> bytes:
        """An ordinary inference .tflite with the trained weights, for stock TFLM (no custom op)."""
        graph = self._trained_graph()
        sources = {p.variable: p.source for p in self.parameters}
        loss_position = next(i for i, op in enumerate(graph.ops) if op.kind in schema.LOSS_OPS)
        forward = [restored for op in graph.ops[:loss_position] for restored in tiling.restore_stage(graph, op)]
        graph.ops = [
            dataclasses.replace(op, inputs=[sources.get(t, t) for t in op.inputs])
            for op in map(requantization.restore, forward)
            if not op.custom
        ]
        graph = partial.rejoin_split_layers(graph)
        output = self.metadata["logits_tensor"]
        if self.metadata["softmax_tensor"] >= 0:
            options = tfl.SoftmaxOptionsT()
            options.beta = self.metadata["softmax_beta"]
            graph.ops.append(ir.Op("SOFTMAX", [output], [self.metadata["softmax_tensor"]], builtin_options=options))
            output = self.metadata["softmax_tensor"]
        if self.metadata["sigmoid_tensor"] >= 0:
            graph.ops.append(ir.Op("LOGISTIC", [output], [self.metadata["sigmoid_tensor"]]))
            output = self.metadata["sigmoid_tensor"]
        graph.inputs, graph.outputs = [self.metadata["input_tensor"]], [output]
        del graph.metadata[loss.TRAINING_METADATA]
        graph.metadata.pop(target.TARGET_METADATA, None)
        graph.metadata.pop(memory.OFFLINE_PLAN, None)  # planned for the training model's tensors
        edges.restore_float_edges(graph)
        return emit.emit_model(graph.compact()[0])

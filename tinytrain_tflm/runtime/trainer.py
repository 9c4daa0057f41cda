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
from ..passes import loss, optimizer, partial, requantization, tiling
from ..passes.optimizer import MAX_LEARNING_RATE
from ..passes.scheme import conv_like_layers
from ..plan import memory, tiled_stage
from .interpreter import MAX_ARENA_BYTES, Interpreter


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A trainable parameter of a training model."""

    name: str  # the tensor's name in the source model
    source: int  # constant tensor holding the source model's values
    variable: int  # RAM copy the forward pass reads and TT_SGD updates
    grad: int  # gradient tensor TT_SGD reads ([c_update, ...] for a partial update)
    grad_scale: int  # its scale tensor (int8 gradients), or -1
    # A bias whose TT_SGD reads its layer's output gradient as grad and sums it per channel
    # (passes/fusion.fuse_bias_updates): the kernel takes a grad of higher rank than the bias so.
    summed_in_update: bool
    trained_shape: tuple[int, ...]  # the trained part's shape: grad's, or the bias's when summed_in_update


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


class ParameterValues(dict):
    """Values of trained parameters by source tensor name, also reachable by the conv-like layer index
    that update schemes and `tinytrain-tflm layers` use: values[i] is layer i's weights, values[i, "bias"]
    its bias."""

    def __init__(self, values: dict[str, np.ndarray], layers: dict[int, tuple[str, str | None]]):
        super().__init__(values)
        self._layers = layers

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(key)
        index, part = key if isinstance(key, tuple) and len(key) == 2 else (key, "weights")
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or part not in ("weights", "bias"):
            raise TinyTrainError(f'key {key!r}: give a tensor name, a layer index or (index, "bias")')
        if index not in self._layers:
            raise TinyTrainError(f"layer {index} does not exist: the model's conv-like layers are 0 to {len(self._layers) - 1}")
        name = self._layers[index][part == "bias"]
        if name not in self:
            raise TinyTrainError(f"layer {index}'s {part} ({name!r}) are not trained by this model's update scheme")
        return super().__getitem__(name)


def _layer_names(forward: ir.Graph) -> dict[int, tuple[str, str | None]]:
    """Conv-like layer index -> (weight name, bias name or None). A tiled stage runs each of its layers once
    per tile on the same weight tensor: that is one layer, as in the source model the indices count in."""
    layers: dict[int, tuple[str, str | None]] = {}
    seen: set[int] = set()
    for layer in conv_like_layers(forward):
        if layer.weight not in seen:
            seen.add(layer.weight)
            bias = forward.tensors[layer.bias].name if layer.bias >= 0 else None
            layers[len(layers)] = (forward.tensors[layer.weight].name, bias)
    return layers


def compiled_learning_rate(graph: ir.Graph) -> float | None:
    """The learning rate compiled into the model's TT_SGD ops (one optimizer: all have the same), None if
    nothing is updated."""
    updates = [op for op in graph.ops if op.kind == schema_generated.SGD]
    return schema.decode_blob("SGD", updates[0].custom_options)["learning_rate"] if updates else None


def _checked_learning_rate(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TinyTrainError(f"learning rate must be a number, got {value!r}")
    if not 0 < value <= MAX_LEARNING_RATE:  # False for NaN too
        raise TinyTrainError(f"learning rate must be in (0, {MAX_LEARNING_RATE}], got {value}")
    return float(value)


def scheduled_learning_rate(
    schedule: str, base: float, epoch: int, epochs: int, step_epochs: int = 1, gamma: float = 0.1
) -> float:
    """The learning rate of epoch `epoch` (1 to `epochs`) under `schedule`:
    "constant": base;
    "step": base * gamma ** ((epoch - 1) // step_epochs), down by gamma every step_epochs epochs;
    "cosine": base * (1 + cos(pi * (epoch - 1) / epochs)) / 2, from base down toward 0, never reaching it
    (TT_SGD takes 0 as "the compiled rate")."""
    if not 1 <= epoch <= epochs:
        raise TinyTrainError(f"epoch {epoch} is outside 1..{epochs}")
    if schedule == "constant":
        return base
    if schedule == "step":
        if step_epochs < 1 or not 0 < gamma <= 1:
            raise TinyTrainError(f"a step schedule needs step_epochs >= 1 and gamma in (0, 1], got {step_epochs} and {gamma}")
        return base * gamma ** ((epoch - 1) // step_epochs)
    if schedule == "cosine":
        return float(base * (1 + np.cos(np.pi * (epoch - 1) / epochs)) / 2)
    raise TinyTrainError(f"schedule must be constant, step or cosine, got {schedule!r}")


def _run_state_variables(graph: ir.Graph) -> set[int]:
    """Variables that training changes besides the parameters: each TT_SGD's momentum and each int8 gradient's
    scale history (delayed scaling), both saved by Trainer.training_model."""
    momenta = {op.inputs[3] for op in graph.ops if op.kind == schema_generated.SGD and op.inputs[3] >= 0}
    return momenta | ir.scale_histories(graph)


def _parameters(graph: ir.Graph) -> tuple[list[Parameter], dict[int, int]]:
    """The trainable parameters TT_INIT_VARIABLES and TT_SGD name, each checked: a constant source, a
    variable of its shape and type, and one TT_SGD updating it; and the momentum variables and int8 gradients'
    scale histories TT_INIT_VARIABLES also fills (a saved model's state: Trainer.training_model), variable ->
    constant source."""
    inits = [op for op in graph.ops if op.kind == schema_generated.INIT_VARIABLES]
    if len(inits) != 1:
        raise TinyTrainError(f"training model has {len(inits)} TT_INIT_VARIABLES ops; it needs exactly one")
    init = inits[0]
    grads = {}
    for op in graph.ops:
        if op.kind == schema_generated.SGD:
            if len(op.inputs) != 7 or op.inputs[0] < 0 or op.inputs[1] < 0 or op.inputs[0] in grads:
                raise TinyTrainError(
                    f"TT_SGD with inputs {op.inputs} needs (parameter, gradient, its scale, momentum, control, "
                    "learning rate, accumulator), one per parameter"
                )
            if op.inputs[5] != graph.inputs[-1]:
                raise TinyTrainError(f"TT_SGD reads learning rate {op.inputs[5]}; it must be the model's last input")
            grads[op.inputs[0]] = (op.inputs[1], op.inputs[2])
    momenta = _run_state_variables(graph)
    if len(init.inputs) % 2 or any(t < 0 for t in init.inputs):
        raise TinyTrainError(f"TT_INIT_VARIABLES inputs {init.inputs} are not (source, variable) pairs")
    parameters, momentum_sources = [], {}
    for source, variable in zip(init.inputs[0::2], init.inputs[1::2], strict=True):
        s, v = graph.tensors[source], graph.tensors[variable]
        if s.data is None or not v.is_variable or s.shape != v.shape or s.dtype != v.dtype:
            raise TinyTrainError(
                f"TT_INIT_VARIABLES pairs tensor {source} ({s.name!r}) with tensor {variable} ({v.name!r}): "
                "it needs a constant and a variable of the same shape and type"
            )
        if variable in momenta:
            momentum_sources[variable] = source
            continue
        if variable not in grads:
            raise TinyTrainError(f"trainable variable {variable} ({v.name!r}) has no TT_SGD updating it")
        grad, scale = grads[variable]
        grad_shape = tuple(graph.tensors[grad].shape)
        summed = len(grad_shape) > len(v.shape)
        parameters.append(Parameter(s.name, source, variable, grad, scale, summed, tuple(v.shape) if summed else grad_shape))
    return parameters, momentum_sources


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
    # A streamed sample (compile(stream_input=True)) is no graph input: the tiled stage reads it.
    streamed = tiled_stage.streamed_sample(graph)
    if streamed is not None and streamed != metadata["input_tensor"]:
        raise TinyTrainError(
            f"training metadata names tensor {metadata['input_tensor']} as the sample; the stage streams {streamed}"
        )
    roles = ("label_tensor", "control_tensor") if streamed is not None else ("input_tensor", "label_tensor", "control_tensor")
    inputs = [metadata[role] for role in roles]
    if graph.inputs[:-1] != inputs or len(graph.inputs) != len(inputs) + 1:
        raise TinyTrainError(
            f"training metadata names inputs {inputs} ({', '.join(role.split('_')[0] for role in roles)}) and a learning "
            f"rate follows; the model's are {graph.inputs} (compiled by an older tinytrain_tflm? compile it again)"
        )
    rate = graph.tensors[graph.inputs[-1]]
    if rate.dtype != np.float32 or rate.shape != (1,) or not rate.is_variable:
        raise TinyTrainError(f"the model's last input {rate.name!r} must be the float32 [1] learning-rate variable")
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


def sample_tensor(graph: ir.Graph, metadata: dict) -> ir.Tensor:
    """The training model's sample tensor; for a streamed sample, the int8 tensor its shape constant stands for."""
    sample = graph.tensors[metadata["input_tensor"]]
    if tiled_stage.streamed_sample(graph) is None:
        return sample
    return ir.Tensor(sample.name, tuple(int(size) for size in sample.data), np.dtype(np.int8), sample.quantization)


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
        self.parameters, self._momentum_sources = _parameters(self.graph)
        self._updates = 0  # update invokes since creation or the last reset: how far the rounding streams moved
        self.streams_sample = tiled_stage.streamed_sample(self.graph) is not None
        self.input = sample_tensor(self.graph, self.metadata)
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
        # Conv-like layer index -> (weight name, bias name): the source model's layers, as update schemes count them.
        self.layers = _layer_names(self._source_forward(self.graph))
        self.compiled_learning_rate = compiled_learning_rate(self.graph)
        self._learning_rate: float | None = None  # None: the compiled one
        updates = [op for op in self.graph.ops if op.kind == schema_generated.SGD]
        self.accumulates = bool(updates) and all(op.inputs[6] >= 0 for op in updates)
        self._batch_size = 1
        self._pending = 0  # samples accumulated since the last update

    @property
    def batch_size(self) -> int:
        """Samples per update: step() accumulates the gradients of batch_size - 1 samples and updates on the
        next with their mean (the model must be compiled with SGD(accumulate=True)). A partial batch left
        when it changes, or at an epoch's end, joins the next update."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise TinyTrainError(f"batch size must be an integer >= 1, got {value!r}")
        if value > 1 and not self.accumulates:
            raise TinyTrainError(
                "mini-batches need gradient accumulators: compile with SGD(accumulate=True) (`compile --accumulate`)"
            )
        self._batch_size = int(value)

    @property
    def learning_rate(self) -> float | None:
        """The learning rate of the next update: the compiled one until set. Setting it takes effect at the
        next step without recompiling (it is written to the model's learning-rate input before every invoke)."""
        return self.compiled_learning_rate if self._learning_rate is None else self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = _checked_learning_rate(value)

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

    def _run(self, x: np.ndarray, label, control: int, learning_rate: float | None = None) -> list[np.ndarray]:
        rate = self._learning_rate if learning_rate is None else learning_rate
        inputs = [self._sample(x), self._labels(label, control), np.array([control], np.int32)]
        if self.streams_sample:
            self._interpreter.stream_sample(inputs.pop(0))
        outputs = self._interpreter.run([*inputs, np.array([rate or 0.0], np.float32)])  # 0: the compiled rate
        self._updates += bool(control & schema_generated.CONTROL_UPDATE)  # applied updates: what a save counts
        return outputs

    def step(self, x: np.ndarray, label, lr: float | None = None) -> float:
        """One SGD step on one sample (with batch_size > 1, one sample of a mini-batch: the update comes on
        its last); returns the loss before the update. label: the class (0 or 1 for binary cross-entropy), or
        the target for mean squared error (the sample itself for an autoencoder). lr: this step's learning
        rate (default: learning_rate)."""
        rate = None if lr is None else _checked_learning_rate(lr)
        applies = self._pending + 1 >= self._batch_size
        action = schema_generated.CONTROL_UPDATE if applies else schema_generated.CONTROL_ACCUMULATE
        loss_value = float(self._run(x, label, schema_generated.CONTROL_BACKWARD | action, rate)[0][0])
        self._pending = 0 if applies else self._pending + 1
        return loss_value

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Dequantized output the loss reads (logits [batch, classes]); no gradient, no update."""
        logits = self._run(x, 0, 0)[1]
        return self.graph.tensors[self.metadata["logits_tensor"]].quantization.dequantize(logits)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Fraction of samples x whose predicted class is their label y (no update): the largest logit,
        or a positive logit for binary cross-entropy."""
        predicted = [self._predicted_class(self.predict(sample)) for sample in x]
        return float(np.mean(np.asarray(predicted) == np.asarray(y)))

    def _predicted_class(self, logits: np.ndarray) -> int:
        """The class dequantized logits predict: the largest, or for binary cross-entropy's one logit, 1 if positive."""
        loss_kind = self.metadata["loss"]
        if loss_kind == schema_generated.LOSS_MEAN_SQUARED_ERROR:
            raise TinyTrainError("accuracy needs class labels; this model trains with mean squared error")
        if loss_kind == schema_generated.LOSS_BINARY_CROSS_ENTROPY:
            return int(logits.ravel()[0] > 0)
        return int(np.argmax(logits))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(accuracy, mean loss) over samples x with labels y, without updating: each sample runs the
        backward pass too, since the loss is computed only there, but no update is applied. The accuracy
        counts the classes `accuracy` would predict."""
        correct, losses = 0, []
        logits_quantization = self.graph.tensors[self.metadata["logits_tensor"]].quantization
        for sample, label in zip(x, y, strict=True):
            loss_value, logits = self._run(sample, label, schema_generated.CONTROL_BACKWARD)[:2]
            losses.append(float(loss_value[0]))
            correct += self._predicted_class(logits_quantization.dequantize(logits)) == int(label)
        return correct / len(losses), float(np.mean(losses))

    def gradients(self, x: np.ndarray, label: int) -> ParameterValues:
        """d loss / d (real) parameter for every trainable parameter, keyed by its source name (or layer index,
        see ParameterValues); no update. A partially updated weight has gradients for its updated channels only."""
        self._run(x, label, schema_generated.CONTROL_BACKWARD)
        gradients = {}
        for parameter in self.parameters:
            grad = self._interpreter.tensor(parameter.grad).astype(np.float64)
            if parameter.grad_scale >= 0:
                grad *= self._interpreter.tensor(parameter.grad_scale)[0]
            if parameter.summed_in_update:
                grad = grad.reshape(-1, grad.shape[-1]).sum(axis=0)
            gradients[parameter.name] = grad
        return ParameterValues(_merge_split_parts(gradients), self.layers)

    def weights(self) -> ParameterValues:
        """Current integer values of every trainable parameter, keyed by source name (or layer index, see
        ParameterValues)."""
        return ParameterValues(_merge_split_parts(self.tensor_values()), self.layers)

    def tensor_values(self) -> dict[str, np.ndarray]:
        """Current values of every trained tensor of the training model, by tensor name (split parts apart)."""
        if not self._interpreter.invoked:  # variables are filled on the first invoke after creation or reset
            return {p.name: self.graph.tensors[p.source].data.copy() for p in self.parameters}
        return {p.name: self._interpreter.tensor(p.variable) for p in self.parameters}

    def second_passes(self) -> tuple[int, int]:
        """(second passes, int8 gradients that keep a scale history) since creation or reset: each backward
        invoke writes every such gradient once, in one pass at the scale its history predicts, or in two when
        the prediction missed or there was none yet (delayed scaling, kernels/core/common/grad_io.h)."""
        histories = sorted(ir.scale_histories(self.graph))
        if not self._interpreter.invoked:
            return 0, len(histories)
        return int(sum(self._interpreter.tensor(h)[2] for h in histories)), len(histories)

    def reset(self) -> None:
        """Back to the model's starting point: its weights, its momentum (zero unless the model was saved with
        some), its rounding streams and no accumulated gradients (TFLM zeroes variables and resets the ops,
        TT_INIT_VARIABLES copies again)."""
        self._interpreter.reset()
        self._updates = 0
        self._pending = 0

    def _trained_graph(self) -> ir.Graph:
        graph = copy.deepcopy(self.graph)
        values = self.tensor_values()
        for parameter in self.parameters:
            graph.tensors[parameter.source].data = values[parameter.name]
        return graph

    def _momenta(self) -> dict[int, np.ndarray]:
        """Current values of every momentum variable and int8 gradient scale history (float32, zero before
        the first update)."""
        values = {}
        for momentum in sorted(_run_state_variables(self.graph)):
            if self._interpreter.invoked:
                values[momentum] = self._interpreter.tensor(momentum)
            elif momentum in self._momentum_sources:
                values[momentum] = self.graph.tensors[self._momentum_sources[momentum]].data.copy()
            else:
                values[momentum] = np.zeros(self.graph.tensors[momentum].shape, np.float32)
        return values

    def training_model(self) -> TrainingModel:
        """The training model with the current state as its starting point, to save and resume bit-identically:
        the weights, the momentum and the int8 gradients' scale histories (constants TT_INIT_VARIABLES copies
        into those variables) and each
        stochastic-rounding generator's position (its TT_SGD seed option, advanced by the numbers drawn)."""
        graph = self._trained_graph()
        init = next(op for op in graph.ops if op.kind == schema_generated.INIT_VARIABLES)
        for momentum, values in self._momenta().items():
            if momentum in self._momentum_sources:
                graph.tensors[self._momentum_sources[momentum]].data = values
            else:
                variable = graph.tensors[momentum]
                source = graph.add_tensor(ir.Tensor(f"{variable.name}/saved", variable.shape, variable.dtype, data=values))
                init.inputs += [source, momentum]
        init.custom_options = schema.encode_blob("INIT_VARIABLES", num_pairs=len(init.inputs) // 2)
        trained_shapes = {p.variable: p.trained_shape for p in self.parameters}
        for op in graph.ops:
            if op.kind == schema_generated.SGD:
                options = schema.decode_blob("SGD", op.custom_options)
                if options["rounding"] == schema_generated.ROUND_STOCHASTIC:
                    draws = self._updates * int(np.prod(trained_shapes[op.inputs[0]]))
                    state = optimizer.advance_seed(options["seed"] & 0xFFFFFFFF, draws)  # the kernel's uint32
                    options["seed"] = state - (state >> 31 << 32)  # the option's int32 of those bits
                    op.custom_options = schema.encode_blob("SGD", **options)
        if memory.OFFLINE_PLAN in graph.metadata:  # one offset per tensor: the new constants are not planned
            graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
        return TrainingModel(emit.emit_model(graph))

    def _source_forward(self, graph: ir.Graph) -> ir.Graph:
        """The forward ops of `graph` (the training graph or a copy) as the source model had them: parameters
        read from their constants, lowered ops restored, split layers rejoined. Tensors keep their indices."""
        sources = {p.variable: p.source for p in self.parameters}
        loss_position = next(i for i, op in enumerate(graph.ops) if op.kind in schema.LOSS_OPS)
        graph = dataclasses.replace(graph, tensors=list(graph.tensors))  # restore_stage adds the stage's tensors
        forward = [restored for op in graph.ops[:loss_position] for restored in tiling.restore_stage(graph, op)]
        ops = [
            dataclasses.replace(op, inputs=[sources.get(t, t) for t in op.inputs])
            for op in map(requantization.restore, forward)
            if not op.custom
        ]
        return partial.rejoin_split_layers(tiling.untile_first_stage(dataclasses.replace(graph, ops=ops)))

    def export(self) -> bytes:
        """An ordinary inference .tflite with the trained weights, for stock TFLM (no custom op)."""
        graph = self._source_forward(self._trained_graph())
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

"""codegen: the C++ a firmware needs for one training model.

For every tinytrain op of the model but TT_INIT_VARIABLES (a copy), a kernel
specialized to that op's shapes, quantization, options and gradient
representation: the generic kernel's body (kernels/core) instantiated with a
struct of static constexpr values instead of run-time ones, so the compiler
folds them in. Ops with the same values share one kernel. The glue picks each
node's kernel in Prepare (kernels/tflm/specializable_ops.h) after every check
the generic op makes, and fails, naming the op, on a model the kernels were
not generated for. Alongside: the op resolver setup with exactly the builtin
ops and tinytrain ops the model uses, its size computed, as TFLM's
gen_micro_mutable_op_resolver does for inference; and, for tests on the host,
a registerer for the pinned wheel.

Files written (each with a banner naming the generator and the model's hash):
  tinytrain_generated_kernels.h   the specs (static constexpr values) and kernel declarations; no TFLM include
  kernel_<op>_<i>.cc              one kernel per distinct spec; no TFLM include
  tinytrain_generated_ops.h/.cc   the registrations that select them in Prepare, and the model's custom op list
  tinytrain_model_resolver.h      firmware: ModelOpResolver (MicroMutableOpResolver<N>) and AddModelOps()
  host_registerer.cc              host only: the registerer the tflite-micro wheel calls
  manifest.json                   what was written, for tools and for rewriting the directory
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..backend import schema
from ..errors import TinyTrainError
from ..frontend import ir, read
from ..passes import loss

GENERATOR = "tinytrain-tflm codegen"
MANIFEST = "manifest.json"
KERNELS_HEADER = "tinytrain_generated_kernels.h"
OPS_HEADER = "tinytrain_generated_ops.h"
OPS_SOURCE = "tinytrain_generated_ops.cc"
RESOLVER_HEADER = "tinytrain_model_resolver.h"
HOST_REGISTERER = "host_registerer.cc"
GRAD_TYPES = {np.dtype(np.float32): "TT_GRAD_F32", np.dtype(np.int8): "TT_GRAD_S8"}
# TFLM's resolver method names follow from the builtin name (CONV_2D -> AddConv2D:
# each word capitalized, words starting with a digit upper-cased); these do not.
RESOLVER_METHOD_EXCEPTIONS = {
    "BATCH_MATMUL": "AddBatchMatMul",
    "CUMSUM": "AddCumSum",
    "PADV2": "AddPadV2",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


def resolver_method(builtin: str) -> str:
    """The MicroMutableOpResolver method that registers a builtin op, e.g. DEPTHWISE_CONV_2D -> AddDepthwiseConv2D."""
    if builtin in RESOLVER_METHOD_EXCEPTIONS:
        return RESOLVER_METHOD_EXCEPTIONS[builtin]
    return "Add" + "".join(word.capitalize() if word[0].isalpha() else word.upper() for word in builtin.split("_"))


def _float(value: float) -> str:
    """An exact C++ float literal (hexadecimal) of a float32 value."""
    mantissa, exponent = float(np.float32(value)).hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"


def _struct(*fields: object) -> str:
    return "{" + ", ".join(_float(f) if isinstance(f, float) else str(f) for f in fields) + "}"


def _nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The glue's DimsNHWC: c last, n first (rank >= 2), then h and w."""
    padded = [1, 1, 1, 1]
    if shape:
        padded[3] = shape[-1]
    for i, size in enumerate(shape[:-1][:3]):
        padded[i] = size
    return tuple(padded)


def _matrix(rows: int, columns: int) -> tuple[int, int, int, int]:
    return (rows, 1, 1, columns)


@dataclasses.dataclass(frozen=True)
class Spec:
    """What one kernel is specialized to: C++ static constexpr members, and arrays they point to."""

    members: tuple[tuple[str, str, str], ...]  # (type, name, initializer)
    arrays: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (member suffix, float values)
    variant: str = ""  # which core function, for ops with several (SGD, activation gradient, loss)


class _SpecBuilder:
    """Reads one op's tensors and options as its glue's Prepare does."""

    def __init__(self, graph: ir.Graph, op: ir.Op, options_blob: str):
        self.graph, self.op = graph, op
        self.options = schema.decode_blob(options_blob, op.custom_options or b"")

    def tensor(self, index: int, outputs: bool = False) -> ir.Tensor:
        return self.graph.tensors[(self.op.outputs if outputs else self.op.inputs)[index]]

    def grad_type(self, index: int = 0) -> tuple[str, str, str]:
        dtype = self.tensor(index).dtype
        if dtype not in GRAD_TYPES:
            raise TinyTrainError(f"{self.op.kind} has a {dtype.name} gradient; kernels exist for float32 and int8")
        return ("tt_grad_type", "grad_type", GRAD_TYPES[dtype])

    def conv_params(self) -> str:
        o = self.options
        return _struct(o["stride_h"], o["stride_w"], o["dilation_h"], o["dilation_w"], o["pad_top"], o["pad_left"])

    def quantization(self, index: int) -> ir.Quantization:
        tensor = self.tensor(index)
        if tensor.quantization is None:
            raise TinyTrainError(f"{self.op.kind}: input {index} ({tensor.name!r}) has no quantization")
        return tensor.quantization

    def filter_quant(self, index: int) -> tuple[tuple[str, str, str], tuple[str, tuple[float, ...]]]:
        scales = tuple(float(s) for s in self.quantization(index).scale)
        return ("tt_filter_quant_params", "quant", "{%(scales)s, " + f"{len(scales)}}}"), ("Scales", scales)

    def input_quant(self, index: int) -> tuple[str, str, str]:
        q = self.quantization(index)
        return ("tt_quant_params", "quant", _struct(float(q.scale[0]), int(q.zero_point[0])))

    def dims(self, *shapes: tuple[int, int, int, int]) -> tuple[tuple[str, str, str], ...]:
        """grad_output, operand and result as the core's tt_dims."""
        return tuple(("tt_dims", name, _struct(*d)) for name, d in zip(("grad_output", "operand", "result"), shapes, strict=True))


def _layer_spec(b: _SpecBuilder) -> Spec:
    """Spec of a conv or depthwise gradient op: inputs (grad_output, scale, operand, control), output 0 the result."""
    o = b.options
    params = ("tt_conv_grad_params", "params", b.conv_params())
    if "depth_multiplier" in o:
        params = ("tt_depthwise_conv_grad_params", "params", "{" + b.conv_params() + f", {o['depth_multiplier']}}}")
    dims = b.dims(_nhwc(b.tensor(0).shape), _nhwc(b.tensor(2).shape), _nhwc(b.tensor(0, outputs=True).shape))
    if b.op.kind.endswith("INPUT_GRAD"):
        quant, array = b.filter_quant(2)
        return Spec((b.grad_type(), params, quant, *dims), (array,))
    return Spec((b.grad_type(), params, b.input_quant(2), *dims))


_FC_PARAMS = ("tt_conv_grad_params", "params", "tinytrain_core::kFullyConnectedAsConv")


def _fully_connected_input_spec(b: _SpecBuilder) -> Spec:
    batch, outputs = b.tensor(0).shape
    inputs = b.tensor(2).shape[1]
    quant, array = b.filter_quant(2)
    dims = b.dims(_matrix(batch, outputs), _matrix(outputs, inputs), _matrix(batch, inputs))
    return Spec((b.grad_type(), _FC_PARAMS, quant, *dims), (array,))


def _fully_connected_filter_spec(b: _SpecBuilder) -> Spec:
    batch, outputs = b.tensor(0).shape
    channels_to_update, inputs = b.tensor(0, outputs=True).shape
    dims = b.dims(_matrix(batch, outputs), _matrix(batch, inputs), _matrix(channels_to_update, inputs))
    return Spec((b.grad_type(), _FC_PARAMS, b.input_quant(2), *dims))


def _bias_spec(b: _SpecBuilder) -> Spec:
    members = (
        b.grad_type(),
        ("tt_dims", "grad_output", _struct(*_nhwc(b.tensor(0).shape))),
        ("int32_t", "channels_to_update", str(b.tensor(0, outputs=True).shape[0])),
    )
    return Spec(members)


def _pool_spec(b: _SpecBuilder) -> Spec:
    o = b.options
    params = _struct(o["filter_h"], o["filter_w"], o["stride_h"], o["stride_w"], o["pad_top"], o["pad_left"])
    members = (
        b.grad_type(),
        ("tt_pool_params", "params", params),
        ("tt_dims", "grad_output", _struct(*_nhwc(b.tensor(0).shape))),
        ("tt_dims", "grad_input", _struct(*_nhwc(b.tensor(0, outputs=True).shape))),
    )
    return Spec(members)


def _mean_spec(b: _SpecBuilder) -> Spec:
    return Spec((b.grad_type(), ("tt_dims", "grad_input", _struct(*_nhwc(b.tensor(0, outputs=True).shape)))))


def _clamp_range(b: _SpecBuilder) -> tuple[str, str, str]:
    return ("tt_activation_params", "params", _struct(b.options["lower_q"], b.options["upper_q"]))


def _count(b: _SpecBuilder, index: int) -> tuple[str, str, str]:
    return ("int32_t", "count", str(int(np.prod(b.tensor(index).shape))))


def _activation_mask_spec(b: _SpecBuilder) -> Spec:
    return Spec((_clamp_range(b), _count(b, 0)))


def _activation_grad_spec(b: _SpecBuilder) -> Spec:
    """inputs (grad_output, scale, activation: int8 output or uint8 mask, control)."""
    from_mask = b.tensor(2).dtype == np.uint8
    members = (b.grad_type(), _clamp_range(b), _count(b, 0), ("bool", "activation_is_mask", "true" if from_mask else "false"))
    return Spec(members, variant="from_mask" if from_mask else "from_output")


def _grad_add_spec(b: _SpecBuilder) -> Spec:
    return Spec((b.grad_type(), _count(b, 0)))


def _unary_grad_spec(b: _SpecBuilder) -> Spec:
    """inputs (grad_output, scale, saved int8 tensor, control)."""
    q = b.quantization(2)
    saved = _struct(float(q.scale[0]), int(q.zero_point[0]))
    params = "{" + f"{b.options['function']}, {_float(b.options['alpha'])}, {saved}" + "}"
    return Spec((b.grad_type(), ("tt_unary_params", "params", params), _count(b, 0)))


def _mul_grad_spec(b: _SpecBuilder) -> Spec:
    """inputs (grad_output, scale, other operand, control), output this operand's gradient."""
    q = b.quantization(2)
    members = (
        b.grad_type(),
        ("tt_quant_params", "other_quant", _struct(float(q.scale[0]), int(q.zero_point[0]))),
        *(
            ("tt_dims", name, _struct(*_nhwc(tensor.shape)))
            for name, tensor in (("grad_output", b.tensor(0)), ("other", b.tensor(2)), ("grad_input", b.tensor(0, outputs=True)))
        ),
    )
    return Spec(members)


def _loss_spec(b: _SpecBuilder) -> Spec:
    """inputs (logits [batch, classes], labels[, control]), outputs (loss, gradient[, its scale])."""
    logits, quant = b.tensor(0), b.quantization(0)
    batch, classes = logits.shape
    quantized_grad = b.tensor(1, outputs=True).dtype == np.int8
    members = (
        ("tt_softmax_cross_entropy_params", "params", _struct(float(b.options["label_smoothing"]))),
        ("tt_quant_params", "logits_quant", _struct(float(quant.scale[0]), int(quant.zero_point[0]))),
        ("tt_dims", "logits", _struct(batch, 1, 1, classes)),
        ("bool", "quantized_grad", "true" if quantized_grad else "false"),
    )
    return Spec(members, variant="int8_grad" if quantized_grad else "float_grad")


def _sgd_spec(b: _SpecBuilder) -> Spec | None:
    parameter, grad = b.tensor(0), b.tensor(1)
    if len(grad.shape) != len(parameter.shape):  # a bias summed from its layer's output gradient: no specialization
        return None
    axis = b.quantization(0).axis
    shape = parameter.shape
    scales = tuple(float(s) for s in b.quantization(0).scale)
    o = b.options
    dims = (int(np.prod(shape[:axis])), shape[axis], grad.shape[axis], int(np.prod(shape[axis + 1 :])))
    int8 = parameter.dtype == np.int8
    members = (
        b.grad_type(1),
        ("tt_sgd_params", "params", _struct(float(o["learning_rate"]), float(o["momentum"]), o["qas"], o["rounding"])),
        ("tt_sgd_dims", "dims", _struct(*dims)),
        ("int32_t", "num_scales", str(len(scales))),
        ("const float*", "scales", "%(scales)s"),
        ("bool", "parameter_is_int8", "true" if int8 else "false"),
    )
    return Spec(members, (("Scales", scales),), "int8" if int8 else "int32")


@dataclasses.dataclass(frozen=True)
class _OpKind:
    """How one tinytrain op's kernels are generated."""

    struct: str  # its op struct in kernels/tflm/specializable_ops.h, and the stem of spec names
    blob: str  # its options blob in the schema
    spec: Callable[[_SpecBuilder], Spec | None]  # None: the generic kernel runs this op
    header: str  # the core header holding the kernel's body
    # variant -> (generic core function, its parameters with the unused ones unnamed, body over spec S)
    functions: dict[str, tuple[str, str, str]]


_GRADS = "core::WithGradsAs<S::grad_type, S::grad_type>"
_LAYER_PARAMS = (
    "const {params}*, const {quant}*, const tt_dims*, const tt_grad_in* grad_output, const tt_dims*, "
    "const int8_t* {operand}, const tt_dims*, tt_grad_out* {result}"
)
_FC_PARAMETERS = (
    "const {quant}*, const tt_dims*, const tt_grad_in* grad_output, const tt_dims*, const int8_t* {operand}, "
    "const tt_dims*, tt_grad_out* {result}"
)
_SGD_PARAMS = (
    "uint32_t* rng_state, const tt_sgd_params* params, int32_t, const float*, const tt_sgd_dims*, const tt_grad_in* grad, "
    "float* momentum, tt_sgd_accumulator* accumulator, {type}* parameter"
)
_LOSS_PARAMS = (
    "const tt_softmax_cross_entropy_params*, const tt_quant_params*, const tt_dims*, const int8_t* logits, "
    "const int32_t* labels, float* loss, {grad}"
)
# The loss bodies return a status: a label out of range is run-time data.
_LOSS_FLOAT = "return core::SoftmaxCrossEntropy(S{}, logits, labels, loss, grad);"
_LOSS_INT8 = "return core::SoftmaxCrossEntropyQgrad(S{}, logits, labels, loss, grad, grad_scale);"
_ACTIVATION_MASK = "core::ActivationMask(S{}, y, mask);"
_ACTIVATION_FROM_OUTPUT_PARAMS = (
    "const tt_activation_params*, int32_t, const int8_t* y, const tt_grad_in* grad_output, tt_grad_out* grad_input"
)
_ACTIVATION_FROM_OUTPUT = "core::ActivationGradAs<S::grad_type>(S{}, y, *grad_output, *grad_input);"
_ACTIVATION_FROM_MASK_PARAMS = "int32_t, const uint8_t* mask, const tt_grad_in* grad_output, tt_grad_out* grad_input"
_ACTIVATION_FROM_MASK = "core::ActivationGradMaskAs<S::grad_type>(S{}, mask, *grad_output, *grad_input);"
_GRAD_ADD = (
    "core::WriteGradAs<S::grad_type>(*sum, [&](auto& sink) { "
    "core::GradAdd(S{}, core::ReadGradAs<S::grad_type>(*a), core::ReadGradAs<S::grad_type>(*b), sink); }, "
    "core::GradAddReference(*a, *b));"
)
_SGD_BODY = (
    "core::SgdUpdate(S{}, params->learning_rate, rng_state, core::ReadGradAs<S::grad_type>(*grad), momentum, accumulator, "
    "parameter);"
)


def _single_grad_kind(
    struct: str,
    blob: str,
    spec: Callable[[_SpecBuilder], Spec],
    function: str,
    parameters: str,
    body: str,
    header: str = "core/pooling/pool_grad_kernels.h",
) -> _OpKind:
    """A single-gradient backward op whose core function reads grad_output and writes grad_input;
    `body` is the call of the core body over spec S, the gradient reader `grad` and writer `sink`."""
    call = f"{_GRADS}(*grad_output, *grad_input, [&](auto grad, auto& sink) {{ core::{body}; }});"
    return _OpKind(struct, blob, spec, header, {"": (function, parameters, call)})


def _layer_kind(struct: str, spec: Callable[[_SpecBuilder], Spec], function: str, body: str, quant: str) -> _OpKind:
    """A layer-gradient op: inputs (grad_output, its scale, operand, control), output (result[, its scale]).
    The depthwise kernels take depthwise params; fully connected ones none (their body is conv's)."""
    operand, result = ("filter", "grad_input") if "Input" in struct else ("input", "grad_filter")
    params = "tt_depthwise_conv_grad_params" if struct.startswith("Depthwise") else "tt_conv_grad_params"
    template = _FC_PARAMETERS if struct.startswith("FullyConnected") else _LAYER_PARAMS
    parameters = template.format(params=params, quant=quant, operand=operand, result=result)
    # Conv2dFilterGrad's writes know max|g| before the pass in some shapes (as the generic function's do).
    known_max = f", core::{body}MaxAbs(S{{}}, *grad_output, {operand})" if body == "Conv2dFilterGrad" else ""
    call = (
        f"{_GRADS}(*grad_output, *{result}, [&](auto grad, auto& sink) {{ core::{body}(S{{}}, grad, {operand}, sink); }}"
        f"{known_max});"
    )
    blob = re.sub(r"(?<!^)(?=[A-Z])", "_", struct).upper().replace("2D", "_2D")
    return _OpKind(struct, blob, spec, "core/common/layer_grad_kernels.h", {"": (function, parameters, call)})


_FILTER_QUANT, _INPUT_QUANT = "tt_filter_quant_params", "tt_quant_params"
OP_KINDS = {
    f"TT_{kind.blob}": kind
    for kind in (
        _layer_kind("Conv2dInputGrad", _layer_spec, "tt_conv2d_input_grad_s8", "Conv2dInputGrad", _FILTER_QUANT),
        _layer_kind("Conv2dFilterGrad", _layer_spec, "tt_conv2d_filter_grad_s8", "Conv2dFilterGrad", _INPUT_QUANT),
        _layer_kind(
            "DepthwiseConv2dInputGrad",
            _layer_spec,
            "tt_depthwise_conv2d_input_grad_s8",
            "DepthwiseConv2dInputGrad",
            _FILTER_QUANT,
        ),
        _layer_kind(
            "DepthwiseConv2dFilterGrad",
            _layer_spec,
            "tt_depthwise_conv2d_filter_grad_s8",
            "DepthwiseConv2dFilterGrad",
            _INPUT_QUANT,
        ),
        _layer_kind(
            "FullyConnectedInputGrad",
            _fully_connected_input_spec,
            "tt_fully_connected_input_grad_s8",
            "Conv2dInputGrad",
            _FILTER_QUANT,
        ),
        _layer_kind(
            "FullyConnectedFilterGrad",
            _fully_connected_filter_spec,
            "tt_fully_connected_filter_grad_s8",
            "Conv2dFilterGrad",
            _INPUT_QUANT,
        ),
        _single_grad_kind(
            "AveragePool2dGrad",
            "AVERAGE_POOL_2D_GRAD",
            _pool_spec,
            "tt_avg_pool2d_grad",
            "const tt_pool_params*, const tt_dims*, const tt_grad_in* grad_output, const tt_dims*, tt_grad_out* grad_input",
            "AvgPoolGrad(S{}, grad, sink)",
        ),
        _single_grad_kind(
            "MaxPool2dGrad",
            "MAX_POOL_2D_GRAD",
            _pool_spec,
            "tt_max_pool2d_grad_s8",
            "const tt_pool_params*, const tt_dims*, const tt_grad_in* grad_output, const tt_dims*, const int8_t* input, "
            "tt_grad_out* grad_input",
            "MaxPoolGrad(S{}, grad, input, sink)",
        ),
        _single_grad_kind(
            "MeanGrad",
            "MEAN_GRAD",
            _mean_spec,
            "tt_mean_grad",
            "const tt_dims*, const tt_grad_in* grad_output, tt_grad_out* grad_input",
            "MeanGrad(S{}, grad, sink)",
        ),
        _OpKind(
            "SoftmaxCrossEntropy",
            "SOFTMAX_CROSS_ENTROPY",
            _loss_spec,
            "core/loss/softmax_cross_entropy_row.h",
            {  # in the order of SoftmaxCrossEntropyKernel's fields
                "float_grad": ("tt_softmax_cross_entropy_s8", _LOSS_PARAMS.format(grad="float* grad"), _LOSS_FLOAT),
                "int8_grad": (
                    "tt_softmax_cross_entropy_qgrad_s8",
                    _LOSS_PARAMS.format(grad="int8_t* grad, float* grad_scale"),
                    _LOSS_INT8,
                ),
            },
        ),
        _OpKind(
            "ActivationMask",
            "ACTIVATION_MASK",
            _activation_mask_spec,
            "core/activation/activation_pass.h",
            {
                "": (
                    "tt_activation_mask_s8",
                    "const tt_activation_params*, int32_t, const int8_t* y, uint8_t* mask",
                    _ACTIVATION_MASK,
                )
            },
        ),
        _OpKind(
            "ActivationGrad",
            "ACTIVATION_GRAD",
            _activation_grad_spec,
            "core/activation/activation_pass.h",
            {  # in the order of ActivationGradOp::Kernel's fields
                "from_output": ("tt_activation_grad_s8", _ACTIVATION_FROM_OUTPUT_PARAMS, _ACTIVATION_FROM_OUTPUT),
                "from_mask": ("tt_activation_grad_mask", _ACTIVATION_FROM_MASK_PARAMS, _ACTIVATION_FROM_MASK),
            },
        ),
        _single_grad_kind(
            "UnaryGrad",
            "UNARY_GRAD",
            _unary_grad_spec,
            "tt_unary_grad_s8",
            "const tt_unary_params*, int32_t, const int8_t* saved, const tt_grad_in* grad_output, tt_grad_out* grad_input",
            "UnaryGrad(S{}, saved, grad, sink)",
            "core/activation/unary_grad.h",
        ),
        _single_grad_kind(
            "MulGrad",
            "MUL_GRAD",
            _mul_grad_spec,
            "tt_mul_grad_s8",
            "const tt_quant_params*, const tt_dims*, const tt_grad_in* grad_output, const tt_dims*, const int8_t* other, "
            "const tt_dims*, tt_grad_out* grad_input",
            "MulGrad(S{}, grad, other, sink)",
            "core/mul/mul_grad.h",
        ),
        _OpKind(
            "GradAdd",
            "GRAD_ADD",
            _grad_add_spec,
            "core/common/grad_io.h",
            {"": ("tt_grad_add", "int32_t, const tt_grad_in* a, const tt_grad_in* b, tt_grad_out* sum", _GRAD_ADD)},
        ),
        _OpKind(
            "BiasGrad",
            "BIAS_GRAD",
            _bias_spec,
            "core/bias/bias_grad.h",
            {
                "": (
                    "tt_bias_grad",
                    "const tt_dims*, const tt_grad_in* grad_output, int32_t, tt_grad_out* grad_bias",
                    f"{_GRADS}(*grad_output, *grad_bias, [&](auto grad, auto& sink) {{ core::BiasGrad(S{{}}, grad, sink); }});",
                )
            },
        ),
        _OpKind(
            "Sgd",
            "SGD",
            _sgd_spec,
            "core/optimizer/sgd_update.h",
            {
                "int8": ("tt_sgd_update_s8", _SGD_PARAMS.format(type="int8_t"), _SGD_BODY),
                "int32": ("tt_sgd_update_s32", _SGD_PARAMS.format(type="int32_t"), _SGD_BODY),
            },
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One generated kernel: its spec struct and its core function."""

    op: str  # the custom op, e.g. "TT_CONV_2D_INPUT_GRAD"
    name: str  # spec struct, e.g. "Conv2dInputGrad0"
    function: str  # e.g. "tt_conv2d_input_grad_s8_spec0"
    spec: Spec
    file: str  # e.g. "kernel_conv2d_input_grad_0.cc"


@dataclasses.dataclass(frozen=True)
class GeneratedCode:
    """Everything codegen writes for one model."""

    model_hash: str  # first 16 hex digits of the training model's SHA-256
    builtins: list[str]  # builtin ops the model uses, in first-use order
    custom_ops: list[str]  # tinytrain ops the model uses, in first-use order
    kernels: list[Kernel]
    files: dict[str, str]  # file name -> contents

    @property
    def resolver_size(self) -> int:
        return len(self.builtins) + len(self.custom_ops)

    @property
    def registerer(self) -> str:
        """The host registerer's name: unique per model, so several generated plugins can share a process."""
        return f"TinyTrainRegisterGeneratedOps_{self.model_hash}"


def _kernels(graph: ir.Graph) -> list[Kernel]:
    kernels: list[Kernel] = []
    seen: dict[tuple[str, Spec], Kernel] = {}
    for position, op in enumerate(graph.ops):
        kind = OP_KINDS.get(op.kind)
        if kind is None:
            continue
        try:
            spec = kind.spec(_SpecBuilder(graph, op, kind.blob))
        except (IndexError, ValueError) as error:  # an op edited out of the shape the compiler emits
            raise TinyTrainError(f"op {position} ({op.kind}) does not have the operands its kernel reads: {error}") from None
        if spec is None or (op.kind, spec) in seen:
            continue
        index = sum(k.op == op.kind for k in kernels)
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", kind.struct).lower()
        function = f"{kind.functions[spec.variant][0]}_spec{index}"
        kernel = Kernel(op.kind, f"{kind.struct}{index}", function, spec, f"kernel_{snake}_{index}.cc")
        seen[(op.kind, spec)] = kernel
        kernels.append(kernel)
    return kernels


def _banner(model_hash: str, what: str) -> str:
    return f"// Generated by {GENERATOR} for the training model with SHA-256 {model_hash}... Do not edit.\n// {what}\n"


def _guard(name: str) -> str:
    return "TINYTRAIN_GENERATED_" + re.sub(r"\W", "_", name).upper() + "_"


def _kernels_header(kernels: list[Kernel], model_hash: str) -> str:
    lines = [
        _banner(model_hash, "The values each kernel is specialized to, and the kernels (no TFLM include)."),
        f"#ifndef {_guard(KERNELS_HEADER)}",
        f"#define {_guard(KERNELS_HEADER)}",
        "",
        '#include "core/common/conv_grad_loops.h"',
        '#include "core/tt_functions.h"',
        "",
        "namespace tinytrain_generated {",
    ]
    for kernel in kernels:
        substitutions = {}
        lines.append("")
        for suffix, values in kernel.spec.arrays:
            array = f"k{kernel.name}{suffix}"
            substitutions[suffix.lower()] = array
            lines.append(f"inline constexpr float {array}[{len(values)}] = {_struct(*values)};")
        lines.append(f"struct {kernel.name} {{")
        for ctype, name, value in kernel.spec.members:
            lines.append(f"  static constexpr {ctype} {name} = {value % substitutions};")
        lines.append("};")
    lines += ["", "}  // namespace tinytrain_generated", "", 'extern "C" {']
    for kernel in kernels:
        _, parameters, _ = OP_KINDS[kernel.op].functions[kernel.spec.variant]
        lines.append(f"tt_status {kernel.function}({parameters});")
    lines += ['}  // extern "C"', "", f"#endif  // {_guard(KERNELS_HEADER)}", ""]
    return "\n".join(lines)


def _kernel_source(kernel: Kernel, model_hash: str) -> str:
    _, parameters, body = OP_KINDS[kernel.op].functions[kernel.spec.variant]
    return "\n".join(
        [
            _banner(model_hash, f"{kernel.op} specialized to {kernel.name}: the generic body with these values folded in."),
            f'#include "{KERNELS_HEADER}"',
            "",
            f'#include "{OP_KINDS[kernel.op].header}"',
            '#include "core/common/grad_io.h"',
            "",
            "namespace core = tinytrain_core;",
            "",
            "// Called only after the glue's Prepare matched the node to the spec: no argument is checked again.",
            f'extern "C" tt_status {kernel.function}({parameters}) {{',
            f"  using S = tinytrain_generated::{kernel.name};",
            f"  {body}",
            *([] if body.startswith("return ") else ["  return TT_SUCCESS;"]),
            "}",
            "",
        ]
    )


def _custom_registration(op: str, generated: set[str]) -> str:
    name = op.removeprefix("TT_")
    return f"tinytrain_generated::Register_{name}" if op in generated else f"tinytrain::Register_{name}"


def _ops_header(custom_ops: list[str], kernels: list[Kernel], model_hash: str) -> str:
    generated = {k.op for k in kernels}
    guard = _guard(OPS_HEADER)
    lines = [
        _banner(
            model_hash, "The model's tinytrain ops: the generated registrations where there are kernels, else the generic ones."
        ),
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        '#include "tflm/tinytrain_ops.h"',
        "",
        "namespace tinytrain_generated {",
        "",
    ]
    lines += [f"const TFLMRegistration* Register_{op.removeprefix('TT_')}();" for op in custom_ops if op in generated]
    lines += ["", "// Every tinytrain op the model uses, as a resolver's AddCustom takes it."]
    lines += ["inline constexpr tinytrain::CustomOp kCustomOps[] = {"]
    lines += [f'    {{"{op}", {_custom_registration(op, generated)}}},' for op in custom_ops]
    lines += ["};", "", "}  // namespace tinytrain_generated", "", f"#endif  // {guard}", ""]
    return "\n".join(lines)


def _ops_source(kernels: list[Kernel], model_hash: str) -> str:
    lines = [
        _banner(model_hash, "Registrations whose Prepare runs every generic check, then selects the node's generated kernel."),
        f'#include "{OPS_HEADER}"',
        "",
        f'#include "{KERNELS_HEADER}"',
        '#include "tflm/specializable_ops.h"',
        "",
        "namespace tinytrain_generated {",
        "namespace {",
    ]
    registrations = []
    for op, kind in OP_KINDS.items():
        mine = [k for k in kernels if k.op == op]
        if not mine:
            continue
        struct = f"tinytrain::{kind.struct}Op"
        entries = [f"    {{{struct}::Matches<{k.name}>, {_kernel_pointer(kind, k)}}}," for k in mine]
        lines += [
            "",
            f"constexpr tinytrain::Specialization<{struct}> k{kind.struct}Kernels[] = {{",
            *entries,
            "};",
            "",
            f"TfLiteStatus Prepare{kind.struct}(TfLiteContext* context, TfLiteNode* node) {{",
            f"  return tinytrain::PrepareSpecialized(context, node, k{kind.struct}Kernels);",
            "}",
        ]
        registrations += [
            "",
            f"const TFLMRegistration* Register_{op.removeprefix('TT_')}() {{",
            f"  static const TFLMRegistration registration = tinytrain::RegisterSpecializable<{struct}>(Prepare{kind.struct});",
            "  return &registration;",
            "}",
        ]
    lines += ["", "}  // namespace", *registrations, "", "}  // namespace tinytrain_generated", ""]
    return "\n".join(lines)


def _kernel_pointer(kind: _OpKind, kernel: Kernel) -> str:
    """The op struct's Kernel value: the function, or for an op with variants (SGD's parameter types) one
    field per variant in `functions` order, null but for the kernel's."""
    if len(kind.functions) == 1:
        return kernel.function
    return "{" + ", ".join(kernel.function if variant == kernel.spec.variant else "nullptr" for variant in kind.functions) + "}"


def _resolver_header(builtins: list[str], custom_ops: list[str], model_hash: str) -> str:
    guard = _guard(RESOLVER_HEADER)
    size = len(builtins) + len(custom_ops)
    lines = [
        _banner(model_hash, "Firmware (real TFLM headers): the op resolver with exactly the ops this model uses."),
        "//",
        "//   tinytrain_generated::ModelOpResolver resolver;",
        "//   if (tinytrain_generated::AddModelOps(resolver) != kTfLiteOk) { /* TFLM printed why */ }",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        f'#include "{OPS_HEADER}"',
        "",
        "namespace tinytrain_generated {",
        "",
        f"// {len(builtins)} builtin ops + {len(custom_ops)} tinytrain ops.",
        f"constexpr unsigned int kModelOpCount = {size};",
        "using ModelOpResolver = tflite::MicroMutableOpResolver<kModelOpCount>;",
        "",
        "inline TfLiteStatus AddModelOps(ModelOpResolver& resolver) {",
    ]
    lines += [f"  if (resolver.{resolver_method(b)}() != kTfLiteOk) return kTfLiteError;" for b in builtins]
    lines += [
        "  for (const tinytrain::CustomOp& op : kCustomOps) {",
        "    if (resolver.AddCustom(op.name, op.registration()) != kTfLiteOk) return kTfLiteError;",
        "  }",
        "  return kTfLiteOk;",
        "}",
        "",
        "}  // namespace tinytrain_generated",
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)


def _host_registerer(registerer: str, model_hash: str) -> str:
    return "\n".join(
        [
            _banner(model_hash, "Host only: the registerer the pinned tflite-micro wheel calls by name."),
            "#if !defined(TINYTRAIN_REAL_TFLM)",
            "",
            f'#include "{OPS_HEADER}"',
            '#include "tflm/host_resolver.h"',
            "",
            "// Interpreter(custom_op_registerers=[TinyTrainGeneratedRegisterer()]) on this library.",
            f"TT_EXPORT bool {registerer}(void* resolver) {{",
            "  const auto& ops = tinytrain_generated::kCustomOps;",
            "  return tinytrain::AddToHostResolver(resolver, ops, sizeof(ops) / sizeof(ops[0]));",
            "}",
            "",
            "// The registerer's name, unique per model: several generated libraries can share a process.",
            f'TT_EXPORT const char* TinyTrainGeneratedRegisterer(void) {{ return "{registerer}"; }}',
            "",
            "#endif  // !defined(TINYTRAIN_REAL_TFLM)",
            "",
        ]
    )


def generate(model: bytes) -> GeneratedCode:
    """The sources for a training model (from tinytrain_tflm.compile)."""
    graph = read.read_graph(model)
    if loss.TRAINING_METADATA not in graph.metadata:
        raise TinyTrainError("not a tinytrain training model (no training metadata); compile it first")
    model_hash = hashlib.sha256(bytes(model)).hexdigest()[:16]
    builtins = list(dict.fromkeys(op.kind for op in graph.ops if not op.custom))
    custom_ops = list(dict.fromkeys(op.kind for op in graph.ops if op.custom))
    kernels = _kernels(graph)
    code = GeneratedCode(model_hash, builtins, custom_ops, kernels, {})
    files = {KERNELS_HEADER: _kernels_header(kernels, model_hash)}
    files.update({k.file: _kernel_source(k, model_hash) for k in kernels})
    files[OPS_HEADER] = _ops_header(custom_ops, kernels, model_hash)
    files[OPS_SOURCE] = _ops_source(kernels, model_hash)
    files[RESOLVER_HEADER] = _resolver_header(builtins, custom_ops, model_hash)
    files[HOST_REGISTERER] = _host_registerer(code.registerer, model_hash)
    manifest = {
        "generator": GENERATOR,
        "model_sha256": hashlib.sha256(bytes(model)).hexdigest(),
        "registerer": code.registerer,
        "resolver_size": code.resolver_size,
        "builtins": builtins,
        "custom_ops": custom_ops,
        "kernels": {k.name: k.op for k in kernels},
        "files": sorted([*files, MANIFEST]),
    }
    files[MANIFEST] = json.dumps(manifest, indent=2) + "\n"
    return dataclasses.replace(code, files=files)


def _previous_files(directory: Path) -> set[str]:
    """The files a previous codegen wrote in `directory`; refuses a directory holding anything else."""
    present = {p.name for p in directory.iterdir()}
    if not present:
        return set()
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        written = set(manifest["files"]) if manifest.get("generator") == GENERATOR else None
    except (OSError, ValueError, KeyError, TypeError):
        written = None
    if written is None:
        raise TinyTrainError(f"{directory} is not empty and not a previous codegen output; choose an empty or new directory")
    others = sorted(present - written)
    if others:
        raise TinyTrainError(f"{directory} holds files codegen did not write ({', '.join(others[:3])}); choose another directory")
    return written


def write(model: bytes, directory: str | Path) -> GeneratedCode:
    """Generates the sources and writes them into `directory` (new, empty, or a previous codegen output)."""
    code = generate(model)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise TinyTrainError(f"{directory} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        stale = _previous_files(directory) - set(code.files)
        for name in stale:
            (directory / name).unlink()
        for name, text in code.files.items():
            (directory / name).write_text(text)
    except OSError as error:
        raise TinyTrainError(f"cannot write into {directory}: {error.strerror}") from None
    return code

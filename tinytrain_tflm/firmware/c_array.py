"""The training model as firmware source: an aligned C array and a header with what a firmware needs to run it.

The header gives the tensor arena size from the memory plan, the positions of
the sample, label and control inputs and of the loss and logits outputs (for
MicroInterpreter::input(i) / output(i)), their tensor indices, and the number
of classes. examples/cpp/main.cc and the Arduino sketch read nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

from .. import target as targets
from ..backend import schema_generated
from ..errors import TinyTrainError
from ..frontend import ir, read
from ..passes.loss import TRAINING_METADATA
from ..plan import memory, tiled_stage
from ..runtime import interpreter
from ..runtime.trainer import compiled_learning_rate, sample_tensor, training_metadata

# TFLM reads the model in place; 16 bytes satisfies every alignment its flatbuffer accessors and kernels assume.
MODEL_ALIGNMENT = 16
SOURCE_SUFFIXES = (".cc", ".cpp")
BYTES_PER_LINE = 16
# MicroMutableOpResolver methods whose names do not follow the op name word by word.
IRREGULAR_RESOLVER_NAMES = {"UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM"}
# What the label input holds, per TRAINING_METADATA loss.
LABEL_INPUTS = {
    schema_generated.LOSS_SOFTMAX_CROSS_ENTROPY: "int32 [batch], each sample's class",
    schema_generated.LOSS_BINARY_CROSS_ENTROPY: "int32 [batch], each sample's class, 0 or 1",
    schema_generated.LOSS_MEAN_SQUARED_ERROR: (
        "int8 target of the output's shape, quantized like the output (for an autoencoder, the sample itself)"
    ),
}


@dataclasses.dataclass(frozen=True)
class ArenaSize:
    """Tensor arena bytes for 64-bit and 32-bit targets, and how they were obtained."""

    bytes_64bit: int
    bytes_32bit: int
    method: str  # "measured" or "estimated": the 64-bit figure
    method_32bit: str = ""  # how the 32-bit figure was obtained, in words
    bytes_arduino: int = 0  # what the Arduino_TensorFlowLite library's TFLM needs (see arduino_tflm)
    method_arduino: str = ""  # how that figure was obtained, in words

    @staticmethod
    def headroom(size: int) -> int:
        """Extra bytes the header adds: 1 KiB plus 1/32 of the arena, 16-byte aligned. It absorbs TFLM
        version drift in bookkeeping and Prepare's temporary tensors."""
        return -(-(1024 + size // 32) // MODEL_ALIGNMENT) * MODEL_ALIGNMENT


def arena_size(
    model: bytes, method: str = "measured", device_target: targets.Target | None = None, arduino: bool = False
) -> ArenaSize:
    """`measured`: the exact minimum found by bisection in the TFLM x86-64 runtime, and for 32 bits the
    minimum bisected on the emulated board of `device_target` (default: the model's own target) when
    that is a Cortex-M target and its tools and TFLM's sources are there, else the projection (which
    leaves out optimized kernels' scratch buffers); with `arduino`, also the Arduino library's need,
    bisected on the host (arduino_tflm), else estimated. `estimated`: the memory planner's estimate for
    both pointer sizes, without running anything."""
    graph = read.read_graph(model)
    if method == "estimated":
        x86, cortex_m = (memory.estimate(graph, bookkeeping).total for bookkeeping in (memory.X86_64, memory.CORTEX_M))
        arduino_figure = arduino_estimate(graph, x86), f"estimated, {ARDUINO_ESTIMATE} (nothing was run)"
        how_32bit = "the memory planner's estimate for 4-byte pointers (nothing was run)"
        return ArenaSize(x86, cortex_m, method, how_32bit, *arduino_figure)
    if method != "measured":
        raise TinyTrainError(f'arena size method must be "measured" or "estimated", got {method!r}')
    measured = interpreter.minimum_arena_size(model)
    if arduino:
        arduino_figure = arduino_minimum(model, graph, measured)
    else:
        arduino_figure = arduino_estimate(graph, measured), f"estimated, {ARDUINO_ESTIMATE} (export --arduino-tflm measures it)"
    bytes_32bit, how = device_minimum(model, device_target or targets.of_model(graph))
    if bytes_32bit is None:
        projected = memory.project_32bit(measured, graph)
        return ArenaSize(measured, projected, method, f"projected from x86-64 ({how})", *arduino_figure)
    return ArenaSize(measured, bytes_32bit, method, how, *arduino_figure)


# The Arduino library's TFLM holds a temporary TfLiteTensor (112 B on x86-64, aligned) for each tensor an op reads
# in Prepare, at most all of its inputs and outputs, on top of what the pinned TFLM needs.
ARDUINO_TENSOR_BYTES = 128
ARDUINO_ESTIMATE = f"the x86-64 figure plus {ARDUINO_TENSOR_BYTES} B per tensor of the op with the most, and 1 KiB"


def arduino_estimate(graph: ir.Graph, bytes_64bit: int) -> int:
    """An estimate of the Arduino library's need without running its TFLM: `bytes_64bit` plus Prepare's temporary
    tensors for the op with the most inputs and outputs, plus 1 KiB for that TFLM's other bookkeeping."""
    tensors = max((len({t for t in (*op.inputs, *op.outputs) if t >= 0}) for op in graph.ops), default=0)
    return bytes_64bit + ARDUINO_TENSOR_BYTES * tensors + 1024


def arduino_minimum(model: bytes, graph: ir.Graph, bytes_64bit: int) -> tuple[int, str]:
    """(the Arduino library's need measured by bisection on the host, how), or the estimate when that library's
    sources or a host compiler are missing."""
    from . import arduino_tflm, device

    try:
        src = device.locate_arduino_tflm()
        return arduino_tflm.minimum_arena(model, src, bytes_64bit), (
            "the exact minimum of its AllocateTensors, measured by bisection on x86-64\n// (tinytrain_tflm.firmware.arduino_tflm)"
        )
    except TinyTrainError as error:
        return arduino_estimate(graph, bytes_64bit), f"estimated, {ARDUINO_ESTIMATE}; not measured: {error}"


def device_minimum(model: bytes, device_target: targets.Target) -> tuple[int | None, str]:
    """(the minimum arena bisected on the target's emulated board, how) or (None, why it was not)."""
    from . import device

    if not device_target.emulated:
        return None, f"target {device_target.name} has no emulated board; --target cortex-m7 (or m4) measures on one"
    missing = device.missing_tools()
    if missing:
        return None, f"to measure on {device_target.name}, install {', '.join(missing)}: apt-get install {device.TOOL_PACKAGES}"
    try:
        size = device.minimum_arena(device.build_firmware(model, device_target))
    except TinyTrainError as error:
        return None, f"not measured on {device_target.name}: {error}"
    return size, f"measured on {device_target.label}, emulated (QEMU {device_target.board.qemu_machine})"


# C++ keywords and alternative tokens (ISO C++20, [lex.key] and [lex.digraph]): none can name a namespace.
CPP_KEYWORDS = frozenset(
    """alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class
    compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype
    default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline
    int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register
    reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template
    this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t
    while xor xor_eq""".split()
)


def c_identifier(text: str) -> str:
    """`text` as a C++ identifier (a namespace name), or an error naming the problem."""
    name = re.sub(r"\W", "_", text)
    if not re.fullmatch(r"[A-Za-z_]\w*", name, flags=re.ASCII):
        raise TinyTrainError(f"cannot make a C++ name of {text!r}; pass --c-name NAME")
    if name in CPP_KEYWORDS:
        raise TinyTrainError(f"{name!r} is a C++ keyword and cannot name the namespace; pass another --c-name")
    return name


def header_path(source: Path) -> Path:
    if source.suffix not in SOURCE_SUFFIXES:
        raise TinyTrainError(f"--c-array takes a C++ source path ending in .cc or .cpp (the header goes beside it), got {source}")
    return source.with_suffix(".h")


def c_array_files(model: bytes, source: Path, name: str, arena: ArenaSize, origin: str) -> tuple[str, str]:
    """(source text, header text) defining namespace `name` with kData, kSize and the training constants;
    `origin` is the command line that made them, for the generated-file banner."""
    graph = read.read_graph(model)
    metadata = training_metadata(graph)
    device_target = targets.of_model(graph)
    streams = tiled_stage.streamed_sample(graph) is not None
    roles = ("label", "control") if streams else ("input", "label", "control")
    inputs = {"input": -1} | {role: _position(graph.inputs, metadata[f"{role}_tensor"], role, "input") for role in roles}
    outputs = {role: _position(graph.outputs, metadata[f"{role}_tensor"], role, "output") for role in ("loss", "logits")}
    learning_rate = compiled_learning_rate(graph) or 0.0
    sample = sample_tensor(graph, metadata)
    sample_scale, sample_zero_point = (
        (float(sample.quantization.scale[0]), int(sample.quantization.zero_point[0])) if sample.quantization else (0.0, 0)
    )
    updates = [op for op in graph.ops if op.kind == schema_generated.SGD]
    accumulates = bool(updates) and all(op.inputs[6] >= 0 for op in updates)
    builtins = sorted({resolver_suffix(op.kind) for op in graph.ops if not op.custom})
    guard = f"TINYTRAIN_{name.upper()}_H_"
    banner = f"// Generated by `tinytrain-tflm {origin}`; do not edit.\n"
    platform_bytes = "(sizeof(void*) == 8 ? kArenaBytes64 : kArenaBytes32)"
    header = f"""{banner}// A tinytrain training model (forward, loss, backward, optimizer) for
// tflite::GetModel({name}::kData); register tinytrain's ops with tinytrain::AddTinyTrainOps.
#ifndef {guard}
#define {guard}

namespace {name} {{

// The .tflite bytes, {MODEL_ALIGNMENT}-byte aligned (TFLM reads the model in place).
extern const unsigned char kData[];
constexpr unsigned int kSize = {len(model)};

// Compiled for {device_target.label}: the kernels its overlapping buffers were planned for.
constexpr char kTarget[] = "{device_target.name}";
constexpr char kTargetKernels[] = "{device_target.kernels}";

// Tensor arena bytes ({arena.method}). kArenaBytes64: {_arena_comment(arena)}
// kArenaBytes32: {arena.method_32bit}.
// kArenaSize adds headroom (1 KiB + 1/32, for TFLM version drift) to the figure for the pointer size
// being compiled, rounded up to whole 16-byte units. Never give TFLM less than the minimum: with TFLM
// 90b983c an undersized arena can crash the device (its planner computes a negative size) instead of
// failing AllocateTensors.
constexpr unsigned int kArenaBytes64 = {arena.bytes_64bit};
constexpr unsigned int kArenaBytes32 = {arena.bytes_32bit};
constexpr unsigned int kArenaSize = ({platform_bytes} + {ArenaSize.headroom(arena.bytes_64bit)} + 15) / 16 * 16;
// The Arduino_TensorFlowLite library (February 2023 release, which the sketch builds against) has an older TFLM
// that needs more while the ops prepare: each tensor a kernel reads in Prepare holds a temporary TfLiteTensor
// until that op is prepared. Below kArduinoArenaBytes its AllocateTensors crashes instead of failing, so check
// an arena against it before AllocateTensors (the sketch and examples/cpp do). kArduinoArenaBytes:
// {arena.method_arduino}. A 32-bit board needs no more, unless CMSIS-NN's DSP kernels ask for scratch:
// kArduinoArenaSize, the arena to give, adds the same headroom as kArenaSize.
constexpr unsigned int kArduinoArenaBytes = {arena.bytes_arduino};
constexpr unsigned int kArduinoArenaSize = ({arena.bytes_arduino} + {ArenaSize.headroom(arena.bytes_arduino)} + 15) / 16 * 16;

// Positions for MicroInterpreter::input(i) and output(i). Control word: 0 predicts,
// TT_CONTROL_BACKWARD (1) computes gradients, TT_CONTROL_BACKWARD | TT_CONTROL_UPDATE (3) trains.
// Write the sample, the label and the control word before every Invoke(): the arena plan reuses
// input bytes once they are read (a tiled first stage frees its input's rows as it goes). After a
// prediction (control 0) the loss output holds NaN: no loss was computed.
// kStreamsSample (compile --stream-input): the sample is no input (kSampleInput is -1) and no arena
// tensor. The tiled first stage reads it during Invoke() from tinytrain::SetStreamedInput
// (kernels/tflm/tinytrain_ops.h), set before every Invoke(): kSampleValues int8 values (flash, a
// constant, a camera's frame buffer; RAM outside the arena still counts as RAM) or a row reader.
constexpr bool kStreamsSample = {"true" if streams else "false"};
constexpr int kSampleInput = {inputs["input"]};
constexpr int kLabelInput = {inputs["label"]};
constexpr int kControlInput = {inputs["control"]};
// The learning rate, float32 [1]: a variable, so it keeps its value across invokes. 0, its value after
// AllocateTensors() and Reset(), means the compiled kLearningRate; write a value > 0 (e.g. a schedule's)
// to train with it instead, without recompiling.
constexpr int kLearningRateInput = {len(graph.inputs) - 1};
constexpr float kLearningRate = {learning_rate!r}f;
// Mini-batches, in a model compiled with gradient accumulators (kAccumulates): control
// TT_CONTROL_BACKWARD | TT_CONTROL_ACCUMULATE (5) adds a sample's gradients, and the next
// TT_CONTROL_BACKWARD | TT_CONTROL_UPDATE (3) steps with the mean over those samples and itself.
constexpr bool kAccumulates = {"true" if accumulates else "false"};
constexpr int kLossOutput = {outputs["loss"]};
constexpr int kLogitsOutput = {outputs["logits"]};

// Tensor indices in subgraph 0 (the model's {TRAINING_METADATA} metadata).
constexpr int kSampleTensor = {metadata["input_tensor"]};
constexpr int kLabelTensor = {metadata["label_tensor"]};
constexpr int kControlTensor = {metadata["control_tensor"]};
constexpr int kLossTensor = {metadata["loss_tensor"]};
constexpr int kLogitsTensor = {metadata["logits_tensor"]};
constexpr int kNumClasses = {metadata["num_classes"]};
// Values in one sample (the sample input's elements): what a firmware's sample buffers hold.
constexpr unsigned int kSampleValues = {math.prod(sample.shape)};
// The sample's quantization, real = kSampleScale * (q - kSampleZeroPoint): how a firmware turns its
// readings (or a camera's pixels) into the int8 values it writes or streams.
constexpr float kSampleScale = {sample_scale!r}f;
constexpr int kSampleZeroPoint = {sample_zero_point};
// The loss (TT_LOSS_* in tt_schema_generated.h), which says what the label input holds:
// {LABEL_INPUTS[metadata["loss"]]}.
constexpr int kLoss = {metadata["loss"]};

// The builtin ops the model uses, as MicroMutableOpResolver::Add<Op> names. Size the resolver with
// kNumBuiltinOps + tinytrain::kNumOps and add them with
//   #define ADD_BUILTIN(OP) resolver.Add##OP();
//   {name.upper()}_FOR_EACH_BUILTIN(ADD_BUILTIN)
#define {name.upper()}_FOR_EACH_BUILTIN(X) {" ".join(f"X({op})" for op in builtins)}
constexpr unsigned int kNumBuiltinOps = {len(builtins)};

}}  // namespace {name}

#endif  // {guard}
"""
    rows = (", ".join(f"0x{b:02x}" for b in model[i : i + BYTES_PER_LINE]) for i in range(0, len(model), BYTES_PER_LINE))
    body = ",\n    ".join(rows)
    source_text = f"""{banner}#include "{header_path(source).name}"

namespace {name} {{

alignas({MODEL_ALIGNMENT}) const unsigned char kData[] = {{
    {body}}};

}}  // namespace {name}
"""
    return source_text, header


def _position(tensors: list[int], tensor: int, role: str, kind: str) -> int:
    if tensor not in tensors:
        raise TinyTrainError(f"training metadata names tensor {tensor} as the {role}, but it is not a graph {kind}")
    return tensors.index(tensor)


def _arena_comment(arena: ArenaSize) -> str:
    if arena.method == "measured":
        return "the exact minimum, measured by bisection in TFLM on x86-64\n// (the pinned tflite-micro wheel)."
    return "the memory planner's estimate for x86-64 (TFLM was not run)."


def resolver_suffix(builtin: str) -> str:
    """MicroMutableOpResolver's Add method suffix for a builtin op: CONV_2D -> Conv2D, MAX_POOL_2D -> MaxPool2D."""
    if builtin in IRREGULAR_RESOLVER_NAMES:
        return IRREGULAR_RESOLVER_NAMES[builtin]
    return "".join(part if part[0].isdigit() else part.capitalize() for part in builtin.split("_"))

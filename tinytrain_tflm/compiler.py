"""compile(): an int8 .tflite in, a training model out (forward, loss, backward, optimizer).

Op order in the training model:
  TT_INIT_VARIABLES (copies trainable parameters to RAM once)
  forward ops, reading trainable parameters from their variables, each
    followed by the ACTIVATION_MASKs backward needs of its output
  TT_SOFTMAX_CROSS_ENTROPY
  backward ops in reverse forward order, each TT_SGD right after the last op
    that reads its parameter's gradient or old value
Inputs: sample, int32 label, int32 control (CONTROL_* bits: 0 predicts,
CONTROL_BACKWARD computes gradients, both bits train), and the float32 [1]
learning-rate variable every TT_SGD reads (0, as TFLM leaves a variable, means
the compiled learning rate). Outputs: loss, logits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import target as targets
from .backend import emit, schema, schema_generated
from .errors import TinyTrainError
from .frontend import edges, ir, read
from .options import EVERY_SAVING, Ablation, CompileOptions, MemoryOptions
from .passes import fusion, loss, partial, requantization, schedule, tiling
from .passes.autodiff import BackwardBuilder, Grad, build_backward
from .passes.autodiff.masks import use_activation_masks
from .passes.optimizer import SGD
from .passes.scheme import UpdateScheme, conv_like_layers
from .plan import memory

# The learning-rate input's name: a variable, so its value persists across invokes and TFLM zeroes it
# (the compiled learning rate) at AllocateTensors and Reset; an input, so a firmware reaches it with
# MicroInterpreter::input() like the others.
LEARNING_RATE_TENSOR = "tinytrain/learning_rate"


@dataclasses.dataclass(frozen=True)
class TrainingModel:
    """A compiled training model: a .tflite that stock TFLM runs with tinytrain's ops registered."""

    bytes: bytes

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.bytes)

    @classmethod
    def load(cls, path: str | Path) -> TrainingModel:
        data = Path(path).read_bytes()
        graph = read.read_graph(data)
        if loss.TRAINING_METADATA not in graph.metadata:
            raise TinyTrainError(
                f"{path} is not a tinytrain training model (no {loss.TRAINING_METADATA} metadata); compile it first"
            )
        return cls(data)


def _untiled_stream_reason(graph: ir.Graph, trainable: set[int]) -> str:
    """Why stream_input cannot stream a model that tiles 'auto' leaves untiled."""
    if not tiling.stage_lengths(graph, trainable):
        return (
            "stream_input needs a frozen first stage to tile and this model has none: its first layer trains, "
            "or it does not start with CONV_2D / DEPTHWISE_CONV_2D on its input"
        )
    return (
        "stream_input: tiles 'auto' leaves this model's first stage untiled (tiling it saves too little or costs too "
        "much work); give a grid to stream anyway, e.g. --tile 2x2 (tiles=(2, 2))"
    )


def _check_int8(graph: ir.Graph) -> None:
    for position, op in enumerate(graph.ops):
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and graph.tensors[op.inputs[1]].dtype != np.int8:
            weights = graph.tensors[op.inputs[1]]
            raise TinyTrainError(
                f"op {position} ({op.kind}) has {weights.dtype.name} weights {weights.name!r}: "
                "tinytrain trains full-integer (int8) models; convert with tinytrain_tflm.frontend.convert.keras_to_int8"
            )


def _add_missing_biases(graph: ir.Graph) -> None:
    """A conv-like layer without bias gets a zero int32 one (scale s_x * s_w), so its bias can train."""
    for layer in conv_like_layers(graph):
        if layer.bias >= 0:
            continue
        op = graph.ops[layer.op]
        x, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        scale = (x.quantization.scale[0] * w.quantization.scale).astype(np.float32)
        quant = ir.Quantization(scale, np.zeros(len(scale), np.int64), 0)
        bias = ir.Tensor(f"{w.name}/bias", (layer.channels,), np.dtype(np.int32), quant, np.zeros(layer.channels, np.int32))
        op.inputs = op.inputs[:2] + [graph.add_tensor(bias)]


def _move_to_variables(graph: ir.Graph, forward: list[int], trainable: dict[int, int]) -> tuple[dict[int, int], list[int]]:
    """Forward ops read each trainable parameter from a RAM variable; returns the variables' trainable
    map and the (source, variable) pairs for TT_INIT_VARIABLES."""
    variables, pairs = {}, []
    for source, channels in trainable.items():
        tensor = graph.tensors[source]
        variable = graph.add_tensor(dataclasses.replace(tensor, name=f"{tensor.name}/trainable", data=None, is_variable=True))
        for position in forward:
            graph.ops[position].inputs = [variable if t == source else t for t in graph.ops[position].inputs]
        variables[variable] = channels
        pairs += [source, variable]
    return variables, pairs


_DEFAULTS = CompileOptions()  # compile()'s keyword defaults are CompileOptions' own


def compile(
    model: bytes,
    update: str | dict | UpdateScheme = "last",
    optimizer: SGD | None = None,
    *,
    gradient: str = _DEFAULTS.gradient,
    label_smoothing: float = _DEFAULTS.label_smoothing,
    activation_masks: bool = _DEFAULTS.activation_masks,
    tiles: tuple[int, int] | str | None = _DEFAULTS.memory.tiles,
    overlap_buffers: bool = _DEFAULTS.memory.overlap_buffers,
    flash_requantization: bool = _DEFAULTS.memory.flash_requantization,
    stream_input: bool = _DEFAULTS.memory.stream_input,
    target: str | targets.Target = "host",
    loss: str = _DEFAULTS.loss,
) -> TrainingModel:
    """Compiles an int8 model into a training model.

    The defaults are the smallest arena: int8 gradients, the first stage tiled, requantization in flash.

    update: which parameters train (see tinytrain_tflm.passes.scheme). gradient:
    "int8" (each gradient int8 with a run-time scale: a quarter of the memory) or
    "float32" (the reference). activation_masks: keep 1 bit per
    element for ReLU backward where the activation itself is not needed.
    tiles: run the frozen first stage in patches (tinytrain_tflm.passes.tiling), e.g.
    (3, 2) rows x columns, "auto" for the grid with the smallest estimated arena, or
    None for no tiling (the patches' overlap is computed again: more instructions).
    overlap_buffers: let an op write its output over an input it reads for the last time
    (tinytrain_tflm.plan.overlap), with the head planned ahead in the model's OfflineMemoryAllocation
    metadata; assumes kernels that produce output rows in order (TFLM's reference kernels and
    tinytrain's do). False leaves planning to TFLM.
    flash_requantization: run the forward convs as tinytrain's TT_CONV_2D and
    TT_DEPTHWISE_CONV_2D, which read each channel's requantization from the model
    (tinytrain_tflm.passes.requantization) instead of keeping 8 bytes per output channel
    in the arena; bit-identical, but slower on a device than an optimized TFLM kernel.
    stream_input: the sample is no tensor of the arena: the tiled first stage reads the rows each tile
    needs from a source the firmware registers before every invoke (tinytrain::SetStreamedInput: a
    constant or flash image, or a row reader such as a camera's; tinytrain_tflm.passes.tiling.stream_input).
    Needs tiles. A sample held whole in RAM outside the arena still counts as the device's RAM.
    target: the device the model is for (tinytrain_tflm.target: "host", "cortex-m7", ...,
    or a Target with other kernels). Its kernels decide which ops may overlap buffers;
    the model's TARGET_METADATA records it for plan, export and the firmware tools.
    loss: "softmax_cross_entropy" (a classifier), "binary_cross_entropy" (one logit, a sigmoid
    head) or "mean_squared_error" (regression, autoencoders); see tinytrain_tflm.passes.loss.attach_loss.
    To measure what a saving saves, compile_with() takes an Ablation.
    """
    memory_options = MemoryOptions(tiles, overlap_buffers, flash_requantization, stream_input)
    options = CompileOptions(update, optimizer or SGD(), gradient, label_smoothing, activation_masks, memory_options, loss)
    return compile_with(model, options, targets.target(target))


def compile_with(
    model: bytes, options: CompileOptions, target: targets.Target = targets.HOST, ablation: Ablation = EVERY_SAVING
) -> TrainingModel:
    """compile() with its options as one value, and the savings `ablation` turns off."""
    memory_options = options.memory
    # An offline plan it carries is dropped by attach_loss below; float edges come back on export.
    graph = read.read_graph(model)
    schema.check_op_options(graph)
    graph = edges.strip_float_edges(graph)
    graph.metadata[targets.TARGET_METADATA] = target.metadata()  # before tiling: its estimates plan overlaps
    _check_int8(graph)
    _add_missing_biases(graph)
    trainable = UpdateScheme.parse(options.update).resolve(conv_like_layers(graph))
    if ablation.split_partial:
        graph, trainable = partial.split_partial_layers(graph, trainable)
    tiled = None
    if memory_options.stream_input and memory_options.tiles is None:
        raise TinyTrainError("stream_input streams the sample into the tiled first stage: it needs tiles ('auto' or a grid)")
    if isinstance(memory_options.tiles, str) and memory_options.tiles != "auto":
        raise TinyTrainError(f"tiles takes 'auto', None or a grid (rows, cols), got {memory_options.tiles!r}")
    if memory_options.tiles == "auto":
        best = tiling.tile_auto(graph, set(trainable), memory_options, ablation.fused_stage)
        tiled = None if best is None else best[1:]
        if tiled is None and memory_options.stream_input:
            raise TinyTrainError(_untiled_stream_reason(graph, set(trainable)))
    elif memory_options.tiles is not None:
        grid, fused = tuple(memory_options.tiles), ablation.fused_stage
        tiled = tiling.tile_first_stage(graph, grid, set(trainable), memory_options=memory_options, fused=fused)
    if tiled is not None:
        graph, renumber = tiled
        trainable = {renumber[t]: channels for t, channels in trainable.items()}
    gradient = options.gradient
    graph = loss.attach_loss(graph, options.label_smoothing, gradient, control=True, loss=options.loss)
    metadata = schema.decode_blob("TRAINING_METADATA", graph.metadata[loss.TRAINING_METADATA])
    if memory_options.stream_input:
        graph = tiling.stream_input(graph)  # the sample keeps its tensor index: the metadata still names it
    loss_op = graph.ops[-1]
    forward = list(range(len(graph.ops) - 1))
    trainable, pairs = _move_to_variables(graph, forward, trainable)

    control = metadata["control_tensor"]
    learning_rate = graph.add_tensor(ir.Tensor(LEARNING_RATE_TENSOR, (1,), np.dtype(np.float32), is_variable=True))
    graph.inputs = graph.inputs + [learning_rate]
    b = BackwardBuilder(graph, gradient, control, trainable, learning_rate)
    logits_grad = Grad(loss_op.outputs[1], loss_op.outputs[2] if gradient == "int8" else None)
    update = options.optimizer.emit_update
    build_backward(
        b, forward, metadata["logits_tensor"], logits_grad, update, ablation.immediate_updates, ablation.prune_backward
    )
    masks = use_activation_masks(graph, forward, b.ops) if options.activation_masks else {}

    init = ir.Op(
        schema_generated.INIT_VARIABLES, pairs, [], True, None, schema.encode_blob("INIT_VARIABLES", num_pairs=len(pairs) // 2)
    )
    ops = [init]
    for position in forward:
        ops += [graph.ops[position], *masks.get(position, [])]
    graph.ops = ops + [loss_op] + b.ops
    graph.outputs = graph.outputs[:2]  # loss, logits: gradients stay internal and their memory is reused
    if ablation.fuse_backward:
        graph = fusion.fuse_backward(graph)
    if ablation.schedule_for_planner and ablation.immediate_updates:  # deferred updates measure an engine that does not reorder
        graph = schedule.schedule_backward(graph, len(ops) + 1, memory_options)
    if memory_options.flash_requantization:
        graph = requantization.lower(graph)
    if memory_options.overlap_buffers:
        graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
    return TrainingModel(emit.emit_model(graph))

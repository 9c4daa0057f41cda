"""Benchmark: TFLM arena of training models, per model, update scheme and optimization.

Not a test: prints tables. The main table trains MobileNetV2-w0.35 with the five sparse-update schemes
MIT's compiler hard-codes for it (MIT_SCHEMES), the last layer and every bias, next to the paper's
141 KB: the arena measured on x86-64, and with --device the arena measured on the emulated Cortex-M7
(tinytrain_tflm.firmware.device, minutes per figure) with CMSIS-NN and with TFLM's reference kernels;
then where each scheme's peak is and what the arena holds. The column "MIT's count" is the same model
counted as MIT's engine reports memory (see MIT_COUNT), and each detail line recomputes the scheme's
name on the model (mit_extra_memory). The detailed tables after it (skipped by
--main-only) switch each optimization off in turn on three models. Every arena is the exact minimum
by bisection; "32-bit projected" resizes an x86-64 figure's TFLM bookkeeping for 4-byte pointers
(tinytrain_tflm.plan.memory.project_32bit). Weights are random: memory does not depend on them.

    .venv/bin/python benchmarks/memory.py [--main-only] [--device] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
from models import ds_cnn, mobilenet_v2_035_128  # noqa: E402

import tinytrain_tflm as tt  # noqa: E402
from tinytrain_tflm.compiler import compile_with  # noqa: E402
from tinytrain_tflm.firmware import device  # noqa: E402
from tinytrain_tflm.frontend.convert import keras_to_int8  # noqa: E402
from tinytrain_tflm.options import Ablation, CompileOptions, MemoryOptions  # noqa: E402
from tinytrain_tflm.passes import requantization, tiling  # noqa: E402
from tinytrain_tflm.passes.scheme import conv_like_layers  # noqa: E402
from tinytrain_tflm.plan import memory  # noqa: E402
from tinytrain_tflm.target import target  # noqa: E402

PAPER_BYTES = 141 * 1024  # the paper's MobileNetV2-w0.35 training peak, sparse update + reordering

# MIT's compiler (tiny-training, compilation/mcu_ir_gen.py) names five schemes for MobileNetV2-w0.35 by
# memory budget: the biases of its last n convs, and the weights of some convs with the ratio of their
# channels that trains (a layer it lists with ratio 0, layer 40 of 49kb, is left out). Its conv indices
# count torch Conv2d modules in forward order, 0-based: the first conv, then depthwise and pointwise
# convs block by block, as tinytrain's conv-like layers count them up to index 50 (see
# tests/models.py). Its model ("nomix") ends there, with the classifier, which always trains; Keras'
# MobileNetV2 adds a 1x1 conv to 1280 channels (Conv_1, layer 51) before its classifier (layer 52).
# backward must pass through it, and bias_last counts it, so its 1280 biases train too.
MIT_CONVS = 51
MIT_SCHEMES = {
    "49kb": (16, {36: 1, 39: 1, 41: 1 / 4, 42: 1 / 8, 45: 1 / 8, 48: 1 / 8, 49: 1 / 8}),
    "73kb": (20, {32: 1 / 8, 33: 1 / 2, 36: 1 / 2, 39: 1, 41: 1 / 4, 42: 1 / 8, 45: 1 / 8, 48: 1}),
    "99kb": (25, {27: 1, 30: 1, 33: 1, 36: 1, 39: 1, 42: 1 / 8, 45: 1 / 2, 48: 1}),
    "123kb": (31, {27: 1, 30: 1, 33: 1, 36: 1, 39: 1, 42: 1 / 2, 45: 1, 48: 1}),
    "138kb": (34, {27: 1, 30: 1, 33: 1, 36: 1, 39: 1, 42: 1, 45: 1, 48: 1}),
}
# What MIT's names measure (tiny-training, algorithm/core/utils/partial_backward.py,
# nelem_saved_for_backward, the x-axis "Extra Memory (KB)" of figures/sparse_update.png): the scheme's
# trained int8 weights and int32 biases, the int8 input each weight-trained conv saves for backward
# (only the trained input channels: MIT's ratio picks input channels), a 1-bit mask of each bias-trained
# conv's output, and the classifier's input; the classifier's weights count 0 bits. Recomputed on MIT's
# model it gives 49.8, 73.9, 99.4, 123.6 and 138.2 KB: the names, truncated. It counts no forward
# activation, no gradient, no input image, no runtime.
# MIT_COUNT: what TinyEngine's memory report sums (tinyengine, code_generator/GeneralMemoryScheduler.py,
# dumpLayerMem: activation + runtime + trainable), in our terms the planned head (activations,
# gradients, scratch, the input image) plus the trained weights and biases. Our arena holds more:
# TFLM's bookkeeping, kernel data and the gradient scale histories, which TinyEngine has no counterpart
# for in RAM (its per-op constants are flash arrays). The generated PEAK_MEM leaves the trained
# parameters out too (they are separate RAM arrays), which would be the head alone.
MIT_COUNT = "MIT's count: head + trained weights and biases (32-bit plan)"
# The emulated Cortex-M7 with an arena region of 1 MB, so that schemes above 256 KB are measured too.
MEASURED_ON = dataclasses.replace(target("cortex-m7"), ram_bytes=1 << 20)
# What reaches the smallest arenas; compile()'s keyword arguments (and its defaults).
BEST_OPTIONS = {"gradient": "int8", "tiles": "auto", "flash_requantization": True}
# Every saving of these options off: the detailed tables turn them on one by one.
REFERENCE_OPTIONS = {"gradient": "float32", "tiles": None, "flash_requantization": False}
UNTILED = MemoryOptions(tiles=None, flash_requantization=False)


def mit_scheme(name: str, layers: int) -> dict:
    """MIT's scheme `name` in tinytrain's keys, on a MobileNetV2 with `layers` conv-like layers: the
    layers after MIT's convs (feature mix, classifier) train their biases, the classifier its weights."""
    biases, weights = MIT_SCHEMES[name]
    return {"bias_last": biases + layers - MIT_CONVS, "weights": {**{str(k): r for k, r in weights.items()}, str(layers - 1): 1}}


def mit_extra_memory(graph, name: str) -> dict[str, int]:
    """MIT's name for scheme `name` recomputed on the forward model `graph`, in bytes by part (see the
    comment above MIT_COUNT). On Keras' model the feature-mix conv is one more bias-trained conv."""
    biases, weights = MIT_SCHEMES[name]
    layers = conv_like_layers(graph)
    convs = [layer for layer in layers if layer.kind != "FULLY_CONNECTED"]
    classifier_input = graph.tensors[graph.ops[layers[-1].op].inputs[0]].shape
    parts = {"weights": 0, "biases": 0, "saved inputs": int(np.prod(classifier_input)), "masks": 0}
    trained = biases + len(convs) - MIT_CONVS
    for layer in convs[len(convs) - trained :]:
        op = graph.ops[layer.op]
        x, y, w = (graph.tensors[t].shape for t in (op.inputs[0], op.outputs[0], op.inputs[1]))
        parts["biases"] += 4 * layer.channels
        parts["masks"] += int(np.prod(y)) // 8
        # A depthwise filter's last axis is its channels, a conv's its input channels.
        channels = int(w[3] * weights.get(layer.index, 0))
        parts["weights"] += channels * int(np.prod(w)) // w[3]
        parts["saved inputs"] += x[1] * x[2] * channels
    return parts


def mobilenet_v1_025_128() -> bytes:
    """Keras' MobileNet (v1), width 0.25, 128x128, 10 classes: a classic MCU-class CNN."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNet(
        input_shape=(128, 128, 3), alpha=0.25, weights=None, classes=10, classifier_activation=None
    )
    return keras_to_int8(model, np.random.default_rng(0).uniform(-1, 1, (8, 128, 128, 3)).astype(np.float32))


def mobilenet_v2_035_128_nomix() -> bytes:
    """The MobileNetV2-w0.35 of MIT's schemes ("nomix"): Keras' without its feature-mix conv (Conv_1, 112
    to 1280 channels), so the classifier reads the last block's 112 channels, pooled."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    backbone = tf.keras.applications.MobileNetV2(input_shape=(128, 128, 3), alpha=0.35, weights=None, include_top=False)
    features = tf.keras.layers.GlobalAveragePooling2D()(backbone.get_layer("block_16_project_BN").output)
    model = tf.keras.Model(backbone.input, tf.keras.layers.Dense(10)(features))
    return keras_to_int8(model, np.random.default_rng(0).uniform(-1, 1, (8, 128, 128, 3)).astype(np.float32))


def ds_cnn_kws() -> bytes:
    """The DS-CNN of the tests (keyword spotting shape, 20x10 MFCC input)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = ds_cnn(12)
    return keras_to_int8(model, np.random.default_rng(0).uniform(-1, 1, (16, 20, 10, 1)).astype(np.float32))


def paper_style(layers: int) -> dict:
    """Biases of the last 22 layers (all if fewer), full weights of the last two layers and of one
    pointwise conv four layers earlier, half and a quarter of two convs before those."""
    last = layers - 1
    picks = {last: 1, last - 1: 1, last - 4: 1, last - 7: 0.5, last - 10: 0.25}
    return {"bias_last": min(22, layers), "weights": {str(layer): ratio for layer, ratio in picks.items() if layer >= 0}}


def row(name: str, model: bytes) -> None:
    start = time.perf_counter()
    graph = tt.read_graph(model)
    measured = tt.minimum_arena_size(model)
    estimate = memory.estimate(graph)
    error = 100 * (estimate.total - measured) / measured
    seconds = time.perf_counter() - start
    print(
        f"  {name:46} {measured:>10,} {memory.project_32bit(measured, graph):>10,} {estimate.head:>10,} "
        f"{estimate.tail:>9,} {error:+6.1f}% {len(model):>9,} {seconds:5.1f}s",
        flush=True,
    )


def peak(graph) -> str:
    """Where the planned head peaks (forward or backward, the op running) and its largest live buffers."""
    plan = memory.plan_memory(graph)
    live = sum(plan.live_bytes().values())
    scope = int(np.argmax(live))
    loss = next(i for i, op in enumerate(graph.ops) if op.kind == "TT_SOFTMAX_CROSS_ENTROPY")
    pass_name = "forward" if scope <= loss else "backward"
    sizes: dict[int, int] = {}
    for buffer in plan.buffers:
        for _, size, last in buffer.parts():
            if buffer.first <= scope <= last:
                sizes[buffer.tensor] = sizes.get(buffer.tensor, 0) + size
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:2]
    names = ["/".join(tensor.name.split("/")[-2:]) for tensor in graph.tensors]
    named = ", ".join(f"{names[t] if t < len(names) else 'scratch'} {size:,} B" for t, size in largest)
    return f"{pass_name}, {graph.ops[scope - 1].kind}: {named}"


def main_table(
    title: str,
    source: bytes,
    on_device: bool,
    full: bool = True,
    only: set[str] | None = None,
    stream: bool = False,
    stream_tiles: tuple[int, int] | str = "auto",
) -> None:
    """MIT's five schemes measured, next to the paper's 141 KB; `full` adds the last layer and every bias
    as rows, and the defaults and TFLM's reference kernels as columns; `only` keeps the rows it names;
    `stream` adds the same options with the sample streamed into the tiled stage (stream_input=True) as columns,
    its first stage tiled `stream_tiles`."""
    layers = len(conv_like_layers(tt.read_graph(source)))
    rows = [(name, mit_scheme(name, layers)) for name in MIT_SCHEMES]
    if full:
        rows += [("last layer", "last"), ("every bias + classifier", {"bias_last": layers, "weights": {str(layers - 1): 1}})]
    rows = [(name, update) for name, update in rows if only is None or name in only]
    options = ", ".join(f"{key}={value!r}" for key, value in BEST_OPTIONS.items())
    print(f"\n{title} ({layers} conv-like layers): MIT's schemes, {options}")
    defaults = "; defaults: compile() with the update scheme alone, for the host" if full else ""
    print(f"(the paper: {PAPER_BYTES:,} B{defaults})")
    columns = ["scheme", *(["defaults: x86 / 32-bit projected"] if full else []), "x86", "32-bit projected", MIT_COUNT]
    if on_device:
        columns += ["Cortex-M7 CMSIS-NN", *(["Cortex-M7 reference"] if full else []), "CMSIS-NN / paper"]
    if stream:
        grid = "" if stream_tiles == "auto" else f", tiles {stream_tiles[0]}x{stream_tiles[1]}"
        columns += [
            f"streamed{grid}: x86",
            "32-bit projected",
            *(["Cortex-M7 CMSIS-NN", "CMSIS-NN / paper"] if on_device else []),
        ]
    print("| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|", flush=True)
    details = []
    for name, update in rows:
        start = time.perf_counter()
        cells = [name]
        if full:
            default = tt.compile(source, update=update).bytes
            default_x86 = tt.minimum_arena_size(default)
            cells.append(f"{default_x86:,} / {memory.project_32bit(default_x86, tt.read_graph(default)):,}")
        model = tt.compile(source, update=update, target=MEASURED_ON, **BEST_OPTIONS).bytes
        graph = tt.read_graph(model)
        x86 = tt.minimum_arena_size(model)
        estimate = memory.estimate(graph, memory.CORTEX_M)
        mit_count = estimate.head + estimate.persistent["trainable weights"]
        cells += [f"{x86:,}", f"{memory.project_32bit(x86, graph):,}", f"{mit_count:,}"]
        if on_device:
            cmsis = device.minimum_arena(device.build_firmware(model, MEASURED_ON))
            cells.append(f"**{cmsis:,}**")
            if full:
                reference_target = MEASURED_ON.with_kernels("reference")
                reference_model = tt.compile(source, update=update, target=reference_target, **BEST_OPTIONS).bytes
                cells.append(f"{device.minimum_arena(device.build_firmware(reference_model, reference_target)):,}")
            cells.append(f"{cmsis / PAPER_BYTES:.2f}x")
        if stream:
            streaming = {**BEST_OPTIONS, "tiles": stream_tiles}
            streamed = tt.compile(source, update=update, target=MEASURED_ON, stream_input=True, **streaming).bytes
            streamed_x86 = tt.minimum_arena_size(streamed)
            cells += [f"{streamed_x86:,}", f"{memory.project_32bit(streamed_x86, tt.read_graph(streamed)):,}"]
            if on_device:
                streamed_m7 = device.minimum_arena(device.build_firmware(streamed, MEASURED_ON))
                cells += [f"**{streamed_m7:,}**", f"{streamed_m7 / PAPER_BYTES:.2f}x"]
            streamed_head = memory.estimate(tt.read_graph(streamed), memory.CORTEX_M).head
            details.append(f"  {name}, streamed: head {streamed_head:,} B (peak {peak(tt.read_graph(streamed))})")
        print("| " + " | ".join(cells) + " |", flush=True)
        parts = ", ".join(f"{kind} {size:,}" for kind, size in estimate.persistent.items() if size)
        counts = f"{len(graph.ops)} ops, {len(graph.tensors)} tensors"
        details.append(f"  {name}: head {estimate.head:,} B (peak {peak(graph)}); {parts}; {counts}")
        if name in MIT_SCHEMES:
            extra = mit_extra_memory(tt.read_graph(source), name)
            named = ", ".join(f"{part} {size:,}" for part, size in extra.items())
            details.append(f"    MIT's name recomputed on this model: {sum(extra.values()) / 1024:.1f} KB ({named} B)")
        print(f"  ({time.perf_counter() - start:.0f} s; scheme {update})", file=sys.stderr, flush=True)
    print("\nWhat the arena holds (32-bit estimate, bytes), and where the head peaks:")
    print("\n".join(details))


def benchmark(title: str, source: bytes, quick: bool) -> None:
    layers = len(conv_like_layers(tt.read_graph(source)))
    sparse = paper_style(layers)

    def compiled(update, **options) -> bytes:
        """The training model with REFERENCE_OPTIONS but for `options`: each row names what it turns on."""
        return tt.compile(source, update=update, **{**REFERENCE_OPTIONS, **options}).bytes

    print(f"\n{title}: {layers} conv-like layers; paper-style sparse scheme {sparse}")
    print(f"  {'configuration':46} {'arena x86':>10} {'32-bit':>10} {'planned':>10} {'persist.':>9} {'est.':>7} {'flash':>9}")
    row("inference (no training)", source)
    graph = tt.read_graph(source)
    graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
    row("inference, overlapping buffers (offline plan)", tt.emit_model(graph))
    schemes = [("last layer", "last"), ("bias only (all biases)", {"bias_last": layers}), ("paper-style sparse", sparse)]
    if not quick:
        schemes.append(("full update", "all"))
    for name, update in schemes:
        row(f"{name}, float32 gradients", compiled(update))
        row(f"{name}, int8 gradients", compiled(update, gradient="int8"))
    # Each optimization switched off alone, on the sparse scheme with int8 gradients.
    grid = tiling.choose_tiles(tt.read_graph(source))
    if grid is not None:
        tiled = tt.emit_model(tiling.tile_first_stage(tt.read_graph(source), grid)[0])
        row(f"inference, first stage tiled {grid[0]}x{grid[1]}", tiled)
    row("sparse int8, first stage tiled (auto)", compiled(sparse, gradient="int8", tiles="auto"))
    lean = {"bias_last": min(8, layers), "weights": {str(layers - 1): 1}}
    row(f"lean {lean}, int8, tiled", compiled(lean, gradient="int8", tiles="auto"))
    plain = compiled(lean, gradient="int8", tiles="auto", overlap_buffers=False)
    row("lean, int8, tiled, without overlapping buffers (TFLM plans)", plain)
    row("last layer, int8, tiled", compiled("last", gradient="int8", tiles="auto"))
    partial_scheme = {"bias_last": min(8, layers), "weights": {str(layers - 1): 1, str(layers - 3): 0.25, str(layers - 6): 0.125}}
    for split in (False, True):
        options = CompileOptions(
            update=partial_scheme, gradient="int8", memory=MemoryOptions(tiles="auto", flash_requantization=False)
        )
        trained = compile_with(source, options, ablation=Ablation(split_partial=split))
        row(f"partial {partial_scheme}, int8, tiled, {'split' if split else 'whole layers in RAM'}", trained.bytes)
    # Forward convs reading their per-channel requantization from the model instead of the arena.
    graph = requantization.lower(tt.read_graph(source))
    graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
    row("inference, overlapping buffers, requantization in flash", tt.emit_model(graph))
    for name, update in (("last layer", "last"), ("lean", lean), ("partial, split", partial_scheme), ("sparse", sparse)):
        flash = compiled(update, gradient="int8", tiles="auto", flash_requantization=True)
        row(f"{name}, int8, tiled, requantization in flash", flash)
    without_masks = compiled(sparse, gradient="int8", activation_masks=False)
    row("sparse int8, without 1-bit masks", without_masks)
    without_overlap = compiled(sparse, gradient="int8", overlap_buffers=False)
    row("sparse int8, without overlapping buffers", without_overlap)
    sparse_int8 = CompileOptions(update=sparse, gradient="int8", memory=UNTILED)
    deferred = compile_with(source, sparse_int8, ablation=Ablation(immediate_updates=False))
    row("sparse int8, updates deferred (no reordering)", deferred.bytes)
    unpruned = compile_with(source, sparse_int8, ablation=Ablation(prune_backward=False))
    row("sparse int8, backward not pruned (every activation's gradient)", unpruned.bytes)
    if not quick:
        options = CompileOptions(update="all", gradient="int8", memory=UNTILED)
        autodiff_order = compile_with(source, options, ablation=Ablation(schedule_for_planner=False))
        row("full update int8, autodiff's backward order (not scheduled)", autodiff_order.bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the full-update rows")
    parser.add_argument("--main-only", action="store_true", help="MIT's schemes only, not the detailed tables")
    parser.add_argument("--device", action="store_true", help="measure the main table on the emulated Cortex-M7 too")
    parser.add_argument("--only", help="comma-separated rows of the main table to measure (49kb, ..., last layer)")
    parser.add_argument(
        "--stream-input", action="store_true", help="add columns with the sample streamed into the tiled stage (stream_input)"
    )
    parser.add_argument(
        "--stream-tiles",
        default="auto",
        help="the streamed columns' first-stage grid, HxW (e.g. 16x4: a deeper stage that costs forward work; default auto)",
    )
    args = parser.parse_args()
    stream_tiles = "auto" if args.stream_tiles == "auto" else tuple(int(part) for part in args.stream_tiles.split("x"))
    if args.device:
        device.check_tools()
    source = mobilenet_v2_035_128()
    only = None if args.only is None else set(args.only.split(","))
    stream = args.stream_input
    table = {"only": only, "stream": stream, "stream_tiles": stream_tiles}
    main_table("MobileNetV2-w0.35 (Keras), 128x128, 10 classes", source, args.device, **table)
    nomix = mobilenet_v2_035_128_nomix()
    main_table("MobileNetV2-w0.35 as MIT trains it (no feature-mix conv)", nomix, args.device, full=False, **table)
    if args.main_only:
        return
    benchmark("MobileNetV2-w0.35, 128x128, 10 classes", source, args.quick)
    benchmark("MobileNet(v1)-w0.25, 128x128, 10 classes", mobilenet_v1_025_128(), args.quick)
    benchmark("DS-CNN, 20x10x1, 12 classes", ds_cnn_kws(), args.quick)


if __name__ == "__main__":
    main()

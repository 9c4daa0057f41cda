"""Benchmark: TFLM arena of training models, per model, update scheme and optimization.

Not a test: prints a table. Every arena is the exact minimum measured in the
TFLM runtime by bisection (x86-64); the 32-bit column resizes TFLM's
bookkeeping for 4-byte pointers (tinytrain_tflm.plan.memory.project_32bit). Weights
are random: memory does not depend on them.

    .venv/bin/python benchmarks/memory.py [--quick]
"""

from __future__ import annotations

import argparse
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
from tinytrain_tflm.frontend.convert import keras_to_int8  # noqa: E402
from tinytrain_tflm.options import Ablation, CompileOptions, MemoryOptions  # noqa: E402
from tinytrain_tflm.passes import requantization, tiling  # noqa: E402
from tinytrain_tflm.passes.scheme import conv_like_layers  # noqa: E402
from tinytrain_tflm.plan import memory


def mobilenet_v1_025_128() -> bytes:
    """Keras' MobileNet (v1), width 0.25, 128x128, 10 classes: a classic MCU-class CNN."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNet(
        input_shape=(128, 128, 3), alpha=0.25, weights=None, classes=10, classifier_activation=None
    )
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


def benchmark(title: str, source: bytes, quick: bool) -> None:
    layers = len(conv_like_layers(tt.read_graph(source)))
    sparse = paper_style(layers)
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
        row(f"{name}, float32 gradients", tt.compile(source, update=update).bytes)
        row(f"{name}, int8 gradients", tt.compile(source, update=update, gradient="int8").bytes)
    # Each optimization switched off alone, on the sparse scheme with int8 gradients.
    grid = tiling.choose_tiles(tt.read_graph(source))
    if grid is not None:
        tiled = tt.emit_model(tiling.tile_first_stage(tt.read_graph(source), grid)[0])
        row(f"inference, first stage tiled {grid[0]}x{grid[1]}", tiled)
    row("sparse int8, first stage tiled (auto)", tt.compile(source, update=sparse, gradient="int8", tiles="auto").bytes)
    lean = {"bias_last": min(8, layers), "weights": {str(layers - 1): 1}}
    row(f"lean {lean}, int8, tiled", tt.compile(source, update=lean, gradient="int8", tiles="auto").bytes)
    plain = tt.compile(source, update=lean, gradient="int8", tiles="auto", overlap_buffers=False)
    row("lean, int8, tiled, without overlapping buffers (TFLM plans)", plain.bytes)
    row("last layer, int8, tiled", tt.compile(source, update="last", gradient="int8", tiles="auto").bytes)
    partial_scheme = {"bias_last": min(8, layers), "weights": {str(layers - 1): 1, str(layers - 3): 0.25, str(layers - 6): 0.125}}
    for split in (False, True):
        options = CompileOptions(update=partial_scheme, gradient="int8", memory=MemoryOptions(tiles="auto"))
        trained = compile_with(source, options, ablation=Ablation(split_partial=split))
        row(f"partial {partial_scheme}, int8, tiled, {'split' if split else 'whole layers in RAM'}", trained.bytes)
    # Forward convs reading their per-channel requantization from the model instead of the arena.
    graph = requantization.lower(tt.read_graph(source))
    graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
    row("inference, overlapping buffers, requantization in flash", tt.emit_model(graph))
    for name, update in (("last layer", "last"), ("lean", lean), ("partial, split", partial_scheme), ("sparse", sparse)):
        flash = tt.compile(source, update=update, gradient="int8", tiles="auto", flash_requantization=True)
        row(f"{name}, int8, tiled, requantization in flash", flash.bytes)
    without_masks = tt.compile(source, update=sparse, gradient="int8", activation_masks=False)
    row("sparse int8, without 1-bit masks", without_masks.bytes)
    without_overlap = tt.compile(source, update=sparse, gradient="int8", overlap_buffers=False)
    row("sparse int8, without overlapping buffers", without_overlap.bytes)
    sparse_int8 = CompileOptions(update=sparse, gradient="int8")
    deferred = compile_with(source, sparse_int8, ablation=Ablation(immediate_updates=False))
    row("sparse int8, updates deferred (no reordering)", deferred.bytes)
    unpruned = compile_with(source, sparse_int8, ablation=Ablation(prune_backward=False))
    row("sparse int8, backward not pruned (every activation's gradient)", unpruned.bytes)
    if not quick:
        options = CompileOptions(update="all", gradient="int8")
        autodiff_order = compile_with(source, options, ablation=Ablation(schedule_for_planner=False))
        row("full update int8, autodiff's backward order (not scheduled)", autodiff_order.bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the full-update rows")
    args = parser.parse_args()
    benchmark("MobileNetV2-w0.35, 128x128, 10 classes", mobilenet_v2_035_128(), args.quick)
    benchmark("MobileNet(v1)-w0.25, 128x128, 10 classes", mobilenet_v1_025_128(), args.quick)
    benchmark("DS-CNN, 20x10x1, 12 classes", ds_cnn_kws(), args.quick)


if __name__ == "__main__":
    main()

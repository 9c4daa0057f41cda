"""The memory planner against TFLM's own allocator, and the `plan` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from models import int8_model, mobilenet_v2_035_128

import tinytrain_tflm as tt
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.plan import memory

SPARSE = {"bias_last": 22, "weights": {"52": 1, "50": 1, "47": 0.5}}


def _measured_head(model: bytes) -> int:
    interpreter = tt.Interpreter(model, 32 << 20)
    interpreter.run(tt.runtime.interpreter.zero_inputs(model))
    return interpreter.arena_report().head


@pytest.mark.parametrize("name", ["ds_cnn", "small_cnn", "mobilenet_v2_blocks"])
@pytest.mark.parametrize("update", [None, "last", "all"])
@pytest.mark.parametrize("gradient", ["float32", "int8"])
@pytest.mark.parametrize("overlap_buffers", [False, True], ids=["tflm_plans", "offline_plan"])
def test_planned_head_is_tflms(name, update, gradient, overlap_buffers):
    # Without overlapping buffers TFLM plans the head itself and the planner replicates it; with them
    # TFLM follows the plan in the model's metadata.
    if update is None:
        model = int8_model(name)
        if overlap_buffers:
            graph = tt.read_graph(model)
            graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
            model = tt.emit_model(graph)
    else:
        model = tt.compile(int8_model(name), update=update, gradient=gradient, overlap_buffers=overlap_buffers).bytes
    assert (memory.OFFLINE_PLAN in tt.read_graph(model).metadata) == overlap_buffers
    assert memory.plan_memory(tt.read_graph(model)).head == _measured_head(model)


@pytest.mark.parametrize("overlap_buffers", [False, True], ids=["tflm_plans", "offline_plan"])
def test_planned_head_holds_the_mean_scratch(overlap_buffers):
    # A wide 1x1 conv pooled by MEAN (GlobalAveragePooling2D): TFLM's int8 MEAN asks for an int32 accumulator
    # per output channel (2 KB here) while the conv's 8 KB output is live, at the head's peak; the plan must
    # leave room for it or TFLM puts it above the head.
    import tensorflow as tf

    keras = tf.keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 8))
    x = keras.layers.Conv2D(512, 1, activation="relu")(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    samples = np.random.default_rng(0).uniform(-1, 1, (16, 4, 4, 8)).astype(np.float32)
    graph = tt.read_graph(keras_to_int8(keras.Model(inputs, outputs), samples))
    mean = next(op for op in graph.ops if op.kind == "MEAN")
    assert memory.scratch_bytes(graph, mean) == 4 * 512 + 16 + 16
    if overlap_buffers:
        graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
    assert memory.plan_memory(graph).head == _measured_head(tt.emit_model(graph))


@pytest.mark.parametrize("name", ["ds_cnn", "small_cnn", "mobilenet_v2_blocks"])
@pytest.mark.parametrize("update", [None, "last", "all"])
def test_estimate_within_5_percent_on_small_models(name, update):
    # Arenas of 3 to 30 KB: on most of these TFLM's planning pass, not head + tail, sets the minimum.
    model = int8_model(name) if update is None else tt.compile(int8_model(name), update=update, gradient="int8").bytes
    measured = tt.minimum_arena_size(model)
    assert abs(memory.estimate(tt.read_graph(model)).total - measured) <= 0.05 * measured


@pytest.mark.parametrize(
    ("update", "options"), [(None, {}), ("last", {}), (SPARSE, {}), ("last", {"tiles": "auto", "flash_requantization": True})]
)
def test_estimate_within_5_percent_on_mobilenet_v2(update, options):
    source = mobilenet_v2_035_128()
    model = source if update is None else tt.compile(source, update=update, optimizer=tt.SGD(momentum=0.9), **options).bytes
    graph = tt.read_graph(model)
    measured = tt.minimum_arena_size(model)
    assert memory.plan_memory(graph).head == _measured_head(model)
    assert abs(memory.estimate(graph).total - measured) <= 0.05 * measured
    assert memory.project_32bit(measured, graph) < measured


def test_categories_follow_the_training_model():
    model = tt.compile(int8_model("small_cnn"), update="all", optimizer=tt.SGD(momentum=0.9)).bytes
    result = memory.estimate(tt.read_graph(model))
    graph = tt.read_graph(model)
    variables = [t for t in graph.tensors if t.is_variable]
    momentum = sum(t.dtype.itemsize * int(np.prod(t.shape)) for t in variables if t.name.endswith("/momentum"))
    assert result.persistent["optimizer state"] >= momentum > 0
    assert result.persistent["trainable weights"] > 0
    assert set(memory.plan_memory(graph).live_bytes()) == {"activations", "saved for backward", "gradients"}


def test_plan_command_json_and_plot(tmp_path):
    path = tmp_path / "train.tflite"
    path.write_bytes(tt.compile(int8_model("ds_cnn"), update="all").bytes)
    plot = tmp_path / "plan.png"
    result = subprocess.run(
        [sys.executable, "-P", "-m", "tinytrain_tflm.cli", "plan", str(path), "--json", "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arena_bytes"] == tt.minimum_arena_size(path.read_bytes())
    assert 0 < report["arena_bytes_32bit"] < report["arena_bytes"]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

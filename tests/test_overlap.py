"""Overlapping buffers (tinytrain_tflm.plan.overlap): TFLM follows the plan written into the model, the
results stay bit-identical, and a shift smaller than the rule allows is caught by the same check."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from models import int8_model, mobilenet_v2_035_128

import tinytrain_tflm as tt
from tinytrain_tflm.backend import schema_generated
from tinytrain_tflm.compiler import compile_with
from tinytrain_tflm.frontend import ir
from tinytrain_tflm.options import Ablation, CompileOptions, MemoryOptions
from tinytrain_tflm.plan import memory, overlap
from tinytrain_tflm.runtime import interpreter as runtime
from tinytrain_tflm.target import target

STEPS = 6
# The learning-rate input at 0: the compiled learning rate.
COMPILED_RATE = np.zeros(1, np.float32)

# TFLM's builtin convs, untiled: the ops whose overlaps these tests name (compile's defaults tile the first
# stage and run the convs as tinytrain's TT_CONV_2D / TT_DEPTHWISE_CONV_2D).
BUILTIN_UNTILED = {"tiles": None, "flash_requantization": False}


def _device_run(model: bytes, steps: int = STEPS) -> list[np.ndarray]:
    """Losses and logits of `steps` training invokes and one prediction, run as a device runs the
    model: TFLM's planned arena, no preserved tensors, so overlapping buffers really overlap."""
    graph = tt.read_graph(model)
    x = graph.tensors[graph.inputs[0]]
    interpreter = tt.Interpreter(model, 4 << 20)
    rng = np.random.default_rng(0)
    outputs = []
    for step in range(steps + 1):
        sample = rng.integers(-128, 128, x.shape, dtype=np.int8)
        control = 0 if step == steps else schema_generated.CONTROL_BACKWARD | schema_generated.CONTROL_UPDATE
        loss, logits = interpreter.run([sample, np.array([step % 3], np.int32), np.array([control], np.int32), COMPILED_RATE])[:2]
        outputs += [logits] if control == 0 else [loss, logits]  # predicting computes no loss
    return outputs


def _overlapping_pairs(model: bytes) -> int:
    plan = memory.plan_memory(tt.read_graph(model))
    return len(plan.shared)


@pytest.mark.parametrize("name", ["ds_cnn", "small_cnn", "mobilenet_v2_blocks"])
@pytest.mark.parametrize("update", ["last", {"bias_last": 3}, "all"])
@pytest.mark.parametrize("flash", [False, True], ids=["tflm_convs", "tinytrain_convs"])
def test_training_is_bit_identical_with_overlapping_buffers(name, update, flash):
    # With flash_requantization the overlapping convs are tinytrain's own (TT_CONV_2D, ...). Untiled: "auto"
    # may pick another grid without overlapping buffers, and another schedule emits the SGD ops, whose
    # stochastic-rounding seeds follow their order, in another order.
    source = int8_model(name)
    options = {"update": update, "gradient": "int8", "tiles": None, "flash_requantization": flash}
    plain = tt.compile(source, overlap_buffers=False, **options).bytes
    overlapped = tt.compile(source, **options).bytes
    assert memory.OFFLINE_PLAN in tt.read_graph(overlapped).metadata
    for ours, reference in zip(_device_run(overlapped), _device_run(plain), strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_tflm_follows_the_plan_and_it_saves_memory():
    # An inverted residual block trained at its classifier only: its expand, depthwise and project
    # convs, the residual ADD and the stride-2 depthwise after a PAD all write over their inputs.
    source = int8_model("mobilenet_v2_blocks")
    plain = tt.compile(source, update="last", overlap_buffers=False, **BUILTIN_UNTILED).bytes
    overlapped = tt.compile(source, update="last", **BUILTIN_UNTILED).bytes
    graph = tt.read_graph(overlapped)
    interpreter = tt.Interpreter(overlapped, 1 << 20)
    interpreter.run(runtime.zero_inputs(overlapped))
    assert interpreter.arena_report().head == memory.plan_memory(graph).head
    assert _overlapping_pairs(overlapped) >= 4
    assert memory.plan_memory(graph).head < memory.plan_memory(tt.read_graph(plain)).head
    assert tt.minimum_arena_size(overlapped) < tt.minimum_arena_size(plain)


def test_the_plan_takes_the_tie_order_with_the_smaller_head(monkeypatch):
    # An inverted residual block trained whole, int8 gradients, untiled, flash requantization (as one case of
    # the bit-identity test above, which runs this plan): TFLM's order for buffers of equal size (reverse
    # tensor order) leaves a gap at the peak, tensor order does not, and the offline plan may take either.
    source = int8_model("mobilenet_v2_blocks")
    model = tt.compile(source, update="all", gradient="int8", tiles=None, flash_requantization=True).bytes
    graph = tt.read_graph(model)
    head = memory.plan_memory(graph).head
    interpreter = tt.Interpreter(model, 1 << 20)
    interpreter.run(runtime.zero_inputs(model))
    assert interpreter.arena_report().head == head
    place = memory.place
    monkeypatch.setattr(memory, "place", lambda groups, overlaps=(), fixed=(), tflm_ties=True: place(groups, overlaps, fixed))
    assert head < memory.plan_memory(graph, MemoryOptions(tiles=None, overlap_buffers=True)).head


def test_a_shift_below_the_rule_corrupts_and_is_caught(monkeypatch):
    source = int8_model("mobilenet_v2_blocks")
    reference = _device_run(tt.compile(source, update="last", overlap_buffers=False, **BUILTIN_UNTILED).bytes, steps=2)
    rule = overlap._rows_shift
    # Depthwise outputs placed right on their inputs overwrite input rows still to be read.
    monkeypatch.setattr(overlap, "_rows_shift", lambda graph, op: 0 if op.kind == "DEPTHWISE_CONV_2D" else rule(graph, op))
    corrupted = tt.compile(source, update="last", **BUILTIN_UNTILED).bytes
    assert _overlapping_pairs(corrupted) > 0
    outputs = _device_run(corrupted, steps=2)
    assert any(not np.array_equal(a, b) for a, b in zip(outputs, reference, strict=True))
    # With the rule back, the runtime's check of the model's plan refuses it, naming a depthwise conv.
    monkeypatch.undo()
    with pytest.raises(tt.TinyTrainError, match=r"of op \d+ \(DEPTHWISE_CONV_2D\) over its input .* only from \d+ bytes below"):
        memory.check_offline_plan(tt.read_graph(corrupted))


def _reshape_graph(rng: np.random.Generator) -> tuple[ir.Graph, dict[str, int]]:
    """A float graph (found by a search over random ones) where the second RESHAPE's exact alias is blocked:
    placed first, its output `r2` goes after `doubled` and `y`, live with it; its input `r1` cannot go
    there, where `x` still lives when `r1` is created."""
    graph = ir.Graph()
    f32 = np.dtype(np.float32)

    def tensor(name, shape, data=None):
        return graph.add_tensor(ir.Tensor(name, shape, np.dtype(f32 if data is None else data.dtype), data=data))

    t = {"x": tensor("x", (12,)), "c": tensor("c", (8,), rng.normal(size=8).astype(np.float32))}
    t["sum"] = tensor("sum", (8,))
    t["r1"] = tensor("r1", (8, 1))
    t["doubled"] = tensor("doubled", (12,))
    t["r2"] = tensor("r2", (8,))
    t["y"] = tensor("y", (8,))
    graph.ops = [
        ir.Op("ADD", [t["c"], t["c"]], [t["sum"]]),
        ir.Op("RESHAPE", [t["sum"], tensor("shape1", (2,), np.array([8, 1], np.int32))], [t["r1"]]),
        ir.Op("ADD", [t["x"], t["x"]], [t["doubled"]]),
        ir.Op("RESHAPE", [t["r1"], tensor("shape2", (1,), np.array([8], np.int32))], [t["r2"]]),
        ir.Op("ADD", [t["r2"], t["r2"]], [t["y"]]),
    ]
    graph.inputs, graph.outputs = [t["x"]], [t["doubled"], t["y"]]
    return graph, t


def test_a_reshape_shares_its_input_exactly_or_not_at_all():
    # TFLM's RESHAPE memcpy's its input unless the output is that input, and a copy between overlapping bytes
    # is undefined: a backward-copying memcpy corrupts it. So no plan may put a RESHAPE's output partly over
    # its input, and the runtime refuses one that does (an older planner's, where the exact alias was blocked).
    rng = np.random.default_rng(0)
    graph, t = _reshape_graph(rng)
    graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
    offsets = np.frombuffer(graph.metadata[memory.OFFLINE_PLAN], "<i4")[3:]
    for op in graph.ops[1::2]:
        (before, after), size = offsets[[op.inputs[0], op.outputs[0]]], memory.tensor_bytes(graph.tensors[op.inputs[0]])
        assert before == after or abs(int(before) - int(after)) >= size, (before, after)

    def run(plan: dict[str, int] | None = None) -> list[np.ndarray]:
        """The graph's outputs in TFLM, with its offline plan replaced by `plan` (tensor name -> offset)."""
        if plan is not None:
            offsets = np.full(len(graph.tensors), -1, np.int32)
            offsets[[t[name] for name in plan]] = list(plan.values())
            graph.metadata[memory.OFFLINE_PLAN] = np.concatenate([[0, 1, len(graph.tensors)], offsets]).astype("<i4").tobytes()
        return tt.Interpreter(tt.emit_model(graph), 1 << 16).run([x])

    x = rng.normal(size=12).astype(np.float32)
    c = graph.tensors[t["c"]].data
    doubled, y = run()
    np.testing.assert_array_equal(doubled, x + x)
    np.testing.assert_array_equal(y, (c + c) + (c + c))
    # The older planner's plan put r2 16 bytes below r1. Moved onto r1, the same layout is safe: TFLM follows it.
    older = {"x": 48, "sum": 0, "r1": 96, "doubled": 0, "r2": 80, "y": 48}
    for ours, reference in zip(run({**older, "r2": 96}), (doubled, y), strict=True):
        np.testing.assert_array_equal(ours, reference)
    refusal = r"output tensor \d+ \('r2'.* of op 3 \(RESHAPE\) partly over its input tensor \d+ \('r1'"
    with pytest.raises(tt.TinyTrainError, match=refusal) as refused:
        run(older)
    assert "\n" not in str(refused.value) and "only at the same offset" in str(refused.value)


def test_inference_model_with_an_offline_plan():
    # MobileNetV2-w0.35 at 128x128 inference: the plan alone, written into an ordinary model.
    graph = tt.read_graph(mobilenet_v2_035_128())
    plain = tt.emit_model(graph)
    graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
    planned = tt.emit_model(graph)
    image = np.random.default_rng(0).integers(-128, 128, graph.tensors[graph.inputs[0]].shape, dtype=np.int8)
    outputs = [tt.Interpreter(model, 1 << 20).run([image])[0] for model in (planned, plain)]
    np.testing.assert_array_equal(*outputs)
    assert memory.plan_memory(tt.read_graph(planned)).head < 0.85 * memory.plan_memory(tt.read_graph(plain)).head


def test_preserving_every_tensor_drops_the_plan():
    # The host Trainer reads every tensor after invoke, which overlapping buffers would have overwritten.
    model = tt.compile(int8_model("small_cnn"), update="all").bytes
    trainer = tt.Trainer(model)
    gradients = trainer.gradients(np.zeros((12, 12, 1), np.float32), 1)
    plain = tt.Trainer(tt.compile(int8_model("small_cnn"), update="all", overlap_buffers=False).bytes)
    reference = plain.gradients(np.zeros((12, 12, 1), np.float32), 1)
    for name, grad in reference.items():
        np.testing.assert_array_equal(gradients[name], grad)


def test_malformed_offline_plan_is_a_clear_error():
    graph = tt.read_graph(int8_model("small_cnn"))
    graph.metadata[memory.OFFLINE_PLAN] = b"\x00" * 10
    with pytest.raises(tt.TinyTrainError, match="malformed OfflineMemoryAllocation metadata"):
        memory.plan_memory(graph)


def test_cli_compile_no_overlap(tmp_path):
    source = tmp_path / "model.tflite"
    source.write_bytes(int8_model("mobilenet_v2_blocks"))
    for flags, planned in (([], True), (["--no-overlap"], False)):
        out = tmp_path / f"train{len(flags)}.tflite"
        result = subprocess.run(
            [sys.executable, "-P", "-m", "tinytrain_tflm.cli", "compile", str(source), "-o", str(out), *flags],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert (memory.OFFLINE_PLAN in tt.read_graph(out.read_bytes()).metadata) == planned


def test_a_tiled_stage_reuses_the_input_rows_it_has_sliced():
    # A stage run as per-tile copies of its ops SLICEs the input tile by tile; each band of input rows frees
    # its bytes after the last slice reading it, and later tiles' buffers may take them. Results stay
    # bit-identical to the untiled model without overlapping buffers (TFLM's builtin convs in both).
    source = int8_model("mobilenet_v2_blocks")
    plain = tt.compile(source, update="last", gradient="int8", overlap_buffers=False, **BUILTIN_UNTILED).bytes
    options = CompileOptions(update="last", gradient="int8", memory=MemoryOptions(tiles=(3, 1), flash_requantization=False))
    tiled = compile_with(source, options, ablation=Ablation(fused_stage=False)).bytes
    graph = tt.read_graph(tiled)
    plan = memory.plan_memory(graph)
    image = next(b for b in plan.buffers if b.tensor == graph.inputs[0])
    assert len(image.bands) >= 2 and image.bands[0][2] < image.last
    freed = [
        b
        for b in plan.buffers
        if b.first > image.bands[0][2] and b.offset < image.offset + image.bands[0][1] and b.offset + b.size > image.offset
    ]
    assert freed, "no buffer took the bytes of the first rows"
    for ours, reference in zip(_device_run(tiled), _device_run(plain), strict=True):
        np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("overlap_buffers", [False, True])
def test_a_source_model_plan_does_not_reach_the_training_model(overlap_buffers):
    # The source's plan is for the source's tensors: the training model has its own plan or none.
    graph = tt.read_graph(int8_model("mobilenet_v2_blocks"))
    graph.metadata[memory.OFFLINE_PLAN] = memory.offline_plan(graph)
    model = tt.compile(tt.emit_model(graph), update="last", overlap_buffers=overlap_buffers).bytes
    training = tt.read_graph(model)
    assert (memory.OFFLINE_PLAN in training.metadata) == overlap_buffers
    interpreter = tt.Interpreter(model, 1 << 20)
    interpreter.run(runtime.zero_inputs(model))
    assert interpreter.arena_report().head == memory.plan_memory(training).head


def test_each_target_keeps_the_outputs_its_kernels_would_corrupt_apart():
    """The planned overlaps follow the model's target: the reference kernels' (host) overlap the builtin convs'
    outputs, CMSIS-NN's MVE code (the M55) none of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED
    (target.CMSIS_NN_MVE_NO_OVERLAP). Only the last layer trains, so the forward activations die at once."""
    source = int8_model("mobilenet_v2_blocks")
    overlapped = {}
    for name in ("host", "cortex-m55"):
        graph = tt.read_graph(tt.compile(source, update="last", target=name, **BUILTIN_UNTILED).bytes)
        plan = memory.plan_memory(graph)
        overlapped[name] = {graph.ops[scope - 1].kind for scope, _, _ in plan.shared}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= overlapped["host"]
    assert target("cortex-m55").no_overlap == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert not overlapped["cortex-m55"] & target("cortex-m55").no_overlap, overlapped["cortex-m55"]
    assert overlapped["cortex-m55"], "the M55 still overlaps the other ops' outputs"


def test_cmsis_nn_1x1_convs_overlap_only_where_that_saves_bytes():
    """Under CMSIS-NN a 1x1 TT_CONV_2D over an input it overlaps runs one call per output row, each summing
    every filter row again: the offline plan for a CMSIS-NN target drops such overlaps where its head stays
    at most that of the plan with every overlap, and keeps them for the reference kernels (no cost there)."""

    def pointwise_overlaps(graph, plan):
        scopes = {scope for scope, _, _ in plan.shared}
        ops = [graph.ops[scope - 1] for scope in scopes]
        return [op for op in ops if op.kind == schema_generated.CONV_2D and graph.tensors[op.inputs[1]].shape[1:3] == (1, 1)]

    source = int8_model("mobilenet_v2_blocks")
    options = {"update": "last", "gradient": "int8", "tiles": None, "flash_requantization": True}
    every_overlap = MemoryOptions(tiles=None, overlap_buffers=True)
    for name, dropped in (("cortex-m7", True), ("host", False)):
        graph = tt.read_graph(tt.compile(source, target=name, **options).bytes)
        planned, with_every = memory.plan_memory(graph), memory.plan_memory(graph, every_overlap)
        assert pointwise_overlaps(graph, with_every), name  # the blocks' projections may overlap their inputs
        assert planned.head <= with_every.head, name
        assert (not pointwise_overlaps(graph, planned)) == dropped, name

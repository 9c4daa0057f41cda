"""Patch-based first stage: bit-identical to the untiled graph, and smaller."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from models import int8_model, mobilenet_v2_035_128

import tinytrain_tflm as tt
from tinytrain_tflm import target as targets
from tinytrain_tflm.backend import schema
from tinytrain_tflm.compiler import compile_with
from tinytrain_tflm.firmware import device, sources_root
from tinytrain_tflm.options import Ablation, CompileOptions
from tinytrain_tflm.passes import tiling
from tinytrain_tflm.plan import memory, tiled_stage
from tinytrain_tflm.runtime import interpreter


def _same_outputs(original: bytes, tiled: bytes, samples: int = 3) -> bool:
    graph = tt.read_graph(original)
    shape = graph.tensors[graph.inputs[0]].shape
    a, b = tt.Interpreter(original, 8 << 20), tt.Interpreter(tiled, 8 << 20)
    rng = np.random.default_rng(0)
    for _ in range(samples):
        x = rng.integers(-128, 128, shape, dtype=np.int8)
        if not all(np.array_equal(p, q) for p, q in zip(a.run([x]), b.run([x]), strict=True)):
            return False
    return True


@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (3, 2), (4, 4), (4, 1), (8, 2)])
@pytest.mark.parametrize("length", [5, 9])
def test_tiled_stage_op_is_bit_identical(grid, length):
    # 5: VALID conv, conv, PAD, stride-2 depthwise, conv.  9: also the inverted residual block with its
    # ADD, whose skip input is needed over a smaller window than the expand conv reads. (4, 1): row bands,
    # the last op writing straight into the output. (8, 2): one output row per band, every band computing
    # only the rows the one above did not.
    model = int8_model("mobilenet_v2_blocks")
    graph = tt.read_graph(model)
    tiled, _ = tiling.tile_first_stage(graph, grid, length=length)
    assert [op.kind for op in tiled.ops] == ["TT_TILED_STAGE"] + [op.kind for op in graph.ops[length:]]
    assert _same_outputs(model, tt.emit_model(tiled))


@pytest.mark.parametrize(("grid", "length"), [((2, 2), 5), ((3, 2), 9), ((4, 4), 9)])
def test_per_tile_copies_are_bit_identical(grid, length):
    model = int8_model("mobilenet_v2_blocks")
    tiled, _ = tiling.tile_first_stage(tt.read_graph(model), grid, length=length, fused=False)
    slices_per_tile = 1 if length == 5 else 2  # the residual block's skip input: one more SLICE
    assert [op.kind for op in tiled.ops].count("SLICE") == grid[0] * grid[1] * slices_per_tile
    assert _same_outputs(model, tt.emit_model(tiled))


def test_scratch_plan_is_the_kernels():
    """plan.tiled_stage mirrors the kernel's scratch size (the memory plan reserves it): both agree, and
    refuse the same tilings (more tiles than output rows)."""
    library = interpreter.load_plugin()
    cases = [(int8_model("mobilenet_v2_blocks"), length, grid) for length in (5, 9) for grid in ((1, 1), (3, 2), (4, 1), (9, 1))]
    cases += [(mobilenet_v2_035_128(), 13, grid) for grid in ((4, 4), (8, 1))]
    for model, length, grid in cases:
        graph = tt.read_graph(model)
        stage = graph.ops[:length]
        source = {stage[0].inputs[0]: -1} | {op.outputs[0]: k for k, op in enumerate(stage)}
        description = np.ascontiguousarray([tiling._stage_row(graph, op, source) for op in stage], np.int32)
        shape = graph.tensors[stage[0].inputs[0]].shape
        rows = description.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        theirs = library.TinyTrainTiledStageScratch(rows, length, *grid, *shape[1:])
        ours = tiled_stage.scratch_bytes(description, shape, grid)
        assert (-1 if ours is None else ours) == theirs, (length, grid)
        assert (theirs == -1) == (grid == (9, 1))  # 9 bands of an 8-row output: an empty tile


def _stage_description(graph, length: int) -> np.ndarray:
    stage = graph.ops[:length]
    source = {stage[0].inputs[0]: -1} | {op.outputs[0]: k for k, op in enumerate(stage)}
    return np.ascontiguousarray([tiling._stage_row(graph, op, source) for op in stage], np.int32)


# The stage's scratch as the Cortex-M4/M7 build computes it: kernels/core/stage's get_buffer_size over
# kernels/cmsis_nn's conv get_buffer_size and CMSIS-NN's buffer-size sources with its DSP paths. Built for the
# host: those functions are integer arithmetic on shapes, the same on any CPU with the same macros.
_PROBE = """
#include "tt_functions.h"
extern "C" int32_t probe(const int32_t* rows, int32_t n, int32_t th, int32_t tw, int32_t h, int32_t w, int32_t c) {
  const tt_tiled_stage_params params{rows, n, th, tw};
  const tt_dims input{1, h, w, c};
  int32_t bytes = 0;
  return tt_tiled_stage_get_buffer_size(&params, &input, &bytes) == TT_SUCCESS ? bytes : -1;
}
"""


@pytest.fixture(scope="module")
def cmsis_nn_stage_scratch(tmp_path_factory):
    sources = require(device.locate_sources)
    if sources.cmsis_nn is None:
        pytest.skip("no CMSIS-NN sources")
    kernels, folder = sources_root("kernels/cortex_m/harness") / "kernels", tmp_path_factory.mktemp("probe")
    (folder / "probe.cc").write_text(_PROBE)
    flags = ["-O1", "-fPIC", "-DARM_MATH_DSP", f"-I{kernels / 'core'}", f"-I{sources.cmsis_nn / 'Include'}"]
    units = [folder / "probe.cc", kernels / "core/stage/tt_tiled_stage_get_buffer_size.cc"]
    units += [kernels / f"cmsis_nn/{family}/tt_{family}2d_s8_get_buffer_size.cc" for family in ("conv", "depthwise_conv")]
    c_units = [
        sources.cmsis_nn / f"Source/ConvolutionFunctions/arm_{name}_get_buffer_sizes_s8.c"
        for name in ("convolve", "depthwise_conv")
    ]
    objects = []
    for unit in units + c_units:
        objects.append(folder / f"{unit.stem}.o")
        compiler = ["g++", "-std=c++17"] if unit.suffix == ".cc" else ["gcc", "-w"]
        subprocess.run([*compiler, *flags, "-c", str(unit), "-o", str(objects[-1])], check=True, capture_output=True)
    library = folder / "probe.so"
    subprocess.run(["g++", "-shared", *map(str, objects), "-o", str(library)], check=True, capture_output=True)
    return ctypes.CDLL(str(library)).probe


def test_scratch_plan_counts_the_cmsis_nn_convs(cmsis_nn_stage_scratch):
    """On a Cortex-M4/M7 the stage's convs are CMSIS-NN's, called per output row: the mirror adds what those
    calls ask for after the patches (the 3x3 stem's im2col), as the kernel does, and refuses what it refuses."""
    cases = [(int8_model("mobilenet_v2_blocks"), length, grid) for length in (5, 9) for grid in ((1, 1), (3, 2), (4, 1), (9, 1))]
    cases += [(mobilenet_v2_035_128(), 6, grid) for grid in ((4, 4), (16, 8), (16, 16), (32, 8))]
    grown = 0
    for model, length, grid in cases:
        graph = tt.read_graph(model)
        description, shape = _stage_description(graph, length), graph.tensors[graph.ops[0].inputs[0]].shape
        rows = description.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        theirs = cmsis_nn_stage_scratch(rows, length, *grid, *shape[1:])
        ours = tiled_stage.scratch_bytes(description, shape, grid, convs="dsp")
        assert (-1 if ours is None else ours) == theirs, (length, grid)
        portable = tiled_stage.scratch_bytes(description, shape, grid)
        grown += portable is not None and ours > portable
    assert grown == len(cases) - 2  # every stage starts with a 3x3 conv, which im2cols; (9, 1) is refused


def test_tiled_stage_prepare_refuses_a_tiling_it_cannot_run():
    graph, _ = tiling.tile_first_stage(tt.read_graph(int8_model("mobilenet_v2_blocks")), (2, 2), length=5)
    graph.ops[0].custom_options = schema.encode_blob("TILED_STAGE", num_ops=5, tiles_h=9, tiles_w=2)
    with pytest.raises(tt.TFLMError, match="TT_TILED_STAGE: description .*tiling the stage cannot run"):
        tt.Interpreter(tt.emit_model(graph), 1 << 20)


def test_stage_lengths_end_where_one_tensor_carries_everything_on():
    graph = tt.read_graph(int8_model("mobilenet_v2_blocks"))
    # Not after the PAD (3), nor inside the residual block (6-8), where its skip input is still live.
    assert tiling.stage_lengths(graph) == [1, 2, 4, 5, 9]
    trained = {graph.ops[5].inputs[1]}  # the expand conv's filter
    assert tiling.stage_lengths(graph, trained) == [1, 2, 4, 5]
    with pytest.raises(tt.TinyTrainError, match="cannot hold 6 ops; possible lengths: \\[1, 2, 4, 5, 9\\]"):
        tiling.tile_first_stage(graph, (2, 2), length=6)


@pytest.mark.parametrize(("grid", "length", "arena_ratio"), [((3, 3), None, 0.75), ((2, 3), 13, 0.85)])
def test_tiled_mobilenet_v2_is_bit_identical_and_smaller(grid, length, arena_ratio):
    model = mobilenet_v2_035_128()  # length 13: through the first residual block, down to 16x16; None: the estimate picks
    tiled = tt.emit_model(tiling.tile_first_stage(tt.read_graph(model), grid, length=length)[0])
    assert _same_outputs(model, tiled, samples=2)
    assert tt.minimum_arena_size(tiled) < arena_ratio * tt.minimum_arena_size(model)


def test_training_a_tiled_model_gives_the_same_gradients():
    model = mobilenet_v2_035_128()
    scheme = {"bias_last": 8, "weights": {"52": 1}}
    plain = tt.Trainer(tt.compile(model, update=scheme, gradient="int8", tiles=None))
    tiled = tt.Trainer(tt.compile(model, update=scheme, gradient="int8", tiles=(3, 3)))
    x = np.random.default_rng(1).integers(-128, 128, plain.input.shape, dtype=np.int8)
    ours, theirs = plain.gradients(x, 3), tiled.gradients(x, 3)
    assert set(ours) == set(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_auto_grid_beats_the_untiled_estimate_or_declines():
    big, small = tt.read_graph(mobilenet_v2_035_128()), tt.read_graph(int8_model("ds_cnn"))
    for graph in (big, small):
        best = tiling.tile_auto(graph)
        assert best is None or memory.estimate(best[1]).total < memory.estimate(graph).total
    assert tiling.choose_tiles(big) is not None
    # A 20x10 input: per-tile copies of the stage cost more in ops than they save; one TT_TILED_STAGE may not.
    assert tiling.tile_auto(small, fused=False) is None


def _auto_rule_holds(graph, trained, options) -> None:
    """tile_auto's choice against every candidate's estimate and work: at most MAX_EXTRA_WORK above the
    untiled graph's work, within SPEED_SLACK_BYTES of the smallest estimate so bounded, the least work there."""
    untiled = tiling.forward_work(graph)
    choices = {None: (tiling._estimate(graph, options), untiled)}
    ops = len(graph.ops)
    for grid, tiled, _ in tiling.candidate_tilings(graph, trained):
        choices[(grid, ops - len(tiled.ops))] = (tiling._estimate(tiled, options), tiling.forward_work(tiled))
    allowed = {key: value for key, value in choices.items() if value[1] <= untiled * (1 + tiling.MAX_EXTRA_WORK)}
    smallest = min(size for size, _ in allowed.values())
    near = [work for size, work in allowed.values() if size <= smallest + tiling.SPEED_SLACK_BYTES]
    best = tiling.tile_auto(graph, trained, options)
    chosen = None if best is None else (best[0], ops - len(best[1].ops))
    assert chosen in allowed and allowed[chosen][1] == min(near), (chosen, allowed)
    # the bound decides: a grid it excludes estimates smaller
    assert min(size for size, _ in choices.values()) < smallest


def test_auto_grid_bounds_the_work_then_takes_the_smallest(monkeypatch):
    """MobileNetV2-w0.35 128x128 planned for the Cortex-M7 with CMSIS-NN, overlapping buffers on and flash
    requantization off, op 14 training (stages of up to 13 ops): the 13-op stage in 16x16 tiles estimates
    smallest but recomputes more than MAX_EXTRA_WORK; auto keeps to the bound. Three grids keep it short."""
    graph = tt.read_graph(mobilenet_v2_035_128())
    graph.metadata[targets.TARGET_METADATA] = targets.target("cortex-m7", "cmsis-nn").metadata()
    options = memory.MemoryOptions(tiles="auto", overlap_buffers=True, flash_requantization=False)
    monkeypatch.setattr(tiling, "GRIDS", ((4, 4),))
    monkeypatch.setattr(tiling, "FINE_GRIDS", ((16, 16),))
    monkeypatch.setattr(tiling, "BAND_STRIPS", (4,))
    _auto_rule_holds(graph, {graph.ops[13].inputs[1]}, options)


def test_a_trained_layer_in_the_stage_is_refused():
    with pytest.raises(tt.TinyTrainError, match=r"op 0 \(CONV_2D\) is in the tiled first stage but trains"):
        tt.compile(int8_model("mobilenet_v2_blocks"), update="all", tiles=(2, 2))


def test_export_runs_the_stage_as_builtin_ops():
    """Stock TFLM has no TT_TILED_STAGE: export restores the stage's ops, giving the untiled model's outputs."""
    model = int8_model("mobilenet_v2_blocks")
    exported = tt.Trainer(tt.compile(model, update="last", tiles=(2, 2))).export()
    assert [op.kind for op in tt.read_graph(exported).ops] == [op.kind for op in tt.read_graph(model).ops]
    assert _same_outputs(tt.Trainer(tt.compile(model, update="last")).export(), exported)


# Every option stated: int8 gradients, 2x2 tiles over the stage through the residual ADD (9 ops), overlapping
# buffers, no flash requantization, the classifier training, host kernels.
STREAM_OPTIONS = {
    "update": "last",
    "gradient": "int8",
    "tiles": (2, 2),
    "overlap_buffers": True,
    "flash_requantization": False,
}


def test_streamed_sample_trains_bit_identically_and_leaves_the_arena():
    """compile(stream_input=True): the sample is no graph input and no arena tensor; the Trainer hands it to
    the stage (the host's SetStreamedInput), and steps, predictions and the export equal the same model's
    with its sample in the arena. The arena shrinks by at least the part of the sample it held alone."""
    model = int8_model("mobilenet_v2_blocks")
    plain = tt.compile(model, **STREAM_OPTIONS).bytes
    streamed = tt.compile(model, stream_input=True, **STREAM_OPTIONS).bytes
    graph, plain_graph = tt.read_graph(streamed), tt.read_graph(plain)
    assert len(graph.inputs) == len(plain_graph.inputs) - 1
    stage = next(op for op in graph.ops if op.kind == "TT_TILED_STAGE")
    assert stage.inputs[0] == -1 and graph.tensors[stage.inputs[-1]].data.tolist() == [1, 16, 16, 3]
    a, b = tt.Trainer(plain), tt.Trainer(streamed)
    rng = np.random.default_rng(1)
    for _ in range(4):
        x, label = rng.uniform(-1, 1, a.input.shape[1:]).astype(np.float32), int(rng.integers(0, 5))
        assert a.step(x, label) == b.step(x, label)
        assert np.array_equal(a.predict(x), b.predict(x))
    assert a.export() == b.export()
    assert memory.estimate(graph).total < memory.estimate(plain_graph).total
    assert tt.minimum_arena_size(streamed) < tt.minimum_arena_size(plain)


def test_streamed_sample_errors():
    """A missing or short source fails the invoke with TFLM's one-line message; stream_input without a
    fused tiled stage is refused at compile time."""
    model = int8_model("mobilenet_v2_blocks")
    streamed = tt.compile(model, stream_input=True, **STREAM_OPTIONS).bytes
    runner = tt.Interpreter(streamed, 4 << 20)
    inputs = [np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros(1, np.float32)]
    runner.stream_sample(None)
    with pytest.raises(tt.TFLMError, match="streams its sample: call tinytrain::SetStreamedInput"):
        runner.run(inputs)
    runner.stream_sample(np.zeros(16 * 16 * 3 - 1, np.int8))
    with pytest.raises(tt.TFLMError, match=r"holds 767 bytes; the model's int8 sample \[1, 16, 16, 3\] needs 768"):
        runner.run(inputs)
    with pytest.raises(tt.TinyTrainError, match="stream_input streams the sample into the tiled first stage: it needs tiles"):
        tt.compile(model, stream_input=True, **(STREAM_OPTIONS | {"tiles": None}))
    per_tile = CompileOptions("last", memory=memory.MemoryOptions((2, 2), True, False, stream_input=True))
    with pytest.raises(tt.TinyTrainError, match="stream_input needs the model's first stage tiled as one TT_TILED_STAGE"):
        compile_with(model, per_tile, ablation=Ablation(fused_stage=False))
    # tiles "auto" with nothing to stream: a first layer that trains, or a stage not worth tiling (small_cnn).
    small = (Path(__file__).parent / "data" / "small_cnn.tflite").read_bytes()
    with pytest.raises(tt.TinyTrainError, match="needs a frozen first stage to tile and this model has none: its first layer"):
        tt.compile(model, stream_input=True, **(STREAM_OPTIONS | {"update": "all", "tiles": "auto"}))
    with pytest.raises(tt.TinyTrainError, match=r"'auto' leaves this model's first stage untiled .* e\.g\. --tile 2x2"):
        tt.compile(small, stream_input=True, **(STREAM_OPTIONS | {"tiles": "auto"}))
    with pytest.raises(tt.TinyTrainError, match=r"tiles takes 'auto', None or a grid \(rows, cols\), got '2x2'"):
        tt.compile(small, **(STREAM_OPTIONS | {"tiles": "2x2"}))


def test_streamed_sample_through_a_row_reader():
    """The firmware's other source, a row reader (a camera delivering rows): the stage asks it for each row
    of each tile's patch, the outputs equal the image source's, and a reader's error stops the invoke.
    Options: STREAM_OPTIONS (int8 gradients, 2x2 tiles, overlapping buffers, no flash requantization)."""
    streamed = tt.compile(int8_model("mobilenet_v2_blocks"), stream_input=True, **STREAM_OPTIONS).bytes
    runner = tt.Interpreter(streamed, 4 << 20)
    inputs = [np.full(1, 2, np.int32), np.full(1, 3, np.int32), np.zeros(1, np.float32)]  # label 2, train
    image = np.random.default_rng(2).integers(-128, 128, (16, 16, 3), dtype=np.int8)
    runner.stream_sample(image)
    expected = runner.run(inputs)
    runner.reset()
    asked = []
    failing = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)
    def read(_, row, col, cols, out):
        asked.append((row, col, cols))
        if failing:
            return 1  # any status but TT_SUCCESS
        ctypes.memmove(out, image[row, col : col + cols].tobytes(), cols * 3)
        return 0

    library = interpreter.load_plugin()
    library.TinyTrainSetStreamedInput(None, 0, ctypes.cast(read, ctypes.c_void_p), None)
    try:
        outputs = runner.run(inputs)
        assert all(np.array_equal(a, b) for a, b in zip(outputs, expected, strict=True))
        assert {row for row, _, _ in asked} == set(range(16)) and len(asked) > 16  # halo rows asked again
        failing.append(True)
        with pytest.raises(tt.TFLMError, match="row reader"):
            runner.run(inputs)
    finally:
        runner.stream_sample(None)

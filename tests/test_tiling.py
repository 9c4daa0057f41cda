"""Patch-based first stage: bit-identical to the untiled graph, and smaller."""

from __future__ import annotations

import numpy as np
import pytest
from models import int8_model, mobilenet_v2_035_128

import tinytrain_tflm as tt
from tinytrain_tflm.passes import tiling
from tinytrain_tflm.plan import memory


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


@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (3, 2), (4, 4)])
@pytest.mark.parametrize("length", [5, 9])
def test_tiled_blocks_are_bit_identical(grid, length):
    # 5: VALID conv, conv, PAD, stride-2 depthwise, conv.  9: also the inverted residual block with its
    # ADD, whose skip input is needed over a smaller window than the expand conv reads (one more SLICE).
    model = int8_model("mobilenet_v2_blocks")
    tiled, _ = tiling.tile_first_stage(tt.read_graph(model), grid, length=length)
    slices_per_tile = 0 if grid == (1, 1) else 1 if length == 5 else 2  # one tile reads whole tensors: no SLICE
    assert [op.kind for op in tiled.ops].count("SLICE") == grid[0] * grid[1] * slices_per_tile
    assert _same_outputs(model, tt.emit_model(tiled))


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
    plain = tt.Trainer(tt.compile(model, update=scheme, gradient="int8"))
    tiled = tt.Trainer(tt.compile(model, update=scheme, gradient="int8", tiles=(3, 3)))
    x = np.random.default_rng(1).integers(-128, 128, plain.input.shape, dtype=np.int8)
    ours, theirs = plain.gradients(x, 3), tiled.gradients(x, 3)
    assert set(ours) == set(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_auto_grid_beats_the_untiled_estimate_or_declines():
    big, small = tt.read_graph(mobilenet_v2_035_128()), tt.read_graph(int8_model("ds_cnn"))
    assert tiling.choose_tiles(big) is not None
    grid = tiling.choose_tiles(big)
    assert memory.estimate(tiling.tile_first_stage(big, grid)[0]).total < memory.estimate(big).total
    assert tiling.choose_tiles(small) is None  # a 20x10 input: repeating ops costs more than it saves


def test_a_trained_layer_in_the_stage_is_refused():
    with pytest.raises(tt.TinyTrainError, match=r"op 0 \(CONV_2D\) is in the tiled first stage but trains"):
        tt.compile(int8_model("mobilenet_v2_blocks"), update="all", tiles=(2, 2))

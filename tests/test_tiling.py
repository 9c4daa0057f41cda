"""Patch-based first stage: bit-identical to the untiled graph, and smaller."""

from __future__ import annotations

import numpy as np
import pytest
from models import int8_model, mobilenet_v2_035_128

import tinytrain_tflm as tt
from tinytrain_tflm import memory, tiling


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
def test_tiled_blocks_are_bit_identical(grid):
    model = int8_model("mobilenet_v2_blocks")  # stage: VALID conv, conv, PAD, stride-2 depthwise, conv
    tiled, _ = tiling.tile_first_stage(tt.read_graph(model), grid)
    assert [op.kind for op in tiled.ops].count("SLICE") == grid[0] * grid[1]
    assert _same_outputs(model, tt.emit_model(tiled))


@pytest.mark.parametrize("grid", [(3, 3), (2, 3)])
def test_tiled_mobilenet_v2_is_bit_identical_and_smaller(grid):
    model = mobilenet_v2_035_128()
    tiled = tt.emit_model(tiling.tile_first_stage(tt.read_graph(model), grid)[0])
    assert _same_outputs(model, tiled, samples=2)
    assert tt.minimum_arena_size(tiled) < 0.75 * tt.minimum_arena_size(model)


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

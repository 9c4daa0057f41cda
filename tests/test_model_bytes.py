"""The training model's bytes, pinned: a refactoring of the compiler must not change what it emits.

Each case compiles a source model checked in under tests/data/ (so the hashes do not depend on the
TensorFlow converter) and compares the sha256 of the training model with the one recorded when the
case was added. A deliberate change of the output updates the hashes in the same commit, saying why.
`python tests/test_model_bytes.py` regenerates the source models from tests/models.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import tinytrain_tflm as tt
from tinytrain_tflm.compiler import compile_with
from tinytrain_tflm.options import Ablation, CompileOptions, MemoryOptions
from tinytrain_tflm.passes import partial
from tinytrain_tflm.target import target

DATA = Path(__file__).parent / "data"
MODELS = ("mobilenet_v2_blocks", "ds_cnn", "small_cnn")
PARTIAL = {"bias_last": 3, "weights": {"7": 0.5, "6": 0.25, "4": 0.5}}  # FC 3/5, two pointwise convs 2/8 and 4/8

# compile()'s defaults when these hashes were recorded: the reference float32 gradients, no tiling, requantization
# in the arena. Each case states what it changes from them, so a change of the defaults changes no hash here.
PINNED_DEFAULTS = {"gradient": "float32", "tiles": None, "flash_requantization": False}

# (model, compile() options or CompileOptions fields with an "ablation", sha256 of the training model)
# The int8-gradient cases changed with delayed scaling: the scale tensor of each gradient a backward op
# quantizes became a variable float32 [3] holding its history (kernels/core/tt_types.h); every
# float32-gradient case kept its bytes. The cases whose graph has a MEAN changed their offline plan when the
# plan began to reserve TFLM's MEAN scratch (an int32 accumulator per output element, placed by TFLM in a gap
# the plan leaves; before, TFLM could find none at the peak and put it above the plan's head). The two cases
# with a ReLU backward on a mask fed by a conv or depthwise input gradient changed when that pair became one
# op (tinytrain_tflm.passes.fusion): the prune_backward=False and split_partial=False ones. Every case that
# trains a bias with immediate updates and no accumulator changed when its TT_BIAS_GRAD folded into the
# bias's TT_SGD (the same pass); the fuse_bias_updates=False case keeps the unfused graph's bytes, which
# were those of the first case.
CASES = [
    (
        "mobilenet_v2_blocks",
        {"ablation": Ablation(fuse_bias_updates=False)},
        "8baf3f9d8b42c55ab05435128e572838a2904d5c1874eb4213c40985591df519",
    ),
    ("mobilenet_v2_blocks", {}, "3d99c2ac3e44483d94e5ae7f419f387ea4323ec85dc05e9758747bb3845a5c69"),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8"},
        "0c5d913967ba2ac24c68d22402f8a6e4af5ba856b4aff065c955d9c73ae9e50f",
    ),
    # "auto" finds a grid that beats the untiled first stage here once the stage is one TT_TILED_STAGE op
    # (per-tile copies of its ops cost more than they saved). With MAX_EXTRA_WORK it takes 2x2 tiles over 4
    # ops (8,104 B measured on the host): 4x4 over 5 (6,808 B) adds 42% to this small model's forward work.
    (
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": "auto"},
        "b439b675089a11e74b5351a0251fa86940c6561b0eb27b3675216eb3cdcf2edb",
    ),
    (  # the stage's bands keep rows for the next band: its scratch plan changed
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": (2, 3), "gradient": "int8"},
        "e26fd01ad2aac78b8053582b659d651d4d7f467451de65cbf677ad956bc1be00",
    ),
    # The per-tile copies: the bytes the (2, 3) case had before TT_TILED_STAGE existed
    (
        "mobilenet_v2_blocks",
        {"update": "last", "gradient": "int8", "tiles": (2, 3), "ablation": Ablation(fused_stage=False)},
        "b11574f33a725d354eec2857ac67415acaeffeb545d4637fdf06269c4c146ae1",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8", "flash_requantization": True},
        "904d925750066182d81ebe55800b6dbea4a29d240974c3070137858283173762",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "tiles": "auto", "flash_requantization": True},
        "f18b4f9c78e39899b32b133c71d9c957004c0b6bc0ebd91ab674fe2aa5b3ff4c",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "overlap_buffers": False},
        "deb095a8f1095f03019fb3a80da4b691338907b1010cefdf170df2416379bb9f",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": "cortex-m7"},
        "a1504a5aa9af54396958d6196462fb36c82572222050ce866dd4780bb7abb895",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": target("cortex-m7", "reference")},
        "bedaa6db9f98e3d785febe58ef139b747cdba6bc5897cc3bccbc0a0501f8f000",
    ),
    (
        "ds_cnn",
        {"update": "all", "ablation": Ablation(immediate_updates=False)},
        "5f6f15d3d22edf8de0470cb448ffec196aa4bfa12d5e73324ce68786bb807c7f",
    ),
    (
        "ds_cnn",
        {"update": {"weights": {"1": 1}}, "ablation": Ablation(prune_backward=False)},
        "d436eb37366ccef6e763c7c6b52220e25f55a32bf8ecfd748734bceb1cf44d9c",
    ),
    # Unfused, the same case keeps the bytes it had before tinytrain_tflm.passes.fusion existed.
    (
        "ds_cnn",
        {"update": {"weights": {"1": 1}}, "ablation": Ablation(prune_backward=False, fuse_backward=False)},
        "3a72fc159552e4981621c32214b4b0cdbaa5b47d00869f2d02f8722e158bce17",
    ),
    (
        "ds_cnn",
        {"update": "all", "gradient": "int8", "ablation": Ablation(schedule_for_planner=False)},
        "be3de7e0c38c72811061b0367537ad4eadda2d54bbe846ab6888c8d3c632b361",
    ),
    (
        "ds_cnn",
        {"update": "all", "activation_masks": False, "label_smoothing": 0.1},
        "49a3893cb8d6fd9894a2b9c29c6897b4df49015237ecde987d3369fd0dc77247",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9)},
        "ccd5cf1d218cba8399a87114cde8587a932217daa5a8791686bd3e81d7eb3f6b",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9, accumulate=True)},
        "da54b7d86deecbe29ea342ca24d36596f82697feb1dc5517cbe31bad40cb9455",
    ),
    (
        "small_cnn",
        {"update": "all", "gradient": "int8", "optimizer": tt.SGD(rounding="nearest", qas=False)},
        "de25a90be5a083ccbf72a570b60bc84c50916ecc5ed5eb0eba8bbee45c563c28",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(rounding="truncate", seed=7), "target": "cortex-m4"},
        "95c593a7edbcd739ba78b6e66077db615eded9c8681a7cf10d69fdfffaac3ef7",
    ),
]
# Partially trained layers, split even where that costs more than it saves (as it does in these small models).
PARTIAL_CASES = [
    ("mobilenet_v2_blocks", {"update": PARTIAL}, "d41e72d5812270dc96e493b365ffe28365bf94a79220bc5ebdeb5752c1e7e441"),
    (
        "mobilenet_v2_blocks",
        {"update": {"weights": {"6": 0.5, "7": 0.5}}, "gradient": "int8", "tiles": (2, 2)},
        "905686ce4c3453242fa5dd232e4071d80f59db5f23bad559772a36681c9bde2f",  # the stage as TT_TILED_STAGE
    ),
    (
        "mobilenet_v2_blocks",
        {"update": PARTIAL, "ablation": Ablation(split_partial=False)},
        "521ad55bfe196dfe176312e1e069922cea77d2231d48877b057d4027c8f3836f",
    ),
]


@pytest.mark.parametrize(("model", "options", "sha256"), CASES, ids=lambda value: str(value)[:60])
def test_training_model_bytes_unchanged(model, options, sha256):
    source, options = (DATA / f"{model}.tflite").read_bytes(), {**PINNED_DEFAULTS, **options}
    ablation = options.pop("ablation", None)
    if ablation is None:
        training = tt.compile(source, **options)
    else:
        memory_options = MemoryOptions(options.pop("tiles"), flash_requantization=options.pop("flash_requantization"))
        training = compile_with(source, CompileOptions(**options, memory=memory_options), ablation=ablation)
    assert hashlib.sha256(training.bytes).hexdigest() == sha256


@pytest.mark.parametrize(("model", "options", "sha256"), PARTIAL_CASES, ids=lambda value: str(value)[:60])
def test_partial_training_model_bytes_unchanged(model, options, sha256, monkeypatch):
    monkeypatch.setattr(partial, "MIN_SAVING_BYTES", 0)
    monkeypatch.setattr(partial, "OUTPUT_FACTOR", 0)
    test_training_model_bytes_unchanged(model, options, sha256)


if __name__ == "__main__":
    from models import int8_model

    for name in MODELS:
        (DATA / f"{name}.tflite").write_bytes(int8_model(name))

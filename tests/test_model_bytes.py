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
# op (tinytrain_tflm.passes.fusion): the prune_backward=False and split_partial=False ones.
CASES = [
    ("mobilenet_v2_blocks", {}, "8baf3f9d8b42c55ab05435128e572838a2904d5c1874eb4213c40985591df519"),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8"},
        "0fbec5a57a7981eb8b658c980746c600d9db940ceb09a086d68f2d8ec62b046b",
    ),
    # "auto" finds a grid that beats the untiled first stage here once the stage is one TT_TILED_STAGE op
    # (per-tile copies of its ops cost more than they saved). With MAX_EXTRA_WORK it takes 2x2 tiles over 4
    # ops (8,104 B measured on the host): 4x4 over 5 (6,808 B) adds 42% to this small model's forward work.
    (
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": "auto"},
        "ae0608ab7fcb0dc5a361aa6b14d7391ff08a4840392e2a50afde44243e2eeffe",
    ),
    (  # the stage's bands keep rows for the next band: its scratch plan changed
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": (2, 3), "gradient": "int8"},
        "19ad5e5236c8b8a678556e04d5fb3a0abfea8a0e0749c9ac884fce559e832173",
    ),
    # The per-tile copies: the bytes the (2, 3) case had before TT_TILED_STAGE existed
    (
        "mobilenet_v2_blocks",
        {"update": "last", "gradient": "int8", "tiles": (2, 3), "ablation": Ablation(fused_stage=False)},
        "53d62fa79a44f68a253398999c7b8b5fa26437a618fe4bd281d3b8237b869922",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8", "flash_requantization": True},
        "d9045d8c758c5581cd104141860fa0ceba2f353a6d2446b49a1d5416b7bbdb7d",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "tiles": "auto", "flash_requantization": True},
        "ce66720d975c4c42e70991dfc07387db0628dfe9e3bd183b84ee051ea89e9c9d",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "overlap_buffers": False},
        "868144f4e4d5906160b80362fde73cd72e257cf8127c8a45be96c94c0d2e662e",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": "cortex-m7"},
        "61a2f7a44abfce397ba6623fa240dab0ab2d1500ff764718de21fe836d3ef84e",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": target("cortex-m7", "reference")},
        "e389af82af139a41cbc313014d8e6ea59600985a6d4bb6b4ed470f1ec36c09f1",
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
        "2517cd4e046ffb3df600129cf4a2afb547bb0b0f128f7c70353deabaedd26253",
    ),
    (
        "ds_cnn",
        {"update": "all", "activation_masks": False, "label_smoothing": 0.1},
        "c816fbe31b063a77e2b5a255bc8d563d30787ce777ba76012699bd7b727366f1",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9)},
        "6ba2b779edbca6104e260f39beddb224507cd39633f0277a3b7645a900a96d28",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9, accumulate=True)},
        "da54b7d86deecbe29ea342ca24d36596f82697feb1dc5517cbe31bad40cb9455",
    ),
    (
        "small_cnn",
        {"update": "all", "gradient": "int8", "optimizer": tt.SGD(rounding="nearest", qas=False)},
        "7f5507688a87f21c7eb20e7717b71c35475d0a2bf36b482160e3df523308c8bb",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(rounding="truncate", seed=7), "target": "cortex-m4"},
        "af72759971469dd97a5ac7653c5d33f30b649e17c514321dd88d61dddef3563b",
    ),
]
# Partially trained layers, split even where that costs more than it saves (as it does in these small models).
PARTIAL_CASES = [
    ("mobilenet_v2_blocks", {"update": PARTIAL}, "830bb8f39aba9b5fdc19415f2c9beddbbd1aaaedb5b12df1ac50c5e7c57815c7"),
    (
        "mobilenet_v2_blocks",
        {"update": {"weights": {"6": 0.5, "7": 0.5}}, "gradient": "int8", "tiles": (2, 2)},
        "905686ce4c3453242fa5dd232e4071d80f59db5f23bad559772a36681c9bde2f",  # the stage as TT_TILED_STAGE
    ),
    (
        "mobilenet_v2_blocks",
        {"update": PARTIAL, "ablation": Ablation(split_partial=False)},
        "acbc41a3b66b81ed13d814319d94c96d27bd40c2ba2bbe4858d6aa5461e1e924",
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

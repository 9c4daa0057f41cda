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
# were those of the first case. The activation_masks=False case changed its offline plan only, at the same
# arena (15,128 B measured on x86), when a RESHAPE's output could no longer lie partly over its input: the
# old plan put the flatten gradient's RESHAPE output 320 B below its input, which TFLM's kernel copies with
# memcpy between overlapping bytes (tinytrain_tflm.plan.overlap).
CASES = [
    (
        "mobilenet_v2_blocks",
        {"ablation": Ablation(fuse_bias_updates=False)},
        "76eadaa79e7dbdb7974e1bf959e3289b2a490c46cc3bf50fb935bca034796258",
    ),
    ("mobilenet_v2_blocks", {}, "01a92bba2abde6b980f1f92f6c2599e04e76b1cf1a832418937b349ae874593b"),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8"},
        "3d618c2dc93e2320b2b9c04c7873b17092cd6290e0f19c722e09bfd69aa8f204",
    ),
    # "auto" finds a grid that beats the untiled first stage here once the stage is one TT_TILED_STAGE op
    # (per-tile copies of its ops cost more than they saved). With MAX_EXTRA_WORK it takes 2x2 tiles over 4
    # ops (8,104 B measured on the host): 4x4 over 5 (6,808 B) adds 42% to this small model's forward work.
    (
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": "auto"},
        "d0044bc3d91d5dce20c4d403b1bf8ebce9d24fe4e8e02bd90d040a096e579693",
    ),
    (  # the stage's bands keep rows for the next band: its scratch plan changed
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": (2, 3), "gradient": "int8"},
        "bc03f9d11c8d72d6562d1dd553a5e11806757cf949bfae06ceadd390ec7d42f0",
    ),
    # The per-tile copies: the bytes the (2, 3) case had before TT_TILED_STAGE existed
    (
        "mobilenet_v2_blocks",
        {"update": "last", "gradient": "int8", "tiles": (2, 3), "ablation": Ablation(fused_stage=False)},
        "849ca83d29b72359c79ff02ecc2c08e8ab50d0739bc5d23a0fe9edbc432df9c0",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8", "flash_requantization": True},
        "489d18e1378524ce8ac7816bbabda70d9b15563c1231342f91a24f7c916ff2f0",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "tiles": "auto", "flash_requantization": True},
        "1a68a677888492199def717232b07ef4ea2158a3c0372e4a3b47617572091b42",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "overlap_buffers": False},
        "c49139a6281965a6547c6f2a212eaddd2331c539be9d955822e8d40a51129397",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": "cortex-m7"},
        "e64591267f7f2ae1681aa55f2ce65985d97d83d1e4fb7c6b205f3837ae525452",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": target("cortex-m7", "reference")},
        "84c4819ee7a0bebd23f4bec6e326dae16f02a05b314f268094b218f9d6c849a7",
    ),
    (
        "ds_cnn",
        {"update": "all", "ablation": Ablation(immediate_updates=False)},
        "95dd776de465f8a313d199a2f41ea9799608305b042f5b534a49f4114a41e365",
    ),
    (
        "ds_cnn",
        {"update": {"weights": {"1": 1}}, "ablation": Ablation(prune_backward=False)},
        "5252afb3a7cff38c78eb654f3396811b6fd4b75446043087e7ec336c490cf69d",
    ),
    # Unfused, the same case keeps the bytes it had before tinytrain_tflm.passes.fusion existed.
    (
        "ds_cnn",
        {"update": {"weights": {"1": 1}}, "ablation": Ablation(prune_backward=False, fuse_backward=False)},
        "378219c2049197e20b63a185bda020c33f150438e37c7de01a216e1768178749",
    ),
    (
        "ds_cnn",
        {"update": "all", "gradient": "int8", "ablation": Ablation(schedule_for_planner=False)},
        "fc91df88cef306bb751d86db9b3b3cfd98b32a14b20fcc0e802bc42c5d1f8eb5",
    ),
    (
        "ds_cnn",
        {"update": "all", "activation_masks": False, "label_smoothing": 0.1},
        "a20c287a428ac7d21e4315e048ddf558712d7ab4b5e9c56d4ccf15e62e23fa31",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9)},
        "85f8a576b7ec34a43c3e4757258a100667448949c10ed6d33d3dd577041879f4",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9, accumulate=True)},
        "abc49678853ebbd1cd87b625210321f900b770ca81364f3f680af33d2520c2c3",
    ),
    (
        "small_cnn",
        {"update": "all", "gradient": "int8", "optimizer": tt.SGD(rounding="nearest", qas=False)},
        "db21c42472426142de5c7348e9fc46454ab3e3e513a3269e171350006b61ac53",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(rounding="truncate", seed=7), "target": "cortex-m4"},
        "59f995249142b2e95668d3698afe4fed69bdf505854e6e937fe9829cb02d063d",
    ),
]
# Partially trained layers, split even where that costs more than it saves (as it does in these small models).
PARTIAL_CASES = [
    ("mobilenet_v2_blocks", {"update": PARTIAL}, "7ff17cd56c5440f2b57b80bc347e42971dd1d9487513f43c57d05cc565e9162f"),
    (
        "mobilenet_v2_blocks",
        {"update": {"weights": {"6": 0.5, "7": 0.5}}, "gradient": "int8", "tiles": (2, 2)},
        "9d517c0534099ed4688aa257c5d105a7662e20687feeb54ec9917b60046d1b4e",  # the stage as TT_TILED_STAGE
    ),
    (
        "mobilenet_v2_blocks",
        {"update": PARTIAL, "ablation": Ablation(split_partial=False)},
        "19e5e7eac1628ffe9ad445739eba7428c0dd7fae46d2d911a89b184ed0d71bc8",
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

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
    ("mobilenet_v2_blocks", {}, "76eadaa79e7dbdb7974e1bf959e3289b2a490c46cc3bf50fb935bca034796258"),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8"},
        "ec572481a618045c5afd024d7780b30dec6abaadc338363409c62439edd1a5b3",
    ),
    # "auto" finds a grid that beats the untiled first stage here once the stage is one TT_TILED_STAGE op
    # (per-tile copies of its ops cost more than they saved). With MAX_EXTRA_WORK it takes 2x2 tiles over 4
    # ops (8,104 B measured on the host): 4x4 over 5 (6,808 B) adds 42% to this small model's forward work.
    (
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": "auto"},
        "44a4782a0f2620f6645f6a698f3a660adb91bd8b73b78a8d9538e1a3e985fe1d",
    ),
    (  # the stage's bands keep rows for the next band: its scratch plan changed
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": (2, 3), "gradient": "int8"},
        "d958d6ea5dfcea7dc896ddbeb1451eff1c8e7bb8fead264b4f0566649b1f6db5",
    ),
    # The per-tile copies: the bytes the (2, 3) case had before TT_TILED_STAGE existed
    (
        "mobilenet_v2_blocks",
        {"update": "last", "gradient": "int8", "tiles": (2, 3), "ablation": Ablation(fused_stage=False)},
        "bb9b5ee7dd9fb3010b5ccc1bcc6830e91391dbd08a3589fefc05dadcd6d85a5c",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8", "flash_requantization": True},
        "3d2cd049c89cfeacf07243127ac3f378fadb17ef6405f5bd4692f89c10df8d38",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "tiles": "auto", "flash_requantization": True},
        "4eb7f211f3a39e3753cf224acfbd5ad9275148e8c72a66a2a51ae96072c1e937",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "overlap_buffers": False},
        "e29801e01e474c710ae8ed87e3c2a0552453de5d670c3cc8956af476fa4621c8",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": "cortex-m7"},
        "51b88f4fece798b6bb45836cd80bf53401546376dff58120bf9277009a5c2cb3",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": target("cortex-m7", "reference")},
        "f11807798f6764be842e78eab9281ac925e05761e535776c173ebc56feb237fb",
    ),
    (
        "ds_cnn",
        {"update": "all", "ablation": Ablation(immediate_updates=False)},
        "d65543e157ea8566cac01f0152cf1c41fdfde39c76e3483dcd9ab17f6e4d6206",
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
        "223cf6cdf21d73d9aa4c0e34b48f1cab6987272468c3b809aba6670006ac3729",
    ),
    (
        "ds_cnn",
        {"update": "all", "gradient": "int8", "ablation": Ablation(schedule_for_planner=False)},
        "dff43a09ec476c1a164bda65a7ee03c63a4a2b2a2d7d54f6c2318af2e16b712c",
    ),
    (
        "ds_cnn",
        {"update": "all", "activation_masks": False, "label_smoothing": 0.1},
        "7e06ac193bdfa5524ef63049542dfb982a2f45aa2404378995473e72a5862e54",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9)},
        "56d65d7820497f3eb52e83c4c2a1bfecdccd0bcef0980f021d6539f1a8ccb8f3",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9, accumulate=True)},
        "abc49678853ebbd1cd87b625210321f900b770ca81364f3f680af33d2520c2c3",
    ),
    (
        "small_cnn",
        {"update": "all", "gradient": "int8", "optimizer": tt.SGD(rounding="nearest", qas=False)},
        "706318251f8115756e722a559b8d9a1eb375be463d2104cb18bcbdfe69661afe",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(rounding="truncate", seed=7), "target": "cortex-m4"},
        "ef21104b67852ad72f572375d1b63792abb749e2cedddc769910f05ed2a3bb7d",
    ),
]
# Partially trained layers, split even where that costs more than it saves (as it does in these small models).
PARTIAL_CASES = [
    ("mobilenet_v2_blocks", {"update": PARTIAL}, "e0f74b1d048be7eff43386cfc919ea249bc7e572dd15d6801043ac887caa1a95"),
    (
        "mobilenet_v2_blocks",
        {"update": {"weights": {"6": 0.5, "7": 0.5}}, "gradient": "int8", "tiles": (2, 2)},
        "9d517c0534099ed4688aa257c5d105a7662e20687feeb54ec9917b60046d1b4e",  # the stage as TT_TILED_STAGE
    ),
    (
        "mobilenet_v2_blocks",
        {"update": PARTIAL, "ablation": Ablation(split_partial=False)},
        "02205b407206ec5289e76b6529742e2dfc7bf5f26838fc077b8c56b264abbd0b",
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

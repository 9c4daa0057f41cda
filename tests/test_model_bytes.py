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

# (model, compile() options or CompileOptions fields with an "ablation", sha256 of the training model)
CASES = [
    ("mobilenet_v2_blocks", {}, "3a60f31760fb28f019ee005cf6460b2f833d1e01f2798c1e854c93f09cc3936e"),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8"},
        "2d1fbdf4986a7c93fece27d53eefae992eb55f3f360d13411356428ab917c94a",
    ),
    # "auto" finds a grid that beats the untiled first stage here once the stage is one TT_TILED_STAGE op
    # (per-tile copies of its ops cost more than they saved)
    (
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": "auto"},
        "47b754bbf1aaaf1caa4593e352111fa8a0e4eff68c8bfe58a21f057ec581dad2",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "last", "tiles": (2, 3), "gradient": "int8"},
        "066778d67dcfd7121c4ecaea7af08a9063147c4928942ac988406fa30fae04c5",
    ),
    # The per-tile copies, unchanged since before TT_TILED_STAGE existed
    (
        "mobilenet_v2_blocks",
        {"update": "last", "gradient": "int8", "memory": MemoryOptions(tiles=(2, 3)), "ablation": Ablation(fused_stage=False)},
        "42f678bca2b3cd6a12878363e7e878c39e71a3502ef82f6fd71f5a1d40072b94",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "gradient": "int8", "flash_requantization": True},
        "1082043e39d79bee7ab2f141d262112ceb5066fda2bb2d75c9e58f128ada978e",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "tiles": "auto", "flash_requantization": True},
        "6656490d2680f63d2acfcf17025debe693390bb911c41f04e7200e5e3a8219e4",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "overlap_buffers": False},
        "38a7971075275ecd374cfe03a70377bff61b24c91b250bf9f8f1a08c57be8a07",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": "cortex-m7"},
        "849f4a1c15d1b5c925c2f30b624e411e7e3bcba142205f24ac6dcbb6e59a2eb4",
    ),
    (
        "mobilenet_v2_blocks",
        {"update": "all", "target": target("cortex-m7", "reference")},
        "26e276af03eff181c34972563cbccaca33525fad0d29956c1c8248b95bac9415",
    ),
    (
        "ds_cnn",
        {"update": "all", "ablation": Ablation(immediate_updates=False)},
        "935f4e1e094cafc560b378d167e14ab6d9a6066f5ee8cb182dc6dab81a89014a",
    ),
    (
        "ds_cnn",
        {"update": {"weights": {"1": 1}}, "ablation": Ablation(prune_backward=False)},
        "c5e089b54f3bc746396a8fbd99423100ff0f59531c9da8582c30b83353b9317d",
    ),
    (
        "ds_cnn",
        {"update": "all", "gradient": "int8", "ablation": Ablation(schedule_for_planner=False)},
        "e5559cdc79cb969dc4a9e01c44baacc3d0df31d46e6f378a169ca6b9505ce30a",
    ),
    (
        "ds_cnn",
        {"update": "all", "activation_masks": False, "label_smoothing": 0.1},
        "3ce9a5e1e92c678640201219952532968b4f13cd5d0ae1f8a4224befc0469b2d",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(lr=0.05, momentum=0.9)},
        "08c566d1c75b056c57ed87da68e1f3d2ba56a77bbd000136d743979e89c8bd60",
    ),
    (
        "small_cnn",
        {"update": "all", "gradient": "int8", "optimizer": tt.SGD(rounding="nearest", qas=False)},
        "ff04258b10da76aed0dd67789809cda80a5651fd232e2625bb1cd2db5e266be1",
    ),
    (
        "small_cnn",
        {"update": "all", "optimizer": tt.SGD(rounding="truncate", seed=7), "target": "cortex-m4"},
        "c63ea01eec9f3078b5fb56060e701fbd625d2cf794fb8bcbede64a5b6aaf6f66",
    ),
]
# Partially trained layers, split even where that costs more than it saves (as it does in these small models).
PARTIAL_CASES = [
    ("mobilenet_v2_blocks", {"update": PARTIAL}, "03c9c49fed8fd87afeff800eae1eb40d6adbfb8be0960fa4246bc8839d0f5a00"),
    (
        "mobilenet_v2_blocks",
        {"update": {"weights": {"6": 0.5, "7": 0.5}}, "gradient": "int8", "tiles": (2, 2)},
        "566af192c96a400c4acdd32e97c184c562ed98367a7037f0ecd3af5673bd37a1",  # the stage as TT_TILED_STAGE
    ),
    (
        "mobilenet_v2_blocks",
        {"update": PARTIAL, "ablation": Ablation(split_partial=False)},
        "2ebadf06ea9dea5b4438937088f43d1cfce8962160464cd040f577df5c1c778d",
    ),
]


@pytest.mark.parametrize(("model", "options", "sha256"), CASES, ids=lambda value: str(value)[:60])
def test_training_model_bytes_unchanged(model, options, sha256):
    source, options = (DATA / f"{model}.tflite").read_bytes(), dict(options)
    ablation = options.pop("ablation", None)
    training = (
        tt.compile(source, **options) if ablation is None else compile_with(source, CompileOptions(**options), ablation=ablation)
    )
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

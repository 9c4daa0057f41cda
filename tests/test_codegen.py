"""tinytrain-tflm codegen: generated kernels train bit-exactly like the generic ones, select themselves in
Prepare (and refuse another model), the resolver setup lists exactly the model's ops, and the kernels
compile for a Cortex-M7."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from generated_kernels import ARM_CXX, KERNELS, build_host_libraries, compile_for_cortex_m7
from models import int8_model

import tinytrain_tflm as tt
from tinytrain_tflm.backend import schema_generated
from tinytrain_tflm.firmware import codegen

# Two models with conv, depthwise and fully connected gradients: DS-CNN (average pooling) trained entirely
# with float32 gradients and momentum; the MobileNetV2 blocks (residual ADD, PAD, MEAN, partial channels
# split off) with a sparse scheme, int8 gradients and stochastic rounding. A third covers max pooling,
# activations kept as int8 outputs instead of masks, and truncation. Two more cover the element-wise ops.
CONFIGS = {
    "ds_cnn_all_float32": ("ds_cnn", dict(update="all", optimizer=tt.SGD(lr=0.05, momentum=0.9, rounding="nearest"))),
    "mobilenet_sparse_int8": (
        "mobilenet_v2_blocks",
        dict(update={"bias_last": 4, "weights": {"6": 1, "4": 0.5, "2": 1}}, gradient="int8", optimizer=tt.SGD(lr=0.05)),
    ),
    "small_cnn_all_int8_no_masks": (
        "small_cnn",
        dict(update="all", gradient="int8", activation_masks=False, optimizer=tt.SGD(lr=0.05, rounding="truncate")),
    ),
    # Element-wise backward: hard-swish, sigmoid and squeeze-and-excite's MUL; tanh, leaky ReLU and SUB.
    "mobilenet_v3_all_int8": ("mobilenet_v3_block", dict(update="all", gradient="int8", optimizer=tt.SGD(lr=0.05))),
    "conv1d_all_float32": ("conv1d_time_series", dict(update="all", optimizer=tt.SGD(lr=0.05))),
}
STEPS = 4


def _training_model(config: str) -> tt.TrainingModel:
    name, options = CONFIGS[config]
    return tt.compile(int8_model(name), **options)


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> dict[str, tuple[tt.TrainingModel, codegen.GeneratedCode, object]]:
    """Per config: the training model, its generated code, and the host library built from it (one build)."""
    root = tmp_path_factory.mktemp("codegen")
    models = {config: _training_model(config) for config in CONFIGS}
    codes = {config: codegen.write(model.bytes, root / config) for config, model in models.items()}
    libraries = build_host_libraries([root / config for config in CONFIGS], root / "build")
    return {config: (models[config], codes[config], library) for config, library in zip(CONFIGS, libraries, strict=True)}


@pytest.mark.parametrize("config", CONFIGS)
def test_generated_kernels_train_bit_exactly_like_the_generic_ones(generated, config):
    model, code, library = generated[config]
    specializable = {op.kind for op in tt.read_graph(model.bytes).ops} & set(codegen.OP_KINDS)
    assert {k.op for k in code.kernels} == specializable and len(specializable) >= 6
    generic, specialized = tt.Trainer(model), tt.Trainer(model, kernel_library=library)
    start = generic.weights()
    rng = np.random.default_rng(7)
    for step in range(STEPS):
        if step == STEPS // 2:  # a generated kernel reads the run-time learning rate too
            generic.learning_rate = specialized.learning_rate = 0.5 * generic.compiled_learning_rate
        x = rng.uniform(-1, 1, generic.input.shape).astype(np.float32)
        label = int(rng.integers(generic.metadata["num_classes"]))
        assert np.float32(generic.step(x, label)).tobytes() == np.float32(specialized.step(x, label)).tobytes()
        expected, actual = generic.weights(), specialized.weights()
        for name, value in expected.items():
            assert value.tobytes() == actual[name].tobytes(), f"step {step}: {name} differs"
    moved = [name for name, value in generic.weights().items() if not np.array_equal(value, start[name])]
    assert len(moved) >= len(start) // 2  # the comparison is over real updates


def test_a_model_the_kernels_were_not_generated_for_fails_in_prepare(generated):
    _, _, library = generated["mobilenet_sparse_int8"]
    name, options = CONFIGS["mobilenet_sparse_int8"]
    other = tt.compile(int8_model(name), **{**options, "optimizer": tt.SGD(lr=0.05, rounding="nearest")})  # only rounding
    with pytest.raises(tt.TFLMError, match=r"TT_SGD: no generated kernel matches .* generated for another model"):
        tt.Trainer(other, kernel_library=library)
    # The learning rate is not built into the kernels (it is a run-time input): another one still matches.
    tt.Trainer(tt.compile(int8_model(name), **{**options, "optimizer": tt.SGD(lr=0.04)}), kernel_library=library)


def test_resolver_lists_exactly_the_model_ops(generated):
    model, code, _ = generated["mobilenet_sparse_int8"]
    ops = tt.read_graph(model.bytes).ops
    builtins = sorted({op.kind for op in ops if not op.custom})
    customs = sorted({op.kind for op in ops if op.custom})
    assert sorted(code.builtins) == builtins and sorted(code.custom_ops) == customs
    resolver = code.files[codegen.RESOLVER_HEADER]
    assert f"kModelOpCount = {len(builtins) + len(customs)};" in resolver
    assert sorted(re.findall(r"resolver\.(Add\w+)\(\)", resolver)) == sorted(codegen.resolver_method(b) for b in builtins)
    listed = re.findall(r'\{"(TT_\w+)", (\w+)::Register_(\w+)\}', code.files[codegen.OPS_HEADER])
    assert sorted(name for name, _, _ in listed) == customs
    for name, namespace, register in listed:  # generated registrations exactly where kernels were generated
        assert register == name.removeprefix("TT_")
        assert (namespace == "tinytrain_generated") == (name in {k.op for k in code.kernels})
    digest = json.loads(code.files[codegen.MANIFEST])["model_sha256"]
    for name, text in code.files.items():
        if name != codegen.MANIFEST:
            assert text.startswith(f"// Generated by {codegen.GENERATOR} for the training model with SHA-256 {digest[:16]}")


@pytest.mark.parametrize(
    "builtin, method",
    [
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("MAX_POOL_2D", "AddMaxPool2D"),
        ("L2_POOL_2D", "AddL2Pool2D"),
        ("RELU6", "AddRelu6"),
        ("STRIDED_SLICE", "AddStridedSlice"),
        ("BATCH_MATMUL", "AddBatchMatMul"),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
    ],
)
def test_resolver_method_names_are_tflm_s(builtin, method):
    assert codegen.resolver_method(builtin) == method


def test_every_generated_op_kind_is_a_schema_op():
    assert set(codegen.OP_KINDS) <= {blob["custom_name"] for blob in schema_generated.BLOBS.values() if blob["kind"] == "op"}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "tinytrain_tflm.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_writes_a_fresh_or_previous_output_and_refuses_anything_else(tmp_path):
    model = tmp_path / "train.tflite"
    _training_model("ds_cnn_all_float32").save(model)
    out = tmp_path / "generated"
    result = _cli("codegen", str(model), "-o", str(out))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / codegen.MANIFEST).read_text())
    assert sorted(p.name for p in out.iterdir()) == manifest["files"]
    assert f"resolver size {manifest['resolver_size']}" in result.stdout

    # A previous output is rewritten for another model, its stale kernel files removed.
    _training_model("mobilenet_sparse_int8").save(model)
    assert _cli("codegen", str(model), "-o", str(out)).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == json.loads((out / codegen.MANIFEST).read_text())["files"]

    (out / "notes.txt").write_text("mine")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "main.cc").write_text("int main() {}")
    for args, message in [
        (("codegen", str(model), "-o", str(out)), "holds files codegen did not write (notes.txt)"),
        (("codegen", str(model), "-o", str(foreign)), "is not empty and not a previous codegen output"),
        (("codegen", str(int8_model_path(tmp_path)), "-o", str(tmp_path / "x")), "not a tinytrain training model"),
    ]:
        result = _cli(*args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert message in result.stderr
    assert (foreign / "main.cc").read_text() == "int main() {}" and (out / "notes.txt").read_text() == "mine"


def int8_model_path(tmp_path):
    path = tmp_path / "inference.tflite"
    path.write_bytes(int8_model("small_cnn"))
    return path


@pytest.mark.skipif(shutil.which(ARM_CXX) is None, reason=f"{ARM_CXX} is not installed (CI installs it)")
def test_generated_kernels_compile_for_cortex_m7(generated, tmp_path):
    for config, (_, code, _) in generated.items():
        directory = tmp_path / config
        directory.mkdir()
        for name, text in code.files.items():
            (directory / name).write_text(text)
        sources = [directory / k.file for k in code.kernels]
        objects = compile_for_cortex_m7(sources, [KERNELS, directory], directory)
        assert all(o.stat().st_size > 0 for o in objects)

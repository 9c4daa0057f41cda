"""Firmware artifacts: the C array export (compiled with the host C++ compiler and read back), the
assembled Arduino library, and the embedded C++ example built and trained against real TFLM and against the
Arduino_TensorFlowLite library's TFLM.

Those sources are the user's (TFLM_ROOT with TFLM_INCLUDE_DIRS, ARDUINO_TFLM_SRC) or the pinned bundle that
`make test` names with TINYTRAIN_THIRD_PARTY (../shared/third_party), as tinytrain_tflm.firmware.device finds them;
TFLM's x86 libraries are compiled once into TINYTRAIN_BUILD_DIR. Without sources the tests that need them
skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require
from models import int8_model
from test_cli import _classifier, _cli

import tinytrain_tflm as tt
from tinytrain_tflm.backend.schema_generated import CONTROL_BACKWARD, CONTROL_UPDATE
from tinytrain_tflm.errors import TinyTrainError
from tinytrain_tflm.firmware import arduino_tflm, build, c_array, device
from tinytrain_tflm.plan import memory
from tinytrain_tflm.runtime.trainer import compiled_learning_rate
from tinytrain_tflm.target import HOST

REPO = Path(__file__).resolve().parent.parent
CXX = shutil.which("c++")

READ_BACK_MAIN = r"""
#include <stdint.h>
#include <stdio.h>
#include "train_model.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  FILE* out = fopen(argv[1], "wb");
  if (out == nullptr || fwrite(train_model::kData, 1, train_model::kSize, out) != train_model::kSize) return 1;
  fclose(out);
  printf("%u %u %u %u %u %d %d %d %d %d %d %d %d %d %d %d %u\n",
         static_cast<unsigned>(reinterpret_cast<uintptr_t>(train_model::kData) % 16), train_model::kSize,
         train_model::kArenaBytes64, train_model::kArenaBytes32, train_model::kArenaSize,
         train_model::kSampleInput, train_model::kLabelInput, train_model::kControlInput,
         train_model::kLossOutput, train_model::kLogitsOutput, train_model::kSampleTensor,
         train_model::kLabelTensor, train_model::kControlTensor, train_model::kLossTensor,
         train_model::kLogitsTensor, train_model::kNumClasses, train_model::kNumBuiltinOps);
  printf("%d %.9g %d %.9g %d %u %u\n", train_model::kLearningRateInput, static_cast<double>(train_model::kLearningRate),
         train_model::kAccumulates ? 1 : 0, static_cast<double>(train_model::kSampleScale), train_model::kSampleZeroPoint,
         train_model::kArduinoArenaBytes, train_model::kArduinoArenaSize);
#define PRINT_NAME(OP) printf("%s\n", #OP);
  TRAIN_MODEL_FOR_EACH_BUILTIN(PRINT_NAME)
  return 0;
}
"""


@pytest.fixture(scope="module")
def training_model(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("firmware")
    path = directory / "train.tflite"
    tt.compile(_classifier(directory).read_bytes(), update="all").save(path)
    return path


@pytest.fixture(scope="module")
def conv_training_model(tmp_path_factory) -> Path:
    """An inverted residual block (conv, PAD, depthwise, ADD, MEAN, FC) with every layer training, its convs
    reading their requantization from the model and its arena planned with overlapping buffers: what a
    firmware must run beyond the one-layer classifier."""
    path = tmp_path_factory.mktemp("firmware_conv") / "train.tflite"
    tt.compile(int8_model("mobilenet_v2_blocks"), update="all", gradient="int8", flash_requantization=True).save(path)
    return path


@pytest.fixture(scope="module")
def streamed_training_model(tmp_path_factory) -> Path:
    """The inverted residual block with its sample streamed (--stream-input): the classifier trains (update
    last), int8 gradients, the conv, PAD and depthwise in a 2x2-tiled first stage that reads the sample from
    the firmware, flash requantization, overlapping buffers."""
    path = tmp_path_factory.mktemp("firmware_streamed") / "train.tflite"
    options = {"update": "last", "gradient": "int8", "tiles": (2, 2), "flash_requantization": True, "overlap_buffers": True}
    tt.compile(int8_model("mobilenet_v2_blocks"), stream_input=True, **options).save(path)
    return path


EXAMPLE_MODELS = ["training_model", "conv_training_model"]


@pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (c++)")
def test_c_array_round_trips_through_the_compiler(training_model, tmp_path):
    source = tmp_path / "train_model.cc"
    result = _cli("export", str(training_model), "--c-array", str(source))
    assert result.returncode == 0, result.stderr
    (tmp_path / "main.cc").write_text(READ_BACK_MAIN)
    binary = tmp_path / "read_back"
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror"]
    subprocess.run([CXX, *flags, "-o", str(binary), str(tmp_path / "main.cc"), str(source)], check=True, capture_output=True)
    run = subprocess.run([str(binary), str(tmp_path / "bytes.bin")], check=True, capture_output=True, text=True)

    model = training_model.read_bytes()
    assert (tmp_path / "bytes.bin").read_bytes() == model
    values, rate_line, *builtins = run.stdout.split("\n")
    misalignment, size, arena64, arena32, arena, *positions = (int(v) for v in values.split())
    assert misalignment == 0 and size == len(model)
    graph = tt.read_graph(model)
    measured = tt.minimum_arena_size(model)
    assert (arena64, arena32) == (measured, memory.project_32bit(measured, graph))
    # This host is 64-bit; the size is rounded up to whole 16-byte units (a minimum need not be one).
    assert arena == -(-(measured + c_array.ArenaSize.headroom(measured)) // 16) * 16
    sample, label, control, loss, logits, *tensors, classes, num_builtins = positions
    # Independent of the metadata: the compiler's tensor names and the graph's input/output lists.
    names = [graph.tensors[t].name for t in (graph.inputs[label], graph.inputs[control], graph.outputs[loss])]
    assert names == ["tinytrain/labels", "tinytrain/control", "tinytrain/loss"]
    assert [graph.tensors[graph.inputs[sample]].name, graph.tensors[graph.outputs[logits]].name] == ["x", "y"]
    assert tensors == [
        graph.inputs[sample],
        graph.inputs[label],
        graph.inputs[control],
        graph.outputs[loss],
        graph.outputs[logits],
    ]
    assert classes == 3 and num_builtins == 1 and [b for b in builtins if b] == ["FullyConnected"]
    rate_input, rate, accumulates, sample_scale, sample_zero_point, arduino, arduino_size = rate_line.split()
    # Without --arduino-tflm the Arduino library's need is the estimate, with the same headroom.
    assert int(arduino) == c_array.arduino_estimate(graph, measured) > measured
    assert int(arduino_size) == -(-(int(arduino) + c_array.ArenaSize.headroom(int(arduino))) // 16) * 16
    assert graph.tensors[graph.inputs[int(rate_input)]].name == "tinytrain/learning_rate"
    assert np.float32(float(rate)) == np.float32(0.01) and accumulates == "0"  # compile()'s default SGD
    quantization = graph.tensors[graph.inputs[sample]].quantization
    assert np.float32(float(sample_scale)) == quantization.scale[0] and int(sample_zero_point) == quantization.zero_point[0]


def test_export_writes_both_outputs_and_never_its_input(training_model, tmp_path):
    tuned, source = tmp_path / "tuned.tflite", tmp_path / "model.cpp"
    result = _cli("export", str(training_model), "-o", str(tuned), "--c-array", str(source), "--arena", "estimated")
    assert result.returncode == 0, result.stderr
    assert tt.read_graph(tuned.read_bytes()).ops[0].kind == "FULLY_CONNECTED"
    header = (tmp_path / "model.h").read_text()
    estimate = memory.estimate(tt.read_graph(training_model.read_bytes()), memory.CORTEX_M).total
    assert "namespace model {" in header and f"kArenaBytes32 = {estimate};" in header and "(estimated)" in header

    before = training_model.read_bytes()
    disguised = tmp_path / "train.cc"  # a training model whose name makes it a --c-array target
    disguised.write_bytes(before)
    for args, message in [
        ((str(training_model),), "export needs -o TUNED.tflite"),
        ((str(training_model), "--c-array", str(tmp_path / "a.c")), "ending in .cc or .cpp"),
        ((str(training_model), "-o", str(tmp_path / "b.h"), "--c-array", str(tmp_path / "b.cc")), "would write the same file"),
        ((str(disguised), "--c-array", str(disguised)), "refusing to overwrite the input file"),
        ((str(training_model), "--c-array", str(tmp_path / "9lives.cc")), "pass --c-name"),
        ((str(_classifier(tmp_path)), "--c-array", str(tmp_path / "c.cc")), "not a tinytrain training model"),
    ]:
        result = _cli("export", *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], (args, result.stderr)
    assert disguised.read_bytes() == before and training_model.read_bytes() == before


def test_resolver_names_follow_tflm_add_methods():
    expected = {"CONV_2D": "Conv2D", "DEPTHWISE_CONV_2D": "DepthwiseConv2D", "MAX_POOL_2D": "MaxPool2D",
                "FULLY_CONNECTED": "FullyConnected", "RELU6": "Relu6", "BATCH_TO_SPACE_ND": "BatchToSpaceNd",
                "STRIDED_SLICE": "StridedSlice", "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM"}  # fmt: skip
    assert {op: c_array.resolver_suffix(op) for op in expected} == expected


@pytest.fixture(scope="module")
def tflm_sources() -> device.Sources:
    return require(device.locate_sources)


@pytest.fixture(scope="module")
def tflm_libraries(tflm_sources) -> list[Path]:
    """TFLM's framework and builtin kernels for x86 (TF_LITE_STATIC_MEMORY), compiled on the first run only."""
    return device.build_tflm(HOST, tflm_sources)


@pytest.fixture(scope="module")
def arduino_tflm_src() -> Path:
    return require(device.locate_arduino_tflm)


@pytest.fixture(scope="module")
def arduino_tflm_library(arduino_tflm_src) -> Path:
    """That library's TFLM for x86, as `export --arduino-tflm` builds it to measure the arena: tests/arduino_host
    links this one (ARDUINO_TFLM_LIBRARY) instead of compiling its own."""
    return arduino_tflm.build_library(arduino_tflm_src)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
@pytest.mark.parametrize(
    "locate, variable", [(device.locate_sources, "TFLM_ROOT"), (device.locate_arduino_tflm, "ARDUINO_TFLM_SRC")]
)
def test_missing_sources_fail_in_ci_and_skip_elsewhere(monkeypatch, ci, outcome, locate, variable):
    for name in ("TFLM_ROOT", "ARDUINO_TFLM_SRC", "TINYTRAIN_THIRD_PARTY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=rf"set {variable} .*, or TINYTRAIN_THIRD_PARTY .*\(\.\./shared/third_party\)"):
        require(locate)


def test_arduino_tflm_is_the_given_src_or_the_bundles_unpacked_once(monkeypatch, tmp_path):
    """ARDUINO_TFLM_SRC when set; else the bundle's archive alone, checked against SHA256SUMS and unpacked
    once under TINYTRAIN_BUILD_DIR."""
    header = Path("arduino-tflm/src/tensorflow/lite/micro/micro_interpreter.h")
    given = tmp_path / "given"
    (given / header).parent.mkdir(parents=True)
    (given / header).write_text("")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    archive = bundle / "arduino-tflm.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(given / "arduino-tflm", "arduino-tflm")
    (bundle / "SHA256SUMS").write_text(f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n")
    monkeypatch.delenv("ARDUINO_TFLM_SRC", raising=False)
    monkeypatch.setenv("TINYTRAIN_THIRD_PARTY", str(bundle))
    monkeypatch.setenv("TINYTRAIN_BUILD_DIR", str(tmp_path / "build"))

    src = device.locate_arduino_tflm()
    unpacked = src.parent.parent
    assert unpacked.parent == tmp_path / "build/third_party" and (unpacked / header).is_file()
    assert [p.name for p in unpacked.iterdir()] == ["arduino-tflm"]
    archive.write_bytes(b"changed")  # unpacked already: not read again
    assert device.locate_arduino_tflm() == src
    monkeypatch.setenv("TINYTRAIN_BUILD_DIR", str(tmp_path / "fresh"))
    with pytest.raises(TinyTrainError, match="does not match its SHA256SUMS entry"):
        device.locate_arduino_tflm()
    monkeypatch.setenv("ARDUINO_TFLM_SRC", str(given / "arduino-tflm/src"))
    assert device.locate_arduino_tflm() == given / "arduino-tflm/src"


MASK32 = 0xFFFFFFFF
TT_CONTROL_TRAIN = CONTROL_BACKWARD | CONTROL_UPDATE


def _example_losses_on_host(model: bytes, steps: int = 300, report_every: int = 50) -> list[float]:
    """The mean losses examples/cpp prints, computed on the host runtime (the model's own arena plan)
    from the same synthetic samples: main.cc's hash patterns, xorshift32 noise and label draws."""

    def mix(x: int) -> int:
        x ^= x >> 16
        x = x * 0x7FEB352D & MASK32
        x ^= x >> 15
        x = x * 0x846CA68B & MASK32
        return x ^ (x >> 16)

    state = 1

    def below(n: int) -> int:
        nonlocal state
        state ^= state << 13 & MASK32
        state ^= state >> 17
        state ^= state << 5 & MASK32
        return state % n

    graph = tt.read_graph(model)
    shape = graph.tensors[graph.inputs[0]].shape
    classes = graph.tensors[graph.outputs[1]].shape[-1]
    interpreter = tt.Interpreter(model, 4 << 20)
    losses = []
    for _ in range(steps):
        label = below(classes)
        values = [mix(label * 65599 + i) % 201 - 100 + below(61) - 30 for i in range(int(np.prod(shape)))]
        sample = np.clip(values, -128, 127).astype(np.int8).reshape(shape)
        control = np.array([TT_CONTROL_TRAIN], np.int32)
        # main.cc's step schedule: the second half of the steps at half the compiled rate (0: the compiled one).
        rate = np.float32(0) if len(losses) < steps // 2 else np.float32(compiled_learning_rate(graph)) * np.float32(0.5)
        losses.append(interpreter.run([sample, np.array([label], np.int32), control, np.array([rate])])[0][0])
    return [float(np.mean(losses[i : i + report_every])) for i in range(0, steps, report_every)]


def _build_example(project: Path, tree: Path, training_model: Path, tmp_path: Path, options: list[str], *export: str) -> Path:
    """Configures and builds `project` (examples/cpp or a harness around it) in the build tree `tree` with the model
    exported with `export`'s options; returns the program, copied into `tmp_path`."""
    source = tmp_path / "train_model.cc"
    assert _cli("export", str(training_model), "--c-array", str(source), *export).returncode == 0
    configure = ["cmake", "-S", str(project), "-B", str(tree), f"-DTRAINING_MODEL_SOURCE={source}", *options]
    with build.building(tree):  # test_fleet_device builds examples/cpp's tree for its own model too
        subprocess.run(configure, check=True, capture_output=True)
        subprocess.run(["cmake", "--build", str(tree), "-j", str(os.cpu_count() or 1)], check=True, capture_output=True)
        return Path(shutil.copy2(tree / "tinytrain_example", tmp_path))


def _build_and_train(project: Path, build: Path, training_model: Path, tmp_path: Path, options: list[str], *export: str) -> dict:
    """Builds `project` (_build_example), runs 300 training steps, and returns what it printed: the mean losses and
    the accuracies."""
    program = _build_example(project, build, training_model, tmp_path, options, *export)
    run = subprocess.run([str(program), "300"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    print(run.stdout, file=sys.stderr)
    losses = [float(v) for v in re.findall(r"mean loss ([0-9.]+)", run.stdout)]
    before, after, after_reset, after_restore = (float(v) for v in re.findall(r"accuracy [\w ]+: ([0-9.]+)", run.stdout))
    assert len(losses) == 6 and np.isfinite(losses).all()
    assert after_reset == before  # Reset brought the pretrained weights back: the same predictions
    # Checkpoints every 100 steps (the last at step 300), none at boot, no sample refused, no rollback; restoring
    # the last one over the pretrained weights brings the trained predictions back.
    assert "checkpoint at boot: none;" in run.stdout
    assert "checkpoint sequence 3 in slot 0; skipped 0 bad labels, 0 saturated samples; 0 rollbacks" in run.stdout
    assert after_restore == after
    return {"losses": losses, "before": before, "after": after}


def _check_example_run(model: str, training_model: Path, run: dict, tolerance: float) -> None:
    """The one-layer classifier must learn the synthetic task (loss halves, accuracy rises). The inverted
    residual block cannot (global pooling averages the random patterns away): its losses must be the
    host's instead, to `tolerance` (the printed 4 decimals; more where TFLM's own kernels differ)."""
    if model == "training_model":
        assert run["losses"][-1] < 0.5 * run["losses"][0] and run["after"] > run["before"]
    else:
        host = _example_losses_on_host(training_model.read_bytes())
        assert np.allclose(run["losses"], host, rtol=0, atol=tolerance), (run["losses"], host)


@pytest.mark.parametrize("model", EXAMPLE_MODELS)
def test_cpp_example_trains_inside_real_tflm(model, request, tmp_path, tflm_sources, tflm_libraries):
    """examples/cpp against real TFLM (the x86 libraries of tinytrain_tflm.firmware.device, given to the example's
    CMake as TFLM_LIBRARY): tinytrain's kernels compiled in firmware mode, registered in a
    MicroMutableOpResolver, training steps in MicroInterpreter. The build tree is kept under build/ so a
    rerun compiles only the model and main.cc."""
    options = [
        f"-DTFLM_ROOT={tflm_sources.tflm}",
        f"-DTFLM_INCLUDE_DIRS={';'.join(map(str, tflm_sources.include_dirs))}",
        f"-DTFLM_LIBRARY={';'.join(map(str, tflm_libraries))}",
    ]
    training_model = request.getfixturevalue(model)
    run = _build_and_train(REPO / "examples/cpp", REPO / "build/cpp-example", training_model, tmp_path, options)
    _check_example_run(model, training_model, run, tolerance=6e-5)


def _arduino_host_options(src: Path, library: Path) -> list[str]:
    """tests/arduino_host against that TFLM's sources (headers) and `library` (its x86 build)."""
    return [f"-DARDUINO_TFLM_SRC={src}", f"-DARDUINO_TFLM_LIBRARY={library}"]


@pytest.mark.parametrize("model", EXAMPLE_MODELS)
def test_cpp_example_trains_inside_arduino_tflm(model, request, tmp_path, arduino_tflm_src, arduino_tflm_library):
    """examples/cpp on x86 against the Arduino library's TFLM (pre-TFLMRegistration, CMSIS-NN kernels):
    the glue's legacy registration path, reset through free included, in the arena measured for that TFLM
    (export --arduino-tflm). The build tree is kept under build/ so a rerun compiles only the model."""
    project = REPO / "tests/arduino_host"
    options = [*_arduino_host_options(arduino_tflm_src, arduino_tflm_library), "-DARDUINO_LIBRARY="]  # not the sketch
    training_model = request.getfixturevalue(model)
    run = _build_and_train(project, REPO / "build/arduino-host", training_model, tmp_path, options, "--arduino-tflm")
    # That TFLM's builtin ops (PAD, ADD, MEAN, FULLY_CONNECTED) are CMSIS-NN's and round differently.
    _check_example_run(model, training_model, run, tolerance=0.01)


def test_arduino_arena_is_that_tflms_exact_need_and_an_arena_below_it_fails_cleanly(
    streamed_training_model, tmp_path, arduino_tflm_src, arduino_tflm_library
):
    """kArduinoArenaBytes (export --arduino-tflm) for the streamed model (2x2-tiled first stage, int8 gradients,
    flash requantization, overlapping buffers): that TFLM's AllocateTensors succeeds in exactly that many bytes
    and not one fewer (where it crashes: the probe counts the crash), more than the pinned TFLM's kArenaBytes64,
    and within the estimate export writes without the flag. examples/cpp against that TFLM refuses an arena one
    byte under the need with one line before TFLM sees it, and trains at the need."""
    model = streamed_training_model.read_bytes()
    options = [*_arduino_host_options(arduino_tflm_src, arduino_tflm_library), "-DARDUINO_LIBRARY="]
    program = _build_example(REPO / "tests/arduino_host", REPO / "build/arduino-host", streamed_training_model, tmp_path,
                             options, "--arduino-tflm")  # fmt: skip
    header = (tmp_path / "train_model.h").read_text()
    assert "kArduinoArenaBytes:\n// the exact minimum of its AllocateTensors, measured by bisection" in header
    need, need_64bit = (int(re.search(rf"constexpr unsigned int {name} = (\d+);", header)[1])
                        for name in ("kArduinoArenaBytes", "kArenaBytes64"))  # fmt: skip
    probe = arduino_tflm.build_probe(model, arduino_tflm_src)
    assert arduino_tflm.fits(probe, need) and not arduino_tflm.fits(probe, need - 1)
    below = subprocess.run([str(probe), str(need - 1)], capture_output=True, text=True, timeout=60)
    assert below.returncode != 0 and "Failed to allocate temp memory" in below.stderr  # Prepare's temporary tensors
    assert need > need_64bit and c_array.arduino_estimate(tt.read_graph(model), need_64bit) >= need

    # 100 steps: the example saves its first checkpoint at step 100, and its last act restores one.
    refused = subprocess.run([str(program), "100", str(need - 1)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and refused.stdout == ""
    size = (need + c_array.ArenaSize.headroom(need) + 15) // 16 * 16  # kArduinoArenaSize, the example's arena
    assert refused.stderr.splitlines() == [
        f"error: an arena of {need - 1} bytes is outside what this TFLM needs and this program has ({need} to {size} bytes)"
    ]
    trained = subprocess.run([str(program), "100", str(need)], capture_output=True, text=True, timeout=120)
    assert trained.returncode == 0, trained.stderr
    assert f"arena {need} bytes (header: {size})" in trained.stdout and "accuracy after restore" in trained.stdout


def test_arduino_sketch_trains_a_streamed_model(streamed_training_model, tmp_path, arduino_tflm_src, arduino_tflm_library, rng):
    """The TrainOnDevice sketch of an assembled library, on x86 against the Arduino library's TFLM
    (tests/arduino_host/sketch_host.cc: Serial on stdin and stdout), for a model whose tiled first stage reads
    the stored sample in place (tinytrain::SetStreamedInput). Labelled samples come over Serial (each class
    brightest in its own channel, which global pooling keeps); two epochs train in the sketch's order. The mean
    losses it prints are the host Trainer's on the same int8 samples, to that TFLM's CMSIS-NN rounding of the
    builtin ops."""
    library = tmp_path / "TinyTrain"
    assembled = _cli("arduino-library", str(streamed_training_model), "-o", str(library))
    assert assembled.returncode == 0 and "note: kArduinoArenaBytes" not in assembled.stderr, assembled.stderr
    header = (library / "examples/TrainOnDevice/train_model.h").read_text()
    assert "constexpr bool kStreamsSample = true;" in header and "measured by bisection" in header
    build = REPO / "build/arduino-host"  # the Arduino TFLM compiled once for the example's tests above
    options = _arduino_host_options(arduino_tflm_src, arduino_tflm_library)
    configure = ["cmake", "-S", str(REPO / "tests/arduino_host"), "-B", str(build), *options]
    subprocess.run([*configure, f"-DARDUINO_LIBRARY={library}", "-DTRAINING_MODEL_SOURCE="], check=True, capture_output=True)
    jobs = str(os.cpu_count() or 1)
    subprocess.run(["cmake", "--build", str(build), "-j", jobs, "--target", "tinytrain_sketch"], check=True, capture_output=True)

    trainer = tt.Trainer(streamed_training_model.read_bytes())
    count, classes, epochs = 10, 3, 2
    labels = np.arange(count) % classes
    shape = trainer.input.shape[1:]
    values = rng.integers(-100, -60, (count, *shape))
    values[np.arange(count), ..., labels] += 150
    samples = values.astype(np.int8)
    quantization = trainer.input.quantization
    real = quantization.dequantize(samples).astype(np.float32)
    lines = [
        f"sample {label} " + " ".join(f"{v:.9g}" for v in sample.ravel()) for sample, label in zip(real, labels, strict=True)
    ]
    run = subprocess.run(
        [str(build / "tinytrain_sketch")],
        input="\n".join([*lines, f"train {epochs}", ""]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"room for {16 * 1024 // samples[0].size} samples" in run.stdout
    header = (library / "examples/TrainOnDevice/train_model.h").read_text()
    need = int(re.search(r"constexpr unsigned int kArduinoArenaBytes = (\d+);", header)[1])  # measured: the default
    assert f"of {(need + c_array.ArenaSize.headroom(need) + 15) // 16 * 16} bytes used" in run.stdout
    assert f"samples stored: {count}" in run.stdout and "error" not in run.stdout
    print(run.stdout, file=sys.stderr)
    printed = [float(v) for v in re.findall(r"epoch \d+: mean loss ([0-9.]+)", run.stdout)]

    train = [i for i in range(count) if i % 5 != 4]  # the sketch holds out every 5th; random() is 0 there
    host = [np.mean([trainer.step(samples[i], int(labels[i])) for i in train]) for _ in range(epochs)]
    # That TFLM's CMSIS-NN builtins (PAD, ADD, MEAN, FC) put the sketch 0.0009 above the host here; the stage
    # reading the first sample every step (a stale source) moves the host's losses by about 0.007 and 0.010.
    assert len(printed) == epochs and np.allclose(printed, host, rtol=0, atol=0.002), (printed, host)
    assert host[-1] < host[0]  # it learns: the samples, not a stale or missing source, reach the stage


# The host build's entry point, its view of the wheel's resolver, and its ABI header.
HOST_ONLY = {"register_host.cc", "host_resolver.cc", "host_resolver.h", "tflm_abi.h"}

# What the sketch uses of the Arduino core, declared for a host syntax check (the IDE includes Arduino.h itself).
ARDUINO_STUB = """#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
struct SerialStub {
  void begin(long) {}
  explicit operator bool() const { return true; }
  int available() { return 0; }
  int read() { return -1; }
  template <typename T> void print(T) {}
  template <typename T> void print(T, int) {}
  template <typename T> void println(T) {}
  template <typename T> void println(T, int) {}
};
extern SerialStub Serial;
long random(long);
long random(long, long);
template <typename T> T min(T a, T b) { return a < b ? a : b; }
"""


def _library(training_model: Path, directory: Path) -> Path:
    library = directory / "TinyTrain"
    result = _cli("arduino-library", str(training_model), "-o", str(library), "--arena", "estimated")
    assert result.returncode == 0, result.stderr
    return library


def test_arduino_library_holds_every_kernel_source(training_model, tmp_path):
    library = _library(training_model, tmp_path)
    kernels = REPO / "kernels"
    expected = {
        path.relative_to(kernels): path
        for folder in ("core", "tflm")
        for path in (kernels / folder).rglob("*")
        if path.suffix in (".h", ".cc") and path.name not in HOST_ONLY
    }
    renamed = {(p.with_suffix(".cpp") if p.suffix == ".cc" else p): source for p, source in expected.items()}
    copied = library / "src/tinytrain"
    assert {path.relative_to(copied) for path in copied.rglob("*") if path.is_file()} == set(renamed)
    assert all((copied / p).read_bytes() == source.read_bytes() for p, source in renamed.items())
    assert not list(library.rglob("*.cc")), "the Arduino IDE compiles no .cc file"
    assert "name=TinyTrain" in (library / "library.properties").read_text()
    sketch = library / "examples/TrainOnDevice"
    assert {p.name for p in sketch.iterdir()} == {"TrainOnDevice.ino", "train_model.cpp", "train_model.h"}
    assert "constexpr int kNumClasses = 3;" in (sketch / "train_model.h").read_text()

    again = _cli("arduino-library", str(training_model), "-o", str(library))
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (c++)")
def test_arduino_library_core_compiles(training_model, tmp_path):
    """The kernel core includes nothing from TFLM: it compiles anywhere, warning-free."""
    library = _library(training_model, tmp_path)
    flags = ["-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion"]
    for source in sorted((library / "src/tinytrain/core").rglob("*.cpp")):
        subprocess.run([CXX, *flags, str(source)], check=True, capture_output=True)


def _tflm_flags(tflm: str, request) -> list[str]:
    """Compiler flags for the headers of `tflm`: a TFLM tree, or the Arduino_TensorFlowLite library's src
    folder, whose API predates TFLMRegistration."""
    if tflm == "TFLM":
        sources = request.getfixturevalue("tflm_sources")
        return ["-DTF_LITE_STATIC_MEMORY", *(f"-I{d}" for d in (sources.tflm, *sources.include_dirs))]
    src = request.getfixturevalue("arduino_tflm_src")
    return [f"-I{src}", *(f"-I{src}/third_party/{d}" for d in ("flatbuffers/include", "gemmlowp", "ruy"))]


@pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (c++)")
@pytest.mark.parametrize("tflm", ["TFLM", "Arduino_TensorFlowLite"])
def test_arduino_library_glue_and_sketch_compile(tflm, request, training_model, tmp_path):
    """The glue and the sketch against `tflm`'s headers, as the Arduino IDE would compile them (ARDUINO defined)."""
    library = _library(training_model, tmp_path)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "Arduino.h").write_text(ARDUINO_STUB)
    (stubs / "TensorFlowLite.h").write_text("")
    sketch = library / "examples/TrainOnDevice"
    (tmp_path / "sketch.cpp").write_text('#include "Arduino.h"\n' + (sketch / "TrainOnDevice.ino").read_text())
    # TFLM's own headers are not warning-free: they come in as system headers.
    system = ["-isystem" + flag[2:] if flag.startswith("-I") else flag for flag in _tflm_flags(tflm, request)]
    common = [CXX, "-std=c++17", "-fsyntax-only", "-DARDUINO=10819", f"-I{library / 'src'}", *system]
    glue = sorted((library / "src/tinytrain/tflm").glob("*.cpp"))
    checks = [[*common, "-Wall", "-Wextra", "-Werror", str(source)] for source in glue]
    checks.append([*common, f"-I{stubs}", f"-I{sketch}", str(tmp_path / "sketch.cpp")])

    def failure(command: list[str]) -> tuple[str, str] | None:
        result = subprocess.run(command, capture_output=True, text=True)
        return (Path(command[-1]).name, result.stderr[-2000:]) if result.returncode else None

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # each file parses TFLM's headers: seconds apiece
        failed = [found for found in pool.map(failure, checks) if found]
    assert not failed, failed


@pytest.mark.parametrize(
    "stderr, expected",
    [
        (
            "/usr/bin/ld: harness.o: in function `Setup':\nharness.cc:(.text+0x1c): undefined reference to `__dso_handle'\n"
            "collect2: error: ld returned 1 exit status\n",
            "harness.cc:(.text+0x1c): undefined reference to `__dso_handle'",
        ),
        (
            "In file included from a.cc:1:\na.cc:3:5: error: 'x' was not declared in this scope\n",
            "a.cc:3:5: error: 'x' was not declared in this scope",
        ),
        (
            "ld: region `RAM' overflowed by 1024 bytes\ncollect2: error: ld returned 1 exit status\n",
            "ld: region `RAM' overflowed by 1024 bytes",
        ),
        ("", "exit code 1"),
    ],
)
def test_a_failed_build_reports_the_line_that_names_the_cause(stderr, expected):
    """Not collect2's closing line, which every link failure ends with and which names no cause."""
    failed = subprocess.CompletedProcess(["arm-none-eabi-g++"], 1, "", stderr)
    assert build.first_error(failed) == expected

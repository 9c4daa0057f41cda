"""The arena the Arduino_TensorFlowLite library's TFLM needs for a training model, measured on the host.

That library (its February 2023 release, which the sketch builds against) has an older TFLM that allocates
differently from the pinned one: while the ops prepare, each tensor a kernel reads in Prepare takes a
temporary TfLiteTensor (112 B on x86-64) at the top of the arena until that op is prepared, so a tiled first
stage, which reads many, needs more than kArenaSize. Below that need its AllocateTensors crashes (the failed
temporary allocation returns null and TFLM writes through it) instead of failing, so the need cannot be
found by trying on a board. Here that TFLM, tinytrain's kernels and a probe (kernels/arduino_probe) are
compiled with the host compiler; each try runs the probe in its own process, and a crash counts as too small.

The figure is x86-64's. A 32-bit board needs less for the same model (its pointers and tensor structs are
smaller), except where CMSIS-NN sizes a builtin kernel's scratch buffer by the core's DSP extension.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from ..errors import TinyTrainError
from . import build, device

# What the Arduino IDE's build of that library defines (no TF_LITE_STATIC_MEMORY: its TfLiteTensor is the full one).
FLAGS = ("-O2", "-w", "-DARDUINO", "-MMD", "-ffunction-sections", "-fdata-sections")
CXX_FLAGS = ("-std=c++17", "-fno-exceptions", "-fno-rtti")
# Files of that library's src/ a host build leaves out: the board's log sink (Serial) and TFLM's test helpers.
EXCLUDED = ("system_setup.cpp", "test_helpers.cpp", "test_helper_custom_ops.cpp")
PROBE_TIMEOUT_S = 60
LARGEST_ARENA = 1 << 26  # the bisection gives up above this


def header_flags(src: Path) -> list[str]:
    """That library's include directories: its src/ and the third-party headers its TFLM needs."""
    third_party = src / "third_party"
    return [f"-I{d}" for d in (src, third_party / "flatbuffers/include", third_party / "gemmlowp", third_party / "ruy")]


def build_library(src: Path) -> Path:
    """That library's TFLM and CMSIS-NN (portable C on x86) as one static library, compiled once per source tree
    into the build cache. tests/arduino_host links this one too."""
    flags = [*FLAGS, *header_flags(src)]
    out = build.build_dir() / "arduino-tflm" / build.content_key(src, *flags)
    sources = sorted(p for p in (src / "tensorflow").rglob("*.cpp") if p.name not in EXCLUDED)
    units = build.units(sources, src, out, ["c++", *CXX_FLAGS, *flags], [])
    units += build.units(sorted((src / "third_party/cmsis_nn/Source").rglob("*.c")), src, out, [], ["cc", *flags])
    with build.building(out):
        build.compile_units(units, "the Arduino_TensorFlowLite library's TFLM for the host")
        return build.archive(out / "libarduino_tflm.a", [unit[1] for unit in units], build.HOST)


def build_kernels(src: Path) -> Path:
    """tinytrain's kernels (the portable core and the glue, as the assembled Arduino library holds them) against
    that library's headers."""
    kernels = build.kernel_sources()
    flags = [*FLAGS, *CXX_FLAGS, f"-I{kernels}", f"-I{kernels / 'core'}", *header_flags(src)]
    out = build.build_dir() / "tinytrain" / f"arduino-host-{build.content_key(kernels, *flags)}"
    glue = [f for f in kernels.glob("tflm/*.cc") if f.name not in ("register_host.cc", "host_resolver.cc")]
    units = build.units([*build.core_sources(kernels, "reference"), *sorted(glue)], kernels, out, ["c++", *flags], [])
    with build.building(out):
        build.compile_units(units, "tinytrain's kernels for the Arduino library's TFLM")
        return build.archive(out / "libtinytrain.a", [unit[1] for unit in units], build.HOST)


def build_probe(model: bytes, src: Path) -> Path:
    """The probe linked with `model`'s C array, that TFLM and tinytrain's kernels."""
    if shutil.which("c++") is None or shutil.which("cc") is None:
        raise TinyTrainError("measuring the Arduino library's arena needs a host C and C++ compiler (c++, cc)")
    libraries = [build_kernels(src), build_library(src)]
    kernels = build.kernel_sources()
    out = build.build_dir() / "arduino-probe" / f"{hashlib.sha256(model).hexdigest()[:16]}-{build.content_key(*libraries)}"
    flags = ["c++", *FLAGS, *CXX_FLAGS, f"-I{kernels.parent}", f"-I{out}", *header_flags(src)]
    with build.building(out):
        source = device.model_array(model, out, "arena probe")
        units = [(source, out / "train_model.o", flags), (kernels / "arduino_probe/arena_probe.cc", out / "arena_probe.o", flags)]
        build.compile_units(units, "the Arduino arena probe")
        probe = out / "arena_probe"
        link = ["c++", *(str(unit[1]) for unit in units), *map(str, libraries), "-lm", "-o", str(probe)]
        result = subprocess.run(link, capture_output=True, text=True)
        if result.returncode != 0:
            raise TinyTrainError(f"linking the Arduino arena probe failed: {build.first_error(result)}")
    return probe


def fits(probe: Path, arena_bytes: int) -> bool:
    """Whether that TFLM's AllocateTensors succeeds in an arena of `arena_bytes` (a crash or a hang is a no)."""
    try:
        result = subprocess.run([str(probe), str(arena_bytes)], capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def minimum_arena(model: bytes, src: Path, start: int) -> int:
    """The exact smallest arena that TFLM's AllocateTensors accepts for `model`, by bisection from `start` bytes
    up. Exact because the need is monotonic: a larger arena moves only the top of the arena (the persistent
    allocations and Prepare's temporary tensors) up, never a buffer down."""
    probe = build_probe(model, src)
    high = max(start, 1024)
    while not fits(probe, high):
        high *= 2
        if high > LARGEST_ARENA:
            raise TinyTrainError(f"the Arduino library's TFLM refuses this model even in a {LARGEST_ARENA:,}-byte arena")
    return device.smallest_fitting(lambda size: fits(probe, size), high)

"""Training models on emulated Cortex-M boards: built from TFLM's sources, run under QEMU.

A firmware here is what a product would flash: TFLM's MicroInterpreter and kernels compiled from a
TFLM tree for the target's core, tinytrain's kernels in firmware mode, the training model as the C
array `export --c-array` writes, and a bare-metal harness (kernels/cortex_m/harness) with the tensor
arena alone in a 256 KB RAM region. QEMU runs it; `-icount shift=3` makes its clock count
instructions (board/target_platform.cc reads them from SysTick). Nothing here is a simulation of the
kernels: the printed losses and logits are the device's.

Sources: TFLM_ROOT names a TFLM tree (with TFLM_INCLUDE_DIRS for flatbuffers, gemmlowp and ruy, and
CMSIS_NN_ROOT, CMSIS_CORE_INCLUDE and CORTEX_DFP_ROOT for CMSIS-NN builds), or TINYTRAIN_THIRD_PARTY
names a folder holding the pinned archives (the project's ../shared/third_party), unpacked once.
ARDUINO_TFLM_SRC, else the same bundle, gives the Arduino_TensorFlowLite library's src/ (its TFLM).
Compiled libraries are cached under TINYTRAIN_BUILD_DIR (default ~/.cache/tinytrain-tflm): a second
run compiles only the model and the harness.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import TinyTrainError
from ..frontend import read
from ..target import Target
from . import build, c_array

TOOL_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
TFLM_ARCHIVES = ("tflite-micro", "flatbuffers", "gemmlowp", "ruy", "cmsis-nn", "cmsis6", "cortex-dfp")
ARDUINO_TFLM_ARCHIVE = "arduino-tflm"
# -icount shift=3: 8 ns of virtual time per instruction, what board/target_platform.cc counts with.
QEMU_FLAGS = ("-nographic", "-icount", "shift=3", "-semihosting-config")
# An emulated run longer than this is taken as a hang (QEMU keeps running a core in lockup): a script of
# MobileNetV2 training steps with reference kernels takes about a minute per step, AllocateTensors alone
# (an arena probe) a second or two.
RUN_TIMEOUT_S = 1800
ALLOCATE_TIMEOUT_S = 120

# The builtin kernels a device build compiles: TFLM's kernel sources (stems under
# tensorflow/lite/micro/kernels) per op. A model using another op is refused before the build.
BUILTIN_KERNELS = {
    "ADD": ("add", "add_common"),
    "ARG_MAX": ("arg_min_max",),
    "AVERAGE_POOL_2D": ("pooling", "pooling_common"),
    "CONCATENATION": ("concatenation",),
    "CONV_2D": ("conv", "conv_common"),
    "DEPTHWISE_CONV_2D": ("depthwise_conv", "depthwise_conv_common"),
    "DEQUANTIZE": ("dequantize", "dequantize_common"),
    "EXPAND_DIMS": ("expand_dims",),
    "FULLY_CONNECTED": ("fully_connected", "fully_connected_common"),
    "HARD_SWISH": ("hard_swish", "hard_swish_common"),
    "LEAKY_RELU": ("leaky_relu", "leaky_relu_common"),
    "LOGISTIC": ("logistic", "logistic_common"),
    "MAX_POOL_2D": ("pooling", "pooling_common"),
    "MAXIMUM": ("maximum_minimum",),
    "MEAN": ("reduce", "reduce_common"),
    "MINIMUM": ("maximum_minimum",),
    "MUL": ("mul", "mul_common"),
    "PACK": ("pack",),
    "PAD": ("pad", "pad_common"),
    "QUANTIZE": ("quantize", "quantize_common"),
    "RELU": ("activations", "activations_common"),
    "RELU6": ("activations", "activations_common"),
    "RESHAPE": ("reshape", "reshape_common"),
    "SHAPE": ("shape",),
    "SLICE": ("slice",),
    "SOFTMAX": ("softmax", "softmax_common"),
    "SQUEEZE": ("squeeze",),
    "STRIDED_SLICE": ("strided_slice", "strided_slice_common"),
    "SUB": ("sub", "sub_common"),
    "TANH": ("tanh",),
    "TRANSPOSE": ("transpose", "transpose_common"),
}
# Kernel helpers every build needs.
KERNEL_SUPPORT = ("kernel_util", "micro_tensor_utils")


@dataclasses.dataclass(frozen=True)
class Sources:
    """A TFLM tree and what its headers and optimized kernels need."""

    tflm: Path
    include_dirs: tuple[Path, ...]  # flatbuffers, gemmlowp, ruy
    cmsis_nn: Path | None = None
    cmsis_core_include: Path | None = None  # CMSIS_6's CMSIS/Core/Include
    cortex_dfp: Path | None = None  # Cortex_DFP (Device/ARMCMx/Include)

    def header_flags(self, option: str) -> list[str]:
        """TFLM's include directories, each after `option` (-I, or -isystem for code built with -Werror)."""
        return [f"{option}{directory}" for directory in (self.tflm, *self.include_dirs)]

    def cmsis_flags(self, target: Target) -> list[str]:
        if None in (self.cmsis_nn, self.cmsis_core_include, self.cortex_dfp):
            raise TinyTrainError(
                "CMSIS-NN kernels need CMSIS_NN_ROOT, CMSIS_CORE_INCLUDE and CORTEX_DFP_ROOT beside TFLM_ROOT "
                "(or the pinned bundle, TINYTRAIN_THIRD_PARTY)"
            )
        device = self.cortex_dfp / "Device" / target.cmsis_device / "Include"
        return [
            f"-I{self.cmsis_nn}",
            f"-I{self.cmsis_nn / 'Include'}",
            f"-I{self.cmsis_core_include}",
            f"-I{device}",
            "-DCMSIS_NN",
            f"-D{target.cmsis_device}",
            f'-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE="{target.cmsis_device}.h"',
        ]


def missing_tools() -> list[str]:
    """The cross tools a device build and run need that are not installed."""
    missing = [tool for tool in ("arm-none-eabi-g++", "arm-none-eabi-size", "qemu-system-arm") if shutil.which(tool) is None]
    if not missing:
        for library in ("librdimon.a", "libstdc++_nano.a"):
            found = subprocess.run(["arm-none-eabi-gcc", f"-print-file-name={library}"], capture_output=True, text=True)
            if not Path(found.stdout.strip()).is_file():
                missing.append(library)
    return missing


def check_tools() -> None:
    missing = missing_tools()
    if missing:
        raise TinyTrainError(f"emulated Cortex-M runs need {', '.join(missing)}: apt-get install {TOOL_PACKAGES}")


def locate_sources() -> Sources:
    """The user's TFLM tree (TFLM_ROOT, ...), else the pinned bundle (TINYTRAIN_THIRD_PARTY), unpacked
    under build.build_dir() once; an error naming both when neither is there."""
    root = os.environ.get("TFLM_ROOT")
    if root:
        tflm = Path(root)
        if not (tflm / "tensorflow/lite/micro/micro_interpreter.h").is_file():
            raise TinyTrainError(f"TFLM_ROOT={root} is not a TFLM source tree (no tensorflow/lite/micro/micro_interpreter.h)")
        optional = {name: Path(os.environ[name]) if os.environ.get(name) else None for name in
                    ("CMSIS_NN_ROOT", "CMSIS_CORE_INCLUDE", "CORTEX_DFP_ROOT")}  # fmt: skip
        includes = tuple(Path(d) for d in os.environ.get("TFLM_INCLUDE_DIRS", "").split(";") if d)
        return Sources(tflm, includes, optional["CMSIS_NN_ROOT"], optional["CMSIS_CORE_INCLUDE"],
                       optional["CORTEX_DFP_ROOT"])  # fmt: skip
    bundle = _bundle("TFLM", "TFLM_ROOT to a TFLM tree")
    unpacked = _unpack_bundle(bundle, TFLM_ARCHIVES)
    return Sources(
        unpacked / "tflite-micro",
        tuple(unpacked / d for d in ("flatbuffers/include", "gemmlowp", "ruy")),
        unpacked / "cmsis-nn",
        unpacked / "cmsis6/CMSIS/Core/Include",
        unpacked / "cortex-dfp",
    )


def locate_arduino_tflm() -> Path:
    """The src/ folder of the Arduino_TensorFlowLite library (its own TFLM, flatbuffers, CMSIS-NN): the
    user's (ARDUINO_TFLM_SRC), else the pinned bundle's, as locate_sources finds TFLM."""
    given = os.environ.get("ARDUINO_TFLM_SRC")
    if given:
        src = Path(given)
        if not (src / "tensorflow/lite/micro/micro_interpreter.h").is_file():
            raise TinyTrainError(f"ARDUINO_TFLM_SRC={given} is not the Arduino_TensorFlowLite library's src/ (no TFLM in it)")
        return src
    bundle = _bundle("Arduino_TensorFlowLite", "ARDUINO_TFLM_SRC to that library's src/")
    return _unpack_bundle(bundle, (ARDUINO_TFLM_ARCHIVE,)) / ARDUINO_TFLM_ARCHIVE / "src"


def _bundle(what: str, user_variable: str) -> Path:
    """The folder of pinned archives TINYTRAIN_THIRD_PARTY names; an error naming both ways when it is unset."""
    bundle = os.environ.get("TINYTRAIN_THIRD_PARTY")
    if not bundle:
        raise TinyTrainError(
            f"no {what} sources: set {user_variable}, or TINYTRAIN_THIRD_PARTY to the folder of pinned archives "
            "(../shared/third_party)"
        )
    if not (Path(bundle) / "SHA256SUMS").is_file():
        raise TinyTrainError(f"TINYTRAIN_THIRD_PARTY={bundle} is not the pinned bundle (no SHA256SUMS)")
    return Path(bundle)


def _unpack_bundle(bundle: Path, names: Sequence[str]) -> Path:
    """build.build_dir()/third_party/<digest of SHA256SUMS>, holding the named archives of `bundle`, each checked
    against SHA256SUMS and unpacked once. Each is unpacked beside its folder and then renamed into place, so
    a folder that is there is whole, and concurrent runs do not see each other's half-written files."""
    sums = (bundle / "SHA256SUMS").read_bytes()
    destination = build.build_dir() / "third_party" / hashlib.sha256(sums).hexdigest()[:16]
    expected = dict(reversed(line.split()) for line in sums.decode().splitlines() if line.strip())
    destination.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (destination / name).is_dir():
            continue
        archive = bundle / f"{name}.tar.xz"
        if archive.name not in expected or not archive.is_file():
            raise TinyTrainError(f"the pinned bundle {bundle} has no checksummed {archive.name}")
        if hashlib.sha256(archive.read_bytes()).hexdigest() != expected[archive.name]:
            raise TinyTrainError(f"{archive} does not match its SHA256SUMS entry")
        with tempfile.TemporaryDirectory(dir=destination, prefix=f".{name}-") as unpacking:
            with tarfile.open(archive) as tar:
                tar.extractall(unpacking, filter="data")
            if not (Path(unpacking) / name).is_dir():
                raise TinyTrainError(f"{archive} does not unpack into a folder {name}/")
            try:
                (Path(unpacking) / name).rename(destination / name)
            except OSError:
                if not (destination / name).is_dir():  # else another run unpacked it first
                    raise
    return destination


# -- compiling (through tinytrain_tflm.firmware.build) ---------------------------------------

COMMON_FLAGS = ("-ffunction-sections", "-fdata-sections", "-DTF_LITE_STATIC_MEMORY", "-MMD")
CXX_FLAGS = ("-std=c++17", "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics")


def _tflm_framework_sources(sources: Sources) -> list[Path]:
    """TFLM's interpreter framework and the code it shares with TensorFlow Lite: the same for every kernel set."""
    micro = sources.tflm / "tensorflow/lite/micro"
    framework = [
        p for folder in ("", "arena_allocator", "memory_planner", "tflite_bridge") for p in (micro / folder).glob("*.cc")
    ]
    shared = [p for folder in ("tensorflow/lite/core", "tensorflow/lite/kernels", "tensorflow/compiler/mlir/lite")
              for p in (sources.tflm / folder).rglob("*.cc")]  # fmt: skip
    excluded = ("_test.cc", "test_helpers.cc", "test_helper_custom_ops.cc", "mock_micro_graph.cc", "fake_micro_context.cc")
    return sorted(p for p in framework + shared if not p.name.endswith(excluded))


def _tflm_kernel_sources(sources: Sources, kernels: str) -> list[Path]:
    """The kernels of BUILTIN_KERNELS: CMSIS-NN's versions where TFLM has them, for the cmsis-nn set."""
    reference = sources.tflm / "tensorflow/lite/micro/kernels"
    optimized = reference / "cmsis_nn"
    stems = sorted({stem for files in BUILTIN_KERNELS.values() for stem in files} | set(KERNEL_SUPPORT))
    use_optimized = kernels == "cmsis-nn"
    return [
        optimized / f"{s}.cc" if use_optimized and (optimized / f"{s}.cc").is_file() else reference / f"{s}.cc" for s in stems
    ]


def build_tflm(target: Target, sources: Sources) -> list[Path]:
    """TFLM for the target: its kernels (libtflm_kernels.a, per kernel set, CMSIS-NN included) and its
    framework (libtflm_framework.a, per core), each compiled once per (sources, flags)."""
    toolchain = build.Toolchain.of(target)
    flags = [*toolchain.flags, *COMMON_FLAGS, "-O2", "-w", *sources.header_flags("-I")]
    core_dir = build.build_dir() / "tflm" / f"{target.name}-{build.content_key(sources.tflm, toolchain.cxx, *flags)}"
    framework = build.units(
        _tflm_framework_sources(sources), sources.tflm, core_dir / "framework", [toolchain.cxx, *CXX_FLAGS, *flags], []
    )
    with build.building(core_dir / "framework"):
        build.compile_units(framework, f"TFLM's framework for {target.name}")
        framework_library = build.archive(core_dir / "libtflm_framework.a", [unit[1] for unit in framework], toolchain)
    if target.kernels == "cmsis-nn":
        flags += sources.cmsis_flags(target)
    kernel_dir = core_dir / target.kernels
    kernels = build.units(
        _tflm_kernel_sources(sources, target.kernels), sources.tflm, kernel_dir, [toolchain.cxx, *CXX_FLAGS, *flags], []
    )
    if target.kernels == "cmsis-nn":
        cmsis = (p for p in (sources.cmsis_nn / "Source").rglob("*.c") if not p.name.endswith(("_f16.c", "_f32.c", "_flt.c")))
        kernels += build.units(sorted(cmsis), sources.cmsis_nn, kernel_dir / "cmsis-nn", [], [toolchain.cc, "-std=c11", *flags])
    with build.building(kernel_dir):
        build.compile_units(kernels, f"TFLM's kernels for {target.label}")
        return [build.archive(kernel_dir / "libtflm_kernels.a", [unit[1] for unit in kernels], toolchain), framework_library]


def build_kernels(target: Target, sources: Sources, reference_core: bool = False) -> Path:
    """tinytrain's kernels (core and glue) in firmware mode, against the TFLM tree's headers; with
    `reference_core`, the portable core whatever the kernel set (what kernels/cmsis_nn saves is measured
    against it)."""
    toolchain = build.Toolchain.of(target)
    kernels = build.kernel_sources()
    # -ffp-contract=off: no fused multiply-adds, which the FPU has and x86-64 does not use, so every float the
    # kernels compute rounds as on the host (delayed gradient scaling turned a 1-ulp difference into another level).
    flags = [*toolchain.flags, *COMMON_FLAGS, *CXX_FLAGS, "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-Werror",
             "-Wdouble-promotion", "-DTINYTRAIN_REAL_TFLM", f"-I{kernels}", f"-I{kernels / 'core'}",
             *sources.header_flags("-isystem")]  # fmt: skip
    kernel_set = "reference" if reference_core else target.kernels
    if kernel_set == "cmsis-nn":  # its forward convolutions call CMSIS-NN (built with TFLM's kernels)
        flags += sources.cmsis_flags(target)
    key = build.content_key(kernels, sources.tflm, toolchain.cxx, *flags)
    out = build.build_dir() / "tinytrain" / f"{target.name}-{kernel_set}-{key}"
    glue = [f for f in kernels.glob("tflm/*.cc") if f.name not in ("register_host.cc", "host_resolver.cc")]
    files = [*build.core_sources(kernels, kernel_set), *sorted(glue)]
    units = build.units(files, kernels, out, [toolchain.cxx, *flags], [])
    with build.building(out):
        build.compile_units(units, f"tinytrain's kernels for {target.name}")
        return build.archive(out / "libtinytrain.a", [unit[1] for unit in units], toolchain)


@dataclasses.dataclass(frozen=True)
class Firmware:
    """A linked harness for one model and target."""

    elf: Path
    target: Target
    flash_bytes: int  # code, constants and the model: what the device's flash holds


def model_array(model: bytes, out: Path, origin: str) -> Path:
    """out/train_model.cc and .h, the model's C array for a program that takes its arena size at run time
    (written once per build folder); returns the source."""
    source = out / "train_model.cc"
    if not source.is_file():
        text, header = c_array.c_array_files(model, source, "train_model", c_array.ArenaSize(0, 0, "estimated"), origin)
        source.with_suffix(".h").write_text(header)
        source.write_text(text)
    return source


def build_firmware(model: bytes, target: Target, reference_core: bool = False) -> Firmware:
    """The harness linked with TFLM, tinytrain's kernels and `model`'s C array, for an emulated target
    (`reference_core`: see build_kernels)."""
    if not target.emulated:
        raise TinyTrainError(f"target {target.name} is not an emulated board; pick one of the Cortex-M targets")
    check_tools()
    graph = read.read_graph(model)
    unsupported = sorted({op.kind for op in graph.ops if not op.custom} - set(BUILTIN_KERNELS))
    if unsupported:
        raise TinyTrainError(
            f"the device build has no kernel for {', '.join(unsupported)} (it compiles {len(BUILTIN_KERNELS)} builtin ops)"
        )
    sources = locate_sources()
    libraries = [build_kernels(target, sources, reference_core), *build_tflm(target, sources)]
    kernels = build.kernel_sources()
    board = kernels / "cortex_m" / "board"
    toolchain = build.Toolchain.of(target)
    flags = [*toolchain.flags, *COMMON_FLAGS, *CXX_FLAGS, "-O2", "-Wall", "-Wextra", "-Werror", f"-I{kernels.parent}",
             f"-I{kernels / 'tflm'}", f"-I{board}", *sources.header_flags("-isystem"),
             "-DTINYTRAIN_REAL_TFLM", f'-DTT_TEST_TARGET="{target.name} (QEMU {target.board.qemu_machine})"',
             f"-DTT_CPU_CLOCK_HZ={target.board.clock_hz}", f"-DTT_ARENA_CAPACITY={target.ram_bytes}"]  # fmt: skip
    digest = hashlib.sha256(model).hexdigest()[:16]
    core = "-reference-core" if reference_core else ""
    key = build.content_key(toolchain.cxx, *flags)
    out = build.build_dir() / "firmware" / f"{digest}-{target.name}-{target.kernels}{core}-{key}"
    with build.building(out):
        flags.append(f"-I{out}")  # train_model.h
        source = model_array(model, out, "device harness")
        units = [
            (source, out / "train_model.o", [toolchain.cxx, *flags]),
            (kernels / "cortex_m/harness/train_harness.cc", out / "train_harness.o", [toolchain.cxx, *flags]),
            (board / "startup.cc", out / "startup.o", [toolchain.cxx, *flags]),
            (board / "target_platform.cc", out / "target_platform.o", [toolchain.cxx, *flags]),
        ]
        build.compile_units(units, f"the harness for {target.label}")
        elf = out / "harness.elf"
        # nano.specs: newlib-nano; rdimon.specs: semihosting I/O; -nostartfiles: board/startup.cc is the runtime.
        # -L: the board's linker script includes sections.ld from there.
        runtime_flags = ["-nostartfiles", f"-L{board}", "-T", str(board / target.board.linker_script), "--specs=nano.specs",
                         "--specs=rdimon.specs"]  # fmt: skip
        objects = [str(unit[1]) for unit in units] + [str(library) for library in libraries]
        arena_region = f"-Wl,--defsym=__arena_region_bytes={target.ram_bytes}"
        link = [
            toolchain.cxx,
            *toolchain.flags,
            *runtime_flags,
            arena_region,
            "-Wl,--gc-sections",
            *objects,
            "-lm",
            "-o",
            str(elf),
        ]
        result = subprocess.run(link, capture_output=True, text=True)
        if result.returncode != 0:
            raise TinyTrainError(f"linking the harness for {target.label} failed: {build.first_error(result)}")
        return Firmware(elf, target, _flash_bytes(elf))


def _flash_bytes(elf: Path) -> int:
    """What the device's flash holds, from the ELF's section headers: code, constants, initialised data."""
    output = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sections = {
        fields[0]: int(fields[1])
        for fields in (line.split() for line in output.splitlines())
        if len(fields) == 3 and fields[1].isdigit()
    }
    return sum(size for name, size in sections.items() if name in (".vectors", ".text", ".ARM.exidx", ".init_array", ".data"))


# -- running -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Invoke:
    """One Invoke() on the device: the loss output's float32, the logits' bytes, the instructions, and for a
    profiled run the (calls, instructions) of each op name (builtin or custom)."""

    loss: np.float32
    logits: np.ndarray
    instructions: int
    ops: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)


# Script entries whose control is one of these are harness actions on the checkpoint storage (run's `flash`),
# not invokes: save a checkpoint, print the checkpointed entries (a Run's `states`).
SAVE_CHECKPOINT = -1
DUMP_STATE = -2
# ... and one that sets the learning-rate input for the invokes after it (set_learning_rate makes the entry).
SET_LEARNING_RATE = -3


def set_learning_rate(rate: float, like: tuple[int, Sequence[int], np.ndarray]) -> tuple[int, list[int], np.ndarray]:
    """The script entry that sets the model's learning-rate input to `rate` (0: the compiled rate) for the invokes
    after it, shaped like the invoke `like`: the float32's bits go in the first label."""
    _, labels, sample = like
    if not (math.isfinite(rate) and 0 <= rate <= np.finfo(np.float32).max):
        raise TinyTrainError(f"a learning rate must be > 0, or 0 for the compiled one; got {rate}")
    (bits,) = struct.unpack("<i", np.float32(rate).tobytes())
    return SET_LEARNING_RATE, [bits, *[0] * (len(labels) - 1)], np.zeros_like(sample)


@dataclasses.dataclass(frozen=True)
class Run:
    target: str | None  # what the firmware says it runs: the model's target and kernels, the board
    arena_used: int | None  # MicroInterpreter::arena_used_bytes() after AllocateTensors
    invokes: list[Invoke]
    error: str | None  # the harness's error line, or what ended the run (a fault, a hang)
    # With `flash`: the checkpoint lines, e.g. ("restored", slot, sequence), ("none", status0, status1),
    # ("saved", slot, sequence), ("power_cut", bytes written); and each DUMP_STATE's bytes.
    checkpoints: list[tuple] = dataclasses.field(default_factory=list)
    states: list[bytes] = dataclasses.field(default_factory=list)
    # With `guard`: the invokes skipped, (script position, "label" or "saturated"); the rollbacks, (position,
    # slot restored or -1 for the pretrained weights, sequence); the totals (bad labels, saturated, rollbacks).
    skipped: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    rollbacks: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    guard_totals: tuple[int, int, int] | None = None


def run(
    fw: Firmware,
    arena_bytes: int,
    invokes: Sequence[tuple[int, Sequence[int], np.ndarray]] = (),
    profile: bool = False,
    flash: Path | None = None,
    cut: int | None = None,
    guard: tuple[float, int] | None = None,
) -> Run:
    """Runs the harness with an arena of `arena_bytes` and the (control, labels, sample) invokes; `profile`
    fills each Invoke's per-op instruction counts. `flash` is a file of two checkpoint slots the device boots
    from (restoring its newest valid checkpoint) and saves to; `cut` cuts the power after that many bytes of
    the run's writes to it. `guard` (loss bound, patience) turns on the harness's field guards: bad samples
    skipped, and a rollback after `patience` training steps in a row with a loss above the bound."""
    if not 0 < arena_bytes <= fw.target.ram_bytes:
        raise TinyTrainError(f"an arena of {arena_bytes} bytes does not fit the target's {fw.target.ram_bytes}-byte arena region")
    arguments = ["harness", str(arena_bytes)]
    script = None
    if invokes:
        script = fw.elf.parent / f"script-{os.getpid()}.bin"
        script.write_bytes(_script(invokes))
        arguments.append(str(script))
        if profile:
            arguments.append("profile")
        if flash is not None:
            arguments.append(f"flash={Path(flash).resolve()}")
            if cut is not None:
                arguments.append(f"cut={cut}")
        if guard is not None:
            arguments.append(f"guard={guard[0]!r}:{guard[1]}")
    semihosting = "enable=on,target=native," + ",".join(f"arg={a}" for a in arguments)
    command = ["qemu-system-arm", "-M", fw.target.board.qemu_machine, *QEMU_FLAGS, semihosting, "-kernel", str(fw.elf)]
    timeout = RUN_TIMEOUT_S if invokes else ALLOCATE_TIMEOUT_S
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Run(None, None, [], f"no exit within {timeout} s (a hang or a lockup)")
    finally:
        if script is not None:
            script.unlink(missing_ok=True)
    return _parse(result)


def _script(invokes: Sequence[tuple[int, Sequence[int], np.ndarray]]) -> bytes:
    samples = [np.ascontiguousarray(sample).tobytes() for _, _, sample in invokes]
    label_counts = {len(labels) for _, labels, _ in invokes}
    if len({len(s) for s in samples}) != 1 or len(label_counts) != 1:
        raise TinyTrainError("every invoke of a run must have the same sample size and label count")
    parts = [b"TTS1", struct.pack("<III", len(invokes), len(samples[0]), label_counts.pop())]
    for (control, labels, _), sample in zip(invokes, samples, strict=True):
        parts += [struct.pack(f"<i{len(labels)}i", control, *labels), sample]
    return b"".join(parts)


def _parse(result: subprocess.CompletedProcess) -> Run:
    target, arena_used, invokes, error, checkpoints, states = None, None, [], None, [], []
    skipped, rollbacks, guard_totals = [], [], None
    for line in result.stdout.splitlines():
        fields = line.split()
        if fields[:1] == ["skipped"]:
            skipped.append((int(fields[1]), fields[2]))
        elif fields[:1] == ["rollback"]:
            rollbacks.append(tuple(map(int, fields[1:])))
        elif fields[:1] == ["guard"]:
            guard_totals = tuple(map(int, fields[1:]))
        elif fields[:1] == ["checkpoint"]:
            checkpoints.append((fields[1], *map(int, fields[2:])))
        elif fields[:1] == ["state"]:
            states.append(bytes.fromhex(fields[1]))
        elif fields[:1] == ["target"]:
            target = line.removeprefix("target ")
        elif fields[:1] == ["arena_used"]:
            arena_used = int(fields[1])
        elif fields[:1] == ["invoke"]:
            loss = np.frombuffer(bytes.fromhex(fields[3]), np.float32)[0]
            logits = np.frombuffer(bytes.fromhex(fields[5]), np.int8)  # training models have int8 logits
            invokes.append(Invoke(loss, logits, int(fields[7], 16)))
        elif fields[:1] == ["op"] and invokes:
            invokes[-1].ops[fields[1]] = (int(fields[2]), int(fields[3], 16))
        elif fields[:1] in (["error"], ["FAULT:"]):
            error = line
    if result.returncode != 0 and error is None:
        error = f"exit code {result.returncode}: {(result.stderr.strip().splitlines() or [''])[-1]}"
    return Run(target, arena_used, invokes, error, checkpoints, states, skipped, rollbacks, guard_totals)


def fits(fw: Firmware, arena_bytes: int) -> bool:
    """Whether AllocateTensors succeeds in an arena of `arena_bytes`, cleanly (no fault, no hang, nothing
    written past the arena)."""
    outcome = run(fw, arena_bytes)
    return outcome.error is None and outcome.arena_used is not None


def minimum_arena(fw: Firmware) -> int:
    """The exact smallest arena AllocateTensors accepts on the device, by bisection; an error when even
    the target's arena region does not hold the model."""
    high = fw.target.ram_bytes
    if not fits(fw, high):
        raise TinyTrainError(f"the model does not fit the {high}-byte arena region on {fw.target.label}: {run(fw, high).error}")
    return smallest_fitting(lambda size: fits(fw, size), high)


def smallest_fitting(fits: Callable[[int], bool], high: int) -> int:
    """The smallest arena size in 1..`high` that `fits`, by bisection: `high` fits, and so does every size
    above one that fits."""
    low = 0  # known not to fit
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle
    return high

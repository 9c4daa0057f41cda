"""Where a training model runs: the device's core, the kernels TFLM runs its builtin ops with there,
its pointer size and the emulated board that stands for it (its QEMU machine and memory map). One
entry per target in TARGETS.

The kernel set matters to the compiler: overlapping buffers (overlap.py) assume a kernel that writes
its output rows in order and reads each input row no later than the rows it writes. That holds for
TFLM's reference kernels and tinytrain's; `no_overlap` names the builtin ops whose kernels on a target
break it, and whose outputs therefore get bytes of their own there.
"""

from __future__ import annotations

import dataclasses

from .backend import schema, schema_generated
from .errors import TinyTrainError
from .frontend import ir

# The kernel sets, by the id the TARGET_METADATA blob records.
KERNEL_SETS = {"reference": schema_generated.KERNELS_REFERENCE, "cmsis-nn": schema_generated.KERNELS_CMSIS_NN}
TARGET_METADATA = schema_generated.BLOBS["TARGET_METADATA"]["metadata_name"]


@dataclasses.dataclass(frozen=True)
class Board:
    """A QEMU machine that emulates a target's device, and what a firmware for it must know of it."""

    qemu_machine: str
    linker_script: str  # its memory map, in kernels/cortex_m/board/
    clock_hz: int  # the CPU clock SysTick counts (board/target_platform.cc turns ticks into instructions)


# QEMU's MPS2 boards run their cores at 25 MHz, its MPS3 AN547 (SSE-300) at 32 MHz.
MPS2_AN386 = Board("mps2-an386", "mps2.ld", 25_000_000)
MPS2_AN500 = Board("mps2-an500", "mps2.ld", 25_000_000)
MPS3_AN547 = Board("mps3-an547", "mps3_an547.ld", 32_000_000)


@dataclasses.dataclass(frozen=True)
class Target:
    """A device: its core and the kernels TFLM runs there."""

    name: str  # host, cortex-m4, ...
    id: int  # what the training model's TARGET_METADATA records
    kernels: str  # one of KERNEL_SETS
    pointer_bytes: int
    cpu_flags: tuple[str, ...] = ()  # arm-none-eabi-g++ flags; empty for the host
    cmsis_device: str = ""  # the Cortex_DFP device folder (ARMCM7, ...) CMSIS-NN's build names
    board: Board | None = None  # the QEMU board that emulates it
    ram_bytes: int = 256 * 1024  # the arena region the firmware links with
    no_overlap: frozenset[str] = frozenset()  # ops whose output must not overlap an input (see above)
    cmsis_nn_no_overlap: frozenset[str] = frozenset()  # no_overlap when the kernels are CMSIS-NN's
    mve: bool = False  # Helium: CMSIS-NN compiles its MVE paths (other buffer sizes) instead of its DSP ones

    @property
    def emulated(self) -> bool:
        return self.board is not None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.kernels} kernels)"

    def with_kernels(self, kernels: str | None) -> Target:
        if kernels is None:
            return self
        if kernels not in KERNEL_SETS:
            raise TinyTrainError(f"kernels must be one of {', '.join(KERNEL_SETS)}, got {kernels!r}")
        if kernels == "cmsis-nn" and not self.cmsis_device:
            raise TinyTrainError(f"target {self.name} has no CMSIS-NN kernels (they are for Cortex-M)")
        no_overlap = self.cmsis_nn_no_overlap if kernels == "cmsis-nn" else frozenset()
        return dataclasses.replace(self, kernels=kernels, no_overlap=no_overlap)

    def metadata(self) -> bytes:
        """The TARGET_METADATA blob naming this target in a training model."""
        return schema.encode_blob("TARGET_METADATA", target=self.id, kernels=KERNEL_SETS[self.kernels])


# Builtin ops whose CMSIS-NN kernels break the overlap rule, per instruction set CMSIS-NN compiles for.
# DSP (Cortex-M4F, M7): CONV_2D. A 1x1 conv with stride 1 runs as one matrix product over the whole
# tensor (arm_convolve_1x1_s8_fast), whose DSP and portable paths (arm_nn_mat_mult_nt_t_s8) loop over
# output channel pairs outside the pixels: channels 0-1 of the last pixels are written before channels
# 2-3 of the first ones have read their input. Its other paths, and CMSIS-NN's depthwise, pooling,
# element-wise and pad kernels, work pixel by pixel. Shown on the emulated Cortex-M7
# (tests/test_device.py), where overlapping a 1x1 conv's output corrupts training. tinytrain's own
# TT_CONV_2D and TT_DEPTHWISE_CONV_2D (flash requantization) call CMSIS-NN one output row at a time
# (kernels/cmsis_nn/common/conv_rows.h), which keeps the rule whatever the order inside a row, here and
# under MVE: they overlap on every target.
CMSIS_NN_NO_OVERLAP = frozenset({"CONV_2D"})
# MVE (Helium, Cortex-M55): CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, until each is shown safe.
# There the matrix product (arm_nn_mat_mult_nt_t_s8) takes four pixels at a time and, for each output
# channel in turn, reads the four inputs and writes four outputs, so a chunk straddling an image row
# writes before it has read all it needs; the MVE depthwise paths (arm_depthwise_conv_s8_opt, or a
# depthwise run as a conv) and the fully connected one (arm_nn_vec_mat_mult_t_s8) have loop orders of
# their own. None is shown to corrupt training yet: MobileNetV2 blocks and a 7x7 1x1-conv model planned
# with every conv overlapping trained bit-identically on the emulated M55. Until the loops are read to
# the end these outputs keep bytes of their own; tests/test_device.py runs the M55 with these rules.
CMSIS_NN_MVE_NO_OVERLAP = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


def _cortex_m(core: int, fpu: str, board: Board, cmsis_nn_no_overlap: frozenset[str] = CMSIS_NN_NO_OVERLAP) -> Target:
    """A hard-float Cortex-M`core` target, CMSIS-NN kernels by default, on a QEMU board. `fpu` empty:
    the one -mcpu implies (the M55's FPU with MVE, which turns on CMSIS-NN's Helium paths)."""
    flags = ("-mthumb", f"-mcpu=cortex-m{core}", *([f"-mfpu={fpu}"] if fpu else []), "-mfloat-abi=hard")
    return Target(f"cortex-m{core}", core, "cmsis-nn", 4, flags, f"ARMCM{core}", board,
                  cmsis_nn_no_overlap=cmsis_nn_no_overlap, mve=not fpu)  # fmt: skip


# Adding a target is one entry here, naming its board (a QEMU machine and its linker script in
# kernels/cortex_m/board/).
TARGETS = {
    target.name: target.with_kernels(target.kernels)
    for target in (
        Target("host", 0, "reference", pointer_bytes=8),
        _cortex_m(4, "fpv4-sp-d16", MPS2_AN386),
        _cortex_m(7, "fpv5-d16", MPS2_AN500),
        _cortex_m(55, "", MPS3_AN547, CMSIS_NN_MVE_NO_OVERLAP),
    )
}
HOST = TARGETS["host"]


def target(name: str | Target, kernels: str | None = None) -> Target:
    """The target called `name`, with its default kernels or `kernels`; an error lists the known ones."""
    if isinstance(name, Target):
        return name.with_kernels(kernels)
    if name not in TARGETS:
        raise TinyTrainError(f"unknown target {name!r}; known targets: {', '.join(TARGETS)}")
    return TARGETS[name].with_kernels(kernels)


def of_model(graph: ir.Graph) -> Target:
    """The target a training model was compiled for (its TARGET_METADATA); host for models without it."""
    if TARGET_METADATA not in graph.metadata:
        return HOST
    recorded = schema.decode_blob("TARGET_METADATA", graph.metadata[TARGET_METADATA])
    names = {t.id: t.name for t in TARGETS.values()}
    kernels = {v: k for k, v in KERNEL_SETS.items()}
    if recorded["target"] not in names or recorded["kernels"] not in kernels:
        raise TinyTrainError(f"the model's {TARGET_METADATA} metadata names an unknown target or kernel set: {recorded}")
    return target(names[recorded["target"]], kernels[recorded["kernels"]])

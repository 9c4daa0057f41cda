"""Where a training model runs: the device's core, the kernels TFLM runs its builtin ops with there,
its pointer size and the emulated board that stands for it. One entry per target in TARGETS.

The kernel set matters to the compiler: overlapping buffers (overlap.py) assume a kernel that writes
its output rows in order and reads each input row no later than the rows it writes, which holds for
TFLM's reference kernels and tinytrain's. `overlap_ops` names the ops whose outputs may overlap an
input on that target.
"""

from __future__ import annotations

import dataclasses

from .errors import TinyTrainError

KERNEL_SETS = ("reference", "cmsis-nn")


@dataclasses.dataclass(frozen=True)
class Target:
    """A device: its core and the kernels TFLM runs there."""

    name: str  # host, cortex-m4, ...
    kernels: str  # one of KERNEL_SETS
    pointer_bytes: int
    cpu_flags: tuple[str, ...] = ()  # arm-none-eabi-g++ flags; empty for the host
    cmsis_device: str = ""  # the Cortex_DFP device folder (ARMCM7, ...) CMSIS-NN's build names
    qemu_machine: str = ""  # the QEMU board that emulates it
    ram_bytes: int = 256 * 1024  # the arena region the firmware links with

    @property
    def emulated(self) -> bool:
        return bool(self.qemu_machine)

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
        return dataclasses.replace(self, kernels=kernels)


TARGETS = {
    target.name: target
    for target in (
        Target("host", "reference", pointer_bytes=8),
        Target(
            "cortex-m4",
            "cmsis-nn",
            pointer_bytes=4,
            cpu_flags=("-mthumb", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
            cmsis_device="ARMCM4",
            qemu_machine="mps2-an386",
        ),
        Target(
            "cortex-m7",
            "cmsis-nn",
            pointer_bytes=4,
            cpu_flags=("-mthumb", "-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
            cmsis_device="ARMCM7",
            qemu_machine="mps2-an500",
        ),
    )
}
HOST = TARGETS["host"]


def target(name: str, kernels: str | None = None) -> Target:
    """The target called `name`, with its default kernels or `kernels`; an error lists the known ones."""
    if name not in TARGETS:
        raise TinyTrainError(f"unknown target {name!r}; known targets: {', '.join(TARGETS)}")
    return TARGETS[name].with_kernels(kernels)

"""What goes onto a device: the model as a C array (c_array), kernels generated for one model (codegen),
the Arduino library (arduino), and firmware for emulated Cortex-M boards (device), compiled through one build
cache (build) that the host build of the Arduino library's TFLM (arduino_tflm) shares."""

from __future__ import annotations

from pathlib import Path

from ..errors import TinyTrainError

# pip install ships kernels/ and arduino/ into this folder (CMakeLists.txt); a source checkout has them at its root.
_ROOTS = (Path(__file__).parent, Path(__file__).parents[2])


def sources_root(*needed: str) -> Path:
    """The installed package's firmware folder or the source checkout, whichever holds every path in `needed`."""
    for root in _ROOTS:
        if all((root / path).exists() for path in needed):
            return root
    raise TinyTrainError(f"tinytrain's kernel sources are missing from this installation ({', '.join(needed)}); reinstall it")

"""Assembles the installable Arduino library: the skeleton in arduino/ (library.properties, TinyTrain.h,
the TrainOnDevice sketch), tinytrain's firmware kernel sources under src/tinytrain/, and the training
model as the sketch's C array.

The Arduino IDE compiles only a library's own files, and only .c/.cpp/.S among them, so the kernel
sources are copied with .cc renamed .cpp; their includes are relative and need no change. The
host-only files (register_host.cc, host_resolver.*: the wheel's resolver view, tflm_abi.h) stay out: the ARDUINO
define selects TFLM's headers.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..errors import TinyTrainError
from . import c_array, sources_root

HOST_ONLY = {"register_host.cc", "host_resolver.cc", "host_resolver.h", "tflm_abi.h"}
KERNEL_FOLDERS = ("core", "tflm")
SKETCH = "TrainOnDevice"
DEFAULT_NAME = "TinyTrain"  # the skeleton's library name and header, arduino/src/TinyTrain.h

SOURCES = ("kernels/tflm", "arduino/library.properties")  # what the library is assembled from


def _rename(library: Path, name: str) -> None:
    """The skeleton's library name and header (DEFAULT_NAME) replaced by `name`."""
    (library / "src" / f"{DEFAULT_NAME}.h").rename(library / "src" / f"{name}.h")
    properties = library / "library.properties"
    text = properties.read_text().replace(f"name={DEFAULT_NAME}\n", f"name={name}\n")
    properties.write_text(text.replace(f"includes={DEFAULT_NAME}.h", f"includes={name}.h"))
    sketch = library / "examples" / SKETCH / f"{SKETCH}.ino"
    sketch.write_text(sketch.read_text().replace(f"#include <{DEFAULT_NAME}.h>", f"#include <{name}.h>"))


def kernel_sources() -> dict[Path, Path]:
    """Every firmware kernel source or header, mapped to its path inside the Arduino library."""
    kernels = sources_root(*SOURCES) / "kernels"
    files = {}
    for folder in KERNEL_FOLDERS:
        for path in sorted((kernels / folder).rglob("*")):
            if path.suffix in (".h", ".cc") and path.name not in HOST_ONLY:
                relative = path.relative_to(kernels).with_suffix(".cpp" if path.suffix == ".cc" else ".h")
                files[path] = Path("src/tinytrain") / relative
    return files


def check_destination(output: Path, name: str, force: bool) -> None:
    """What assemble refuses, checked before any work: a bad name, an existing directory (without `force`),
    or, with `force`, a directory that is not an Arduino library."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise TinyTrainError(f"library name {name!r} must be letters, digits and underscores, starting with a letter")
    if output.exists():
        if not force:
            raise TinyTrainError(f"{output} already exists; give arduino-library a new directory, or --force to replace it")
        if not (output / "library.properties").is_file():
            raise TinyTrainError(f"{output} is not an Arduino library (no library.properties); --force replaces only one")


def assemble(
    model: bytes, output: Path, arena: c_array.ArenaSize, origin: str, name: str = DEFAULT_NAME, force: bool = False
) -> list[Path]:
    """Writes the library into the new directory `output` (with `force`, over a library this wrote before);
    returns the files written, relative to it. `name`: the library's name and header (NAME.h), so that
    libraries for two models can sit side by side in the IDE."""
    check_destination(output, name, force)
    root = sources_root(*SOURCES)
    sketch = Path("examples") / SKETCH / "train_model.cpp"
    source_text, header_text = c_array.c_array_files(model, sketch, "train_model", arena, origin)
    try:
        if output.exists():
            shutil.rmtree(output)
        shutil.copytree(root / "arduino", output)
        _rename(output, name)
        for source, target in kernel_sources().items():
            (output / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, output / target)
        (output / sketch).write_text(source_text)
        (output / sketch.with_suffix(".h")).write_text(header_text)
    except OSError as error:
        raise TinyTrainError(f"cannot write the Arduino library to {output}: {error.strerror}") from None
    return sorted(path.relative_to(output) for path in output.rglob("*") if path.is_file())

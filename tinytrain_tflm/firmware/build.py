"""Compiling C and C++ into a shared, content-keyed build cache: what every firmware build here shares.

device (TFLM and the harness for emulated boards) and arduino_tflm (the Arduino library's TFLM and its arena
probe, on the host) both build through this module: a toolchain per target, (source, object, command) units
compiled when out of date, static libraries, folders named by a key of their inputs, a lock per folder so
processes sharing the cache never write the same files at once, and a failed run's telling line.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import TinyTrainError
from ..target import Target
from . import sources_root

# A (source, object, command) triple: `command` compiles `source` into `object` when given "-c source -o object".
Unit = tuple[Path, Path, list[str]]


def build_dir() -> Path:
    return Path(os.environ.get("TINYTRAIN_BUILD_DIR") or Path.home() / ".cache" / "tinytrain-tflm")


@dataclasses.dataclass(frozen=True)
class Toolchain:
    cxx: str
    cc: str
    ar: str
    flags: tuple[str, ...]  # the core's flags, every file

    @staticmethod
    def of(target: Target) -> Toolchain:
        if target.emulated:
            return Toolchain("arm-none-eabi-g++", "arm-none-eabi-gcc", "arm-none-eabi-ar", target.cpu_flags)
        return HOST


HOST = Toolchain("c++", "cc", "ar", ())


def kernel_sources() -> Path:
    """kernels/ with the core, its Cortex-M versions (cmsis_nn/), the glue, the board support and the harness."""
    return sources_root("kernels/cortex_m/harness") / "kernels"


def core_sources(kernels: Path, kernel_set: str) -> list[Path]:
    """The kernel core's sources for a kernel set: for cmsis-nn, kernels/cmsis_nn/<family>/<file> replaces
    kernels/core/<family>/<file> (TFLM's way with its optimized kernels); the reference set is the core."""
    core = {path.relative_to(kernels / "core"): path for path in kernels.glob("core/*/*.cc")}
    if kernel_set == "cmsis-nn":
        core |= {path.relative_to(kernels / "cmsis_nn"): path for path in kernels.glob("cmsis_nn/*/*.cc")}
    return sorted(core.values())


def units(sources: list[Path], root: Path, out: Path, command: list[str], c_command: list[str]) -> list[Unit]:
    """A unit per source, its object under `out` where the source is under `root`; C files take `c_command`."""
    found = []
    for source in sources:
        obj = out / source.relative_to(root).with_suffix(".o")
        found.append((source, obj, c_command if source.suffix == ".c" else command))
    return found


def _up_to_date(obj: Path) -> bool:
    """The object exists and is newer than every file its dependency list (-MMD) names."""
    depfile = obj.with_suffix(".d")
    if not obj.is_file() or not depfile.is_file():
        return False
    built = obj.stat().st_mtime
    names = depfile.read_text().replace("\\\n", " ").split(":", 1)[-1].split()
    return all(Path(name).is_file() and Path(name).stat().st_mtime <= built for name in names)


def compile_units(to_compile: Sequence[Unit], what: str) -> None:
    """Compiles the units that are out of date, as many at once as there are cores, with progress on stderr;
    a failure is one line naming the file and the compiler's first error."""
    stale = [unit for unit in to_compile if not _up_to_date(unit[1])]
    if not stale:
        return

    launcher = [ccache] if (ccache := shutil.which("ccache")) else []  # rebuilds of a fresh tree hit its cache

    def run(unit: Unit) -> tuple[Path, subprocess.CompletedProcess]:
        source, obj, command = unit
        obj.parent.mkdir(parents=True, exist_ok=True)
        return source, subprocess.run([*launcher, *command, "-c", str(source), "-o", str(obj)], capture_output=True, text=True)

    print(f"tinytrain: compiling {what}: {len(stale)} files", file=sys.stderr, flush=True)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        for done, (source, result) in enumerate(pool.map(run, stale), 1):
            if result.returncode != 0:
                raise TinyTrainError(f"compiling {source} for {what} failed: {first_error(result)}")
            if done % 20 == 0:
                print(f"tinytrain: compiling {what}: {done}/{len(stale)}", file=sys.stderr, flush=True)


# What a failed compiler or linker run says went wrong, most telling first. collect2's closing "ld returned 1
# exit status" also contains "error", but it never names the cause, which the linker printed above it.
_ERROR_MARKERS = ("error:", "undefined reference", "multiple definition", "overflow", "error")


def first_error(result: subprocess.CompletedProcess) -> str:
    """The line of a failed compiler or linker run that says what went wrong (a region overflow among them)."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("collect2")]
    for marker in _ERROR_MARKERS:
        found = next((line for line in lines if marker in line), None)
        if found is not None:
            return found
    return lines[0] if lines else f"exit code {result.returncode}"


def archive(library: Path, objects: list[Path], toolchain: Toolchain) -> Path:
    """`library`, archived from `objects` unless it is already newer than all of them."""
    if library.is_file() and all(obj.stat().st_mtime <= library.stat().st_mtime for obj in objects):
        return library
    library.unlink(missing_ok=True)
    subprocess.run([toolchain.ar, "rcs", str(library), *map(str, objects)], check=True)
    return library


@contextlib.contextmanager
def building(folder: Path) -> Iterator[Path]:
    """Holds an exclusive lock on folder/.lock while the caller compiles into `folder`, so processes sharing a
    build cache (parallel test workers, two shells, two worktrees) never write the same files at once, while
    builds into other folders (another model's harness, another core's TFLM) go on beside them. The caller
    checks what is up to date only once it holds the lock, so the second finds the first's work done."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield folder


def content_key(*parts: object) -> str:
    """A short digest of `parts` (sources, compilers, flags): a build folder's name, new when any of them changes."""
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:12]

"""Building `tinytrain-tflm codegen` output: host plugin libraries through kernels/CMakeLists.txt, and the
core-level files for a Cortex-M7 with arm-none-eabi-g++ (shared by tests/test_codegen.py and benchmarks/codegen.py)."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNELS = REPO / "kernels"
# The Cortex-M7 flags the core must compile warning-free with.
CORTEX_M7_FLAGS = [
    "-mcpu=cortex-m7",
    "-mthumb",
    "-mfloat-abi=hard",
    "-mfpu=fpv5-d16",
    "-Os",
    "-std=c++17",
    "-fno-exceptions",
    "-fno-rtti",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wdouble-promotion",
]
ARM_CXX = "arm-none-eabi-g++"


def _cmake() -> str:
    """The venv's cmake (a dev dependency), else the one on PATH."""
    beside_python = Path(sys.executable).parent / "cmake"
    found = str(beside_python) if beside_python.exists() else shutil.which("cmake")
    if found is None:
        raise RuntimeError("cmake is needed to build generated kernels: pip install cmake")
    return found


def package_build_tree() -> Path | None:
    """The package's own build tree for this Python (pyproject.toml's build-dir, build/<wheel tag>), if `make setup`
    left one: the installed plugin's core and glue, compiled there, which generated plugins can link
    (kernels/CMakeLists.txt, TINYTRAIN_HOST_BUILD)."""
    found = sorted(REPO.glob(f"build/cp{sys.version_info.major}{sys.version_info.minor}-*/tinytrain_host_targets.cmake"))
    return found[0].parent if found else None


def build_host_libraries(directories: list[Path], build_dir: Path) -> list[Path]:
    """One plugin library per codegen output directory, built as the project's own plugin is (Release), over the
    package build's core and glue where there is one (package_build_tree), else compiling them too."""
    cmake = _cmake()
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    dirs = ";".join(str(d.resolve()) for d in directories)
    package_build = package_build_tree()
    configure = [cmake, "-S", str(REPO), "-B", str(build_dir), *generator, "-DCMAKE_BUILD_TYPE=Release"]
    if package_build is not None:
        configure.append(f"-DTINYTRAIN_HOST_BUILD={package_build}")
    subprocess.run([*configure, f"-DTINYTRAIN_GENERATED_DIRS={dirs}"], check=True, capture_output=True)
    targets = [f"tinytrain_generated_{i}" for i in range(len(directories))]
    subprocess.run([cmake, "--build", str(build_dir), "--target", *targets, "-j", "2"], check=True, capture_output=True)
    return [build_dir / "kernels" / f"generated_{i}" / "_tinytrain_generated.so" for i in range(len(directories))]


def compile_for_cortex_m7(sources: list[Path], include_dirs: list[Path], output_dir: Path) -> list[Path]:
    """Object files of `sources` for a Cortex-M7, as many compiled at once as there are cores; raises
    CalledProcessError with the compiler's output."""
    includes = [f"-I{d}" for d in include_dirs]

    def compile_one(source: Path) -> Path:
        obj = output_dir / (source.parent.name + "_" + source.stem + ".o")
        subprocess.run([ARM_CXX, *CORTEX_M7_FLAGS, *includes, "-c", str(source), "-o", str(obj)], check=True, capture_output=True)
        return obj

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(compile_one, sources))

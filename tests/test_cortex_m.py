"""The kernel core on Cortex-M: the cross build and its checks (no heap, exceptions, RTTI, global state or
float64), and the kernel test (tests/cortex_m) on emulated Cortex-M4F, Cortex-M7 and Cortex-M55 boards in
QEMU against NumPy references, bit-identical to the same test built for the host.

Needs Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm; `make test` installs them
when run as root; and for the cmsis-nn kernel set's program, CMSIS-NN (the pinned bundle, TINYTRAIN_THIRD_PARTY,
as for tinytrain_tflm.firmware.device). Without them the tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require

from tinytrain_tflm.firmware import device
from tinytrain_tflm.target import TARGETS

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "cortex-m"
# The make targets (kernels/cortex_m/core.mk) and the QEMU boards of the device targets.
BOARDS = {core: TARGETS[f"cortex-{core}"].board.qemu_machine for core in ("m4", "m7", "m55")}
# tinytrain_tflm.device runs its boards the same way (its QEMU_FLAGS end with -semihosting-config).
QEMU = ["qemu-system-arm", *device.QEMU_FLAGS, "enable=on,target=native"]
CASE_LINE = re.compile(r"^(PASS|FAIL) (\S+) digest=([0-9a-f]{8}) instructions=(\d+|n/a)$", re.MULTILINE)
CALIBRATION_INSTRUCTIONS = 200_000


@pytest.fixture(scope="module", autouse=True)
def toolchain() -> None:
    require(device.check_tools)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_toolchain_fails_in_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=re.escape(f"apt-get install {device.TOOL_PACKAGES}")):
        require(device.check_tools)


def make(*targets: str) -> str:
    result = subprocess.run(
        ["make", "-C", str(REPO), "-j2", *targets, f"REFERENCE_PYTHON={sys.executable}"], capture_output=True, text=True
    )
    assert result.returncode == 0, f"make {' '.join(targets)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def cases(output: str) -> dict[str, tuple[str, str, str]]:
    """{case: (PASS or FAIL, digest, instructions)} of a kernel test run."""
    found = {name: (verdict, digest, count) for verdict, name, digest, count in CASE_LINE.findall(output)}
    assert found, f"no case lines in the output:\n{output[-2000:]}"
    return found


def assert_all_pass(output: str, returncode: int) -> dict[str, tuple[str, str, str]]:
    results = cases(output)
    failed = [name for name, (verdict, _, _) in results.items() if verdict != "PASS"]
    assert not failed and returncode == 0, f"failed cases {failed} (exit {returncode}):\n{output[-4000:]}"
    assert f"SUMMARY {len(results)} passed, 0 failed" in output
    return results


@pytest.fixture(scope="module")
def programs() -> None:
    # The cmsis-nn kernel set's forward convolutions call CMSIS-NN: the pinned bundle's, as the firmware builds.
    sources = require(device.locate_sources)
    make("cortex-m-test-programs", f"CMSIS_NN_ROOT={sources.cmsis_nn}")


@pytest.fixture(scope="module")
def host_results(programs) -> dict[str, tuple[str, str, str]]:
    run = subprocess.run([str(BUILD / "host" / "kernel_test")], capture_output=True, text=True, timeout=120)
    return assert_all_pass(run.stdout, run.returncode)


def test_core_cross_compiles_clean_and_reports_code_size():
    output = make("cortex-m")
    assert "no heap, exceptions, RTTI, global state or float64 on Cortex-M4F, Cortex-M7, Cortex-M55" in output
    rows = dict(re.findall(r"^\| (\w+) \| \d+ \| (\d+(?: \| \d+)*) \|$", output, re.MULTILINE))
    families = {path.name for path in (REPO / "kernels" / "core").iterdir() if path.is_dir()}
    assert set(rows) == families | {"total"}
    assert all(len(row.split(" | ")) == len(BOARDS) for row in rows.values())  # a size per core
    assert all(int(size) > 0 for row in rows.values() for size in row.split(" | "))


FORBIDDEN_CODE = """
#include <stdlib.h>
void* g_buffer;
extern "C" double tt_bad(float x) {
  g_buffer = malloc(16);
  return static_cast<double>(x) * 3.0;
}
"""


@pytest.mark.parametrize(
    "target, cpu",
    [("m4", "-mcpu=cortex-m4 -mfpu=fpv4-sp-d16"), ("m7", "-mcpu=cortex-m7 -mfpu=fpv5-d16"), ("m55", "-mcpu=cortex-m55")],
)
def test_core_check_rejects_heap_global_state_and_float64(tmp_path, target, cpu):
    family = tmp_path / "bad"
    family.mkdir()
    (family / "tt_bad.cc").write_text(FORBIDDEN_CODE)
    subprocess.run(
        ["arm-none-eabi-g++", "-mthumb", *cpu.split(), "-mfloat-abi=hard", "-O2", "-c", "tt_bad.cc", "-o", "tt_bad.o"],
        cwd=family,
        check=True,
    )
    check = subprocess.run(
        [sys.executable, str(REPO / "kernels" / "cortex_m" / "core_report.py"), f"{target}={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1
    assert "calls malloc (heap allocation)" in check.stderr
    assert "bytes of .bss" in check.stderr
    # The M4F has no float64 instructions: the arithmetic becomes helper calls. The M7 and M55 have them.
    assert ("(float64)" if target == "m4" else "float64 instructions") in check.stderr


def test_kernel_test_passes_on_the_host(host_results):
    families = {name.split("/")[0] for name in host_results}
    assert {"conv_input_grad", "depthwise_filter_grad", "fully_connected_input_grad", "bias_grad", "max_pool_grad"} <= families
    assert {"activation_grad_from_mask", "softmax_cross_entropy", "grad_add", "sgd_update_s8", "sgd_update_s32"} <= families
    assert {"unary_grad", "mul_grad", "binary_cross_entropy", "mean_squared_error"} <= families
    assert all(count == "n/a" for _, _, count in host_results.values())


def run_on_board(target: str, program: str) -> subprocess.CompletedProcess:
    elf = BUILD / target / f"{program}.elf"
    return subprocess.run([*QEMU, "-M", BOARDS[target], "-kernel", str(elf)], capture_output=True, text=True, timeout=300)


# kernel_test_cmsis_nn links the core with kernels/cmsis_nn's versions, as the cmsis-nn firmware does.
@pytest.mark.parametrize("program", ["kernel_test", "kernel_test_cmsis_nn"])
@pytest.mark.parametrize("target", BOARDS)
def test_kernel_test_passes_on_emulated_cortex_m(host_results, target, program):
    run = run_on_board(target, program)
    results = assert_all_pass(run.stdout, run.returncode)
    assert results.keys() == host_results.keys()
    different = [name for name, (_, digest, _) in results.items() if digest != host_results[name][1]]
    assert not different, f"outputs differ from the host build's: {different}"
    # The instruction counter reproduces a loop of known length, and counted every case.
    calibration = re.search(r"^CALIBRATION loop of (\d+) instructions counted as (\d+)$", run.stdout, re.MULTILINE)
    assert calibration, run.stdout[:500]
    assert abs(int(calibration[2]) - CALIBRATION_INSTRUCTIONS) <= 10
    assert all(count.isdigit() and int(count) > 0 for _, _, count in results.values())


# The families kernels/cmsis_nn replaces (fully connected gradients run the conv ones; grad_top_level is
# the glue's measure of an int8 gradient's largest level, common/tt_grad_top_level.cc; the forward
# convolutions call CMSIS-NN, or without Helium for a 1x1 stride-1 conv, our pointwise kernel).
OPTIMIZED_FAMILIES = (
    "activation_grad_from_output",
    "conv_forward",
    "depthwise_forward",
    "avg_pool_grad",
    "conv_input_grad",
    "conv_filter_grad",
    "depthwise_input_grad",
    "depthwise_filter_grad",
    "fully_connected_input_grad",
    "fully_connected_filter_grad",
    "grad_top_level",
)


@pytest.mark.parametrize("target", BOARDS)
def test_cmsis_nn_program_runs_the_optimized_kernels(programs, target):
    """Its bit-identical digests (above) test the optimized kernels only if they ran: every other family
    takes the reference's instruction counts, each replaced family fewer in some case (not in all: with 2
    or 3 input channels a block holds one channel, and a conv gradient takes up to 10% more)."""
    reference, optimized = (cases(run_on_board(target, program).stdout) for program in ("kernel_test", "kernel_test_cmsis_nn"))
    faster = {name.split("/")[0] for name, (_, _, count) in reference.items() if int(optimized[name][2]) < int(count)}
    assert faster == set(OPTIMIZED_FAMILIES)
    for name, (_, _, count) in reference.items():
        if name.split("/")[0] not in OPTIMIZED_FAMILIES:
            assert optimized[name][2] == count, (name, count, optimized[name][2])

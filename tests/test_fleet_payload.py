"""The fleet update payload, written and read by Python (tinytrain_tflm/fleet/payload.py) and by the
firmware API (kernels/core/fleet, driven by tests/fleet_host/fleet_update_tool.cc): the same bytes both
ways, trained channels only, and every corrupted blob rejected with a message by both, the device's
tensors left untouched."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

import tinytrain_tflm as tt
from tinytrain_tflm.errors import TinyTrainError

payload = pytest.importorskip("tinytrain_tflm.fleet.payload")

ROOT = Path(__file__).resolve().parents[1]
CXX = shutil.which("c++")
# Biases of the last two layers, all of layer 2 (the classifier) and half of layer 1's output channels.
SCHEME = {"bias_last": 2, "weights": {"1": 0.5, "2": 1}}


@pytest.fixture(scope="module")
def trainer() -> tt.Trainer:
    model = (ROOT / "tests" / "data" / "small_cnn.tflite").read_bytes()
    return tt.Trainer(tt.compile(model, update=SCHEME))


@pytest.fixture(scope="module")
def tool(tmp_path_factory) -> Path:
    if CXX is None:
        pytest.skip("needs a C++ compiler (c++)")
    binary = tmp_path_factory.mktemp("fleet_tool") / "fleet_update_tool"
    core = ROOT / "kernels" / "core"
    sources = [
        ROOT / "tests" / "fleet_host" / "fleet_update_tool.cc",
        core / "fleet" / "tt_fleet_update.cc",
        core / "common" / "tt_blob.cc",
        core / "common" / "tt_status.cc",
    ]
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion", "-Wshadow", f"-I{core}"]
    subprocess.run([CXX, *flags, "-o", str(binary), *map(str, sources)], check=True, capture_output=True)
    return binary


def write_spec(path: Path, specs: list, values: list[np.ndarray]) -> Path:
    """The tool's text spec: tensor layouts, scales as float32 bit patterns, the device's whole variables."""
    lines = [str(len(specs))]
    for spec, flat in zip(specs, values, strict=True):
        outer = int(np.prod(spec.shape[: spec.axis]))
        inner = int(np.prod(spec.shape[spec.axis + 1 :]))
        type_id = 1 if spec.dtype == np.int8 else 2
        fields = [spec.tensor, type_id, outer, spec.shape[spec.axis], spec.trained, inner, spec.scales.size]
        lines.append(" ".join(map(str, fields)))
        lines.append(" ".join(str(b) for b in spec.scales.astype("<f4").view("<u4")))
        lines.append(" ".join(str(int(v)) for v in flat))
    path.write_text("\n".join(lines) + "\n")
    return path


def random_values(rng: np.random.Generator, specs: list, whole: bool = False) -> list[np.ndarray]:
    """Random values in each tensor's range: its trained values, or (whole) the whole variable."""
    values = []
    for spec in specs:
        low, high = spec.limits if spec.dtype == np.int8 else (-(10**6), 10**6)
        count = int(np.prod(spec.shape)) if whole else spec.count
        values.append(rng.integers(low, high, count, endpoint=True).astype(spec.dtype))
    return values


def test_payload_holds_the_trained_channels_only(trainer):
    specs = payload.specs(trainer)
    # Layer 1 (8 output channels) trains half of them: 4 channels of its weights and of its bias travel.
    assert [(s.shape, s.trained, s.count, s.scales.size) for s in specs] == [
        ((8, 3, 3, 4), 4, 4 * 36, 4),
        ((8,), 8, 8, 8),
        ((3, 32), 3, 96, 3),
        ((3,), 3, 3, 3),
    ]
    device = trainer.tensor_values()
    for parameter, spec, values in zip(trainer.parameters, specs, payload.current_values(trainer), strict=True):
        np.testing.assert_array_equal(values, device[parameter.name][: spec.trained].ravel())
    blob = payload.write_update(payload.Update(3, 17, payload.current_values(trainer)), specs)
    expected = 28 + sum(16 + 4 * s.scales.size + (s.count * s.dtype.itemsize + 3) // 4 * 4 for s in specs)
    assert len(blob) == payload.payload_size(specs) == expected


def test_python_and_firmware_write_the_same_bytes_and_read_each_other(trainer, tool, tmp_path, rng):
    specs = payload.specs(trainer)
    device = random_values(rng, specs, whole=True)  # the device's whole RAM variables
    spec_file = write_spec(tmp_path / "spec.txt", specs, device)
    # Firmware -> Python: the device uploads its trained channels.
    subprocess.run([tool, spec_file, "write", "4", "123", tmp_path / "up.bin"], check=True)
    up = (tmp_path / "up.bin").read_bytes()
    trained = [spec.take(whole) for spec, whole in zip(specs, device, strict=True)]
    assert up == payload.write_update(payload.Update(4, 123, trained), specs)
    read = payload.read_update(up, specs)
    assert (read.round, read.num_samples) == (4, 123)
    for got, want in zip(read.values, trained, strict=True):
        np.testing.assert_array_equal(got, want)
    # Python -> firmware: the device applies the fleet's global values to its trained channels only.
    global_values = random_values(rng, specs)
    (tmp_path / "down.bin").write_bytes(payload.write_update(payload.Update(5, 0, global_values), specs))
    line = subprocess.run([tool, spec_file, "apply", tmp_path / "down.bin"], check=True, capture_output=True, text=True).stdout
    applied = [spec.put(whole, values).ravel() for spec, whole, values in zip(specs, device, global_values, strict=True)]
    assert line.split() == ["applied", "5", "0", *(str(int(v)) for v in np.concatenate(applied))]


def _refixed(blob: bytes) -> bytes:
    """The blob with its CRC recomputed, so a structural corruption reaches the checks behind the CRC."""
    return blob[:12] + struct.pack("<I", zlib.crc32(blob[16:])) + blob[16:]


def corruptions(blob: bytes, specs: list, rng: np.random.Generator) -> dict[str, bytes]:
    cases = {"empty": b"", "header only": blob[:16], "one byte short": blob[:-1], "one byte long": blob + b"\0"}
    for position in sorted({*range(16), *rng.choice(len(blob), 120, replace=False).tolist()}):
        flipped = bytearray(blob)
        flipped[position] ^= 1 << int(rng.integers(8))
        cases[f"bit flip at {position}"] = bytes(flipped)
    for cut in rng.choice(len(blob), 20, replace=False):
        cases[f"truncated to {cut}"] = blob[:cut]
    first = 28  # first tensor's header
    for field, name in enumerate(["index", "type", "count", "num_scales"]):
        changed = bytearray(blob)
        struct.pack_into("<I", changed, first + 4 * field, struct.unpack_from("<I", blob, first + 4 * field)[0] + 1)
        cases[f"tensor {name} + 1 (CRC fixed)"] = _refixed(bytes(changed))
    for value, name in [(len(specs) + 1, "one tensor more"), (len(specs) - 1, "one tensor less"), (2**32 - 1, "2^32-1 tensors")]:
        changed = bytearray(blob)
        struct.pack_into("<I", changed, 24, value)
        cases[f"{name} (CRC fixed)"] = _refixed(bytes(changed))
    scale = bytearray(blob)
    struct.pack_into("<f", scale, first + 16, struct.unpack_from("<f", blob, first + 16)[0] * 1.0001)
    cases["another scale (CRC fixed)"] = _refixed(bytes(scale))
    int8_offset = first + 16 + 4 * specs[0].scales.size
    assert specs[0].dtype == np.int8
    minus128 = bytearray(blob)
    minus128[int8_offset] = 0x80
    cases["int8 -128 (CRC fixed)"] = _refixed(bytes(minus128))
    wrong_version = bytearray(blob)
    wrong_version[4] = 2
    cases["version 2"] = bytes(wrong_version)
    return cases


def test_a_corrupt_blob_is_rejected_with_a_message_and_never_applied(trainer, tool, tmp_path, rng):
    specs = payload.specs(trainer)
    blob = payload.write_update(payload.Update(1, 9, random_values(rng, specs)), specs)
    cases = corruptions(blob, specs, rng)
    files = []
    for k, corrupt in enumerate(cases.values()):
        assert corrupt != blob
        with pytest.raises(TinyTrainError, match="fleet update|not a fleet update"):
            payload.read_update(corrupt, specs)
        files.append(tmp_path / f"case{k}.bin")
        files[-1].write_bytes(corrupt)
    spec_file = write_spec(tmp_path / "spec.txt", specs, random_values(rng, specs, whole=True))
    lines = subprocess.run([tool, spec_file, "apply", *files], check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(lines) == len(cases)
    for name, line in zip(cases, lines, strict=True):
        assert line.startswith("rejected ") and line.endswith(" unchanged"), f"{name}: {line}"
        assert len(line.split()) > 3, f"{name}: no message in {line!r}"

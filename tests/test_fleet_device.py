"""A device of the fleet on the firmware runtime: examples/cpp/fleet_device.cc (MicroInterpreter built from
TFLM's sources, tinytrain's kernels in firmware mode, the fleet update API) driven by the Flower client
FirmwareDeviceClient. Its upload must be bit-identical to the host Trainer's after the same steps; a
corrupt download must be refused by the device; and two such devices must complete a federation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require

import tinytrain_tflm as tt
from tinytrain_tflm.cli import main as cli
from tinytrain_tflm.errors import TinyTrainError
from tinytrain_tflm.firmware import build, device
from tinytrain_tflm.target import HOST

pytest.importorskip("flwr")
from flwr.common import FitIns  # noqa: E402

from tinytrain_tflm.fleet import payload, simulation, strategy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEME = {"bias_last": 2, "weights": {"1": 0.5, "2": 1}}
EPOCHS, SEED = 2, 7


def _build_device(model: bytes, directory: Path) -> Path:
    """The device program built for `model`, copied into `directory`. The build tree is test_firmware's
    build/cpp-example (the same project and TFLM), so tinytrain's kernels compile once for both, and a rerun,
    or a build for another model, compiles only the model and the program."""
    sources = require(device.locate_sources)
    libraries = device.build_tflm(HOST, sources)
    (directory / "train.tflite").write_bytes(model)
    assert cli(["export", str(directory / "train.tflite"), "--c-array", str(directory / "train_model.cc")]) == 0
    tree = REPO / "build" / "cpp-example"
    configure = [
        "cmake",
        "-S",
        str(REPO / "examples" / "cpp"),
        "-B",
        str(tree),
        f"-DTRAINING_MODEL_SOURCE={directory / 'train_model.cc'}",
        f"-DTFLM_ROOT={sources.tflm}",
        f"-DTFLM_INCLUDE_DIRS={';'.join(map(str, sources.include_dirs))}",
        f"-DTFLM_LIBRARY={';'.join(map(str, libraries))}",
    ]
    with build.building(tree):  # test_firmware may be building it for its own model
        subprocess.run(configure, check=True, capture_output=True)
        subprocess.run(
            ["cmake", "--build", str(tree), "-j", "2", "--target", "tinytrain_fleet_device"], check=True, capture_output=True
        )
        return Path(shutil.copy2(tree / "tinytrain_fleet_device", directory))


@pytest.fixture(scope="module")
def fleet_device(tmp_path_factory) -> tuple[Path, bytes]:
    """The device program built for a training model (--no-overlap: see fleet_device.cc), and that model."""
    model = tt.compile((REPO / "tests" / "data" / "small_cnn.tflite").read_bytes(), update=SCHEME, overlap_buffers=False)
    return _build_device(model.bytes, tmp_path_factory.mktemp("fleet_device")), model.bytes


@pytest.fixture(scope="module")
def streamed_fleet_device(tmp_path_factory) -> tuple[Path, bytes]:
    """The device program built for the same scheme compiled with a streamed sample (--stream-input): int8
    gradients, 2x2 tiles of the first conv, flash requantization, --no-overlap. The program points the stage
    at each sample where it loaded it (tinytrain::SetStreamedInput)."""
    model = tt.compile(
        (REPO / "tests" / "data" / "small_cnn.tflite").read_bytes(),
        update=SCHEME,
        gradient="int8",
        tiles=(2, 2),
        stream_input=True,
        flash_requantization=True,
        overlap_buffers=False,
    )
    return _build_device(model.bytes, tmp_path_factory.mktemp("streamed_fleet_device")), model.bytes


def xorshift32(state: int) -> int:
    state ^= (state << 13) & 0xFFFFFFFF
    state ^= state >> 17
    return state ^ ((state << 5) & 0xFFFFFFFF)


def device_order(count: int, epochs: int, seed: int) -> list[int]:
    """The sample order fleet_device.cc trains in: a Fisher-Yates shuffle per epoch driven by xorshift32."""
    state, order, visits = seed | 1, list(range(count)), []
    for _ in range(epochs):
        for i in range(count - 1, 0, -1):
            state = xorshift32(state)
            j = state % (i + 1)
            order[i], order[j] = order[j], order[i]
        visits += order
    return visits


@pytest.mark.parametrize("program_and_model", ["fleet_device", "streamed_fleet_device"])
def test_device_upload_is_bit_identical_to_the_host_trainer(program_and_model, request, rng):
    program, model = request.getfixturevalue(program_and_model)
    base = tt.Trainer(model)
    specs = payload.specs(base)
    x = rng.uniform(0, 1, (20, *base.input.shape[1:])).astype(np.float32)
    y = np.arange(20) % 3
    global_values = [rng.integers(*(s.limits if s.dtype == np.int8 else (-1000, 1000)), s.count).astype(s.dtype) for s in specs]
    blob = payload.write_update(payload.Update(3, 0, global_values), specs)
    client = simulation.FirmwareDeviceClient(program, base, x, y, EPOCHS, SEED)
    result = client.fit(FitIns(strategy.to_parameters(blob), {"round": 3}))
    upload = payload.read_update(strategy.from_parameters(result.parameters), specs)
    assert (upload.round, upload.num_samples, result.num_examples) == (3, 20, 20)
    host = tt.Trainer(payload.with_values(base, global_values))
    for i in device_order(len(x), EPOCHS, SEED + 3):
        host.step(x[i], int(y[i]))
    for got, want, start in zip(upload.values, payload.current_values(host), global_values, strict=True):
        np.testing.assert_array_equal(got, want)
        assert (got != start).any()  # it trained from the global values


def test_device_refuses_a_corrupt_download(fleet_device, rng):
    program, model = fleet_device
    base = tt.Trainer(model)
    specs = payload.specs(base)
    blob = bytearray(payload.write_update(payload.Update(1, 0, payload.current_values(base)), specs))
    blob[-3] ^= 0x40
    client = simulation.FirmwareDeviceClient(program, base, rng.uniform(0, 1, (4, 12, 12, 1)), np.arange(4) % 3, 1, 0)
    with pytest.raises(TinyTrainError, match=r"fleet update rejected: .*CRC-32"):
        client.fit(FitIns(strategy.to_parameters(bytes(blob)), {"round": 1}))


def test_two_firmware_devices_complete_a_federation(fleet_device, rng):
    program, model = fleet_device
    x = rng.uniform(0, 1, (30, 12, 12, 1)).astype(np.float32)
    y = np.arange(30) % 3

    def firmware_client(base, shard_x, shard_y, epochs, seed):
        return simulation.FirmwareDeviceClient(program, base, shard_x, shard_y, epochs, seed)

    shards = [(x[:12], y[:12]), (x[12:], y[12:])]
    report = simulation.run_fleet(model, shards, x[:6], y[:6], rounds=2, client_factory=firmware_client)
    size = payload.payload_size(payload.specs(tt.Trainer(model)))
    for r in report.rounds[1:]:
        assert (r.accepted, r.rejected, r.bytes_up_per_client, r.bytes_down_per_client) == (2, 0, size, size)

"""A fleet on one machine: Flower's server and N Flower clients, each a TFLM Trainer on its own non-IID
shard, exchanging fleet update payloads over gRPC on the loopback interface.

Flower 1.42 runs its simulation engine only on Ray; its gRPC server (`start_server`) and clients
(`start_client`), deprecated in favour of the SuperLink/SuperNode processes but unchanged, run the
same Strategy and Client code with no extra dependency, offline, and put every payload through real
serialization. The server runs in the calling thread (it installs signal handlers), clients in threads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # Flower's usage telemetry would try the network
# Trainers fork a crash-guard child while gRPC threads run: gRPC's fork handlers only log that they skip.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import flwr  # noqa: E402
from flwr.client import Client  # noqa: E402
from flwr.common import Code, FitIns, FitRes, Status  # noqa: E402
from flwr.server import ServerConfig, start_server  # noqa: E402

from ..errors import TinyTrainError  # noqa: E402
from ..runtime.interpreter import minimum_arena_size  # noqa: E402
from ..runtime.trainer import Trainer  # noqa: E402
from . import payload  # noqa: E402
from .strategy import FleetAvg, from_parameters, to_parameters  # noqa: E402


def class_skew_shards(labels: np.ndarray, num_clients: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Sample indices per client: each class's samples split among clients in Dirichlet(alpha)
    proportions (small alpha: each client sees few classes). Every client gets at least one sample."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        shards: list[list[int]] = [[] for _ in range(num_clients)]
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(members)).astype(int)
            for shard, part in zip(shards, np.split(members, cuts), strict=True):
                shard.extend(part.tolist())
        if all(shards):
            return [rng.permutation(np.array(shard)) for shard in shards]
    raise TinyTrainError(f"cannot split {len(labels)} samples among {num_clients} clients so that each gets one")


def local_training(trainer: Trainer, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> Trainer:
    """`epochs` passes over (x, y) in a seeded random order, one sample per step."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        for i in rng.permutation(len(x)):
            trainer.step(x[i], int(y[i]))
    return trainer


class DeviceClient(Client):
    """A Flower client standing for one device: loads the global values, trains on its own samples, and
    uploads its trained tensors. Raw samples never leave it; the upload holds parameter values only."""

    def __init__(self, base: Trainer, x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
        self.base, self.x, self.y, self.epochs, self.seed = base, x, y, epochs, seed
        self.specs = payload.specs(base)

    def fit(self, ins: FitIns) -> FitRes:
        blob = from_parameters(ins.parameters)
        global_update = payload.read_update(blob, self.specs)  # a corrupt download is refused, never loaded
        trainer = Trainer(payload.with_values(self.base, global_update.values))
        round_ = int(ins.config["round"])
        local_training(trainer, self.x, self.y, self.epochs, self.seed + round_)
        update = payload.Update(round_, len(self.x), payload.current_values(trainer))
        up = payload.write_update(update, self.specs)
        return FitRes(Status(Code.OK, "ok"), to_parameters(up), len(self.x), {"bytes_down": len(blob), "bytes_up": len(up)})


class FirmwareDeviceClient(Client):
    """A Flower client that is a gateway to a device running the firmware API: each round it hands the
    global values, the device's samples (int8) and the round's settings to a device program
    (examples/cpp/fleet_device.cc, built for the same training model) and returns what it uploads."""

    def __init__(self, program: str | os.PathLike, base: Trainer, x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
        self.program, self.epochs, self.seed = str(program), epochs, seed
        self.specs = payload.specs(base)
        int8 = np.asarray(x)
        if int8.dtype.kind == "f":
            int8 = base.input.quantization.quantize(int8, base.input.dtype)
        if int8.dtype != np.int8 or int8.shape[1:] != tuple(base.input.shape[1:]):
            raise TinyTrainError(f"device samples must be float or int8 of shape {tuple(base.input.shape[1:])}, got {x.shape}")
        records = [row.tobytes() + struct.pack("<i", int(label)) for row, label in zip(int8, y, strict=True)]
        self.samples = struct.pack("<I", len(records)) + b"".join(records)
        self.layout = payload.layout_text(self.specs)
        self.num_samples = len(records)

    def fit(self, ins: FitIns) -> FitRes:
        blob = from_parameters(ins.parameters)
        round_ = int(ins.config["round"])
        with tempfile.TemporaryDirectory() as directory:
            files = {name: Path(directory) / name for name in ("layout.txt", "global.bin", "samples.bin", "upload.bin")}
            files["layout.txt"].write_text(self.layout)
            files["global.bin"].write_bytes(blob)
            files["samples.bin"].write_bytes(self.samples)
            arguments = [files["layout.txt"], files["global.bin"], files["samples.bin"], self.epochs, self.seed + round_]
            run = subprocess.run(
                [self.program, *map(str, arguments), str(files["upload.bin"])], capture_output=True, text=True, timeout=600
            )
            if run.returncode != 0:
                raise TinyTrainError(f"device program failed ({run.returncode}): {run.stderr.strip()}")
            up = files["upload.bin"].read_bytes()
        return FitRes(Status(Code.OK, "ok"), to_parameters(up), self.num_samples, {"bytes_down": len(blob), "bytes_up": len(up)})


@dataclasses.dataclass
class RoundReport:
    round: int
    accuracy: float  # global values on the held-out data
    bytes_up_per_client: int
    bytes_down_per_client: int
    accepted: int
    rejected: int
    clipped: int
    saturated: int


@dataclasses.dataclass
class FleetReport:
    rounds: list[RoundReport]  # round 0: the initial global values
    payload_bytes: int  # the scheme's update size
    arena_bytes: int  # minimum TFLM arena of the training model (x86-64), what each device needs
    model: bytes  # the training model with the final global values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_fleet(
    training_model: bytes,
    shards: list[tuple[np.ndarray, np.ndarray]],
    test_x: np.ndarray,
    test_y: np.ndarray,
    rounds: int,
    local_epochs: int = 1,
    clip_norm: float | None = None,
    seed: int = 0,
    progress: Callable[[RoundReport], None] | None = None,
    client_factory: Callable[[Trainer, np.ndarray, np.ndarray, int, int], Client] = DeviceClient,
    external_clients: int = 0,
    address: str | None = None,
) -> FleetReport:
    """Federated training of `training_model` by one client thread per shard; per round, the held-out
    accuracy of the global values, bytes per client each way, and the aggregation's accept/clip/saturate
    counts. external_clients > 0 (with no shards): wait instead for that many client processes
    (`python -m tinytrain_tflm.fleet.client`) to connect to `address`."""
    num_clients = external_clients or len(shards)
    if rounds < 1 or num_clients < 1 or (external_clients and shards):
        raise TinyTrainError(
            f"a fleet needs at least one round and one client, from shards or external processes, not both; "
            f"got {rounds} rounds, {len(shards)} shards, {external_clients} external clients"
        )
    base = Trainer(training_model)
    specs = payload.specs(base)
    arena = minimum_arena_size(base.model)  # before any thread starts: it forks
    reports: list[RoundReport] = []

    def evaluate(server_round: int, values: list[np.ndarray]) -> tuple[float, dict]:
        accuracy = Trainer(payload.with_values(base, values)).accuracy(test_x, test_y)
        stats = strategy.history[-1] if server_round else {}
        reports.append(
            RoundReport(
                server_round,
                accuracy,
                int(stats.get("bytes_up_per_client", 0)),
                int(stats.get("bytes_down_per_client", 0)),
                int(stats.get("accepted", 0)),
                int(stats.get("rejected", 0)),
                int(stats.get("clipped", 0)),
                int(stats.get("saturated", 0)),
            )
        )
        if progress:
            progress(reports[-1])
        return 1.0 - accuracy, {"accuracy": accuracy}

    strategy = FleetAvg(specs, payload.current_values(base), num_clients, evaluate, clip_norm)
    address = address or f"127.0.0.1:{free_port()}"
    clients = [client_factory(base, x, y, local_epochs, seed + 1000 * k) for k, (x, y) in enumerate(shards)]
    threads = [
        threading.Thread(target=run_client, args=(address, client), daemon=True, name=f"fleet-client-{k}")
        for k, client in enumerate(clients)
    ]
    flwr_log = logging.getLogger("flwr")
    level = flwr_log.level
    flwr_log.setLevel(logging.ERROR)  # the deprecation notices of start_server and start_client
    try:
        for thread in threads:
            thread.start()
        start_server(server_address=address, config=ServerConfig(num_rounds=rounds), strategy=strategy)
    finally:
        flwr_log.setLevel(level)
    for thread in threads:
        thread.join(timeout=30)
    if len(reports) != rounds + 1:
        raise TinyTrainError(f"the federation ended after {len(reports) - 1} of {rounds} rounds")
    return FleetReport(reports, payload.payload_size(specs), arena, payload.with_values(base, strategy.values).bytes)


def _wait_until_listening(address: str, timeout: float = 300.0) -> None:
    """Returns once something accepts TCP connections at HOST:PORT. In a second federation in the same
    process, Flower 1.42's clients started before the server listened were refused once and then never
    connected (seen in tests/test_fleet.py): so they start only once the server listens."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.05)


def run_client(address: str, client: Client) -> None:
    _wait_until_listening(address)
    flwr.client.start_client(server_address=address, client=client, insecure=True, max_wait_time=300)

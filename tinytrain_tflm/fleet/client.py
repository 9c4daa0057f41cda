"""One device of a fleet as its own process: the gateway side of a device, which holds the device's
samples, trains its training model in TFLM and talks to the Flower server over gRPC.

    python -m tinytrain_tflm.fleet.client ADDRESS TRAIN.tflite SHARD.npz [--epochs 1] [--seed 0]

The server is `tinytrain_tflm.fleet.simulation.run_fleet(..., external_clients=N, address=ADDRESS)`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..errors import TinyTrainError
from ..runtime.trainer import Trainer
from . import simulation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinytrain_tflm.fleet.client", description=__doc__.splitlines()[0])
    parser.add_argument("address", help="the Flower server, HOST:PORT")
    parser.add_argument("model", help="training model from `tinytrain-tflm compile` (the server's)")
    parser.add_argument("data", help=".npz with this device's 'x' (samples) and 'y' (labels)")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the samples per round")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.getLogger("flwr").setLevel(logging.ERROR)  # start_client's deprecation notice
    try:
        trainer = Trainer(Path(args.model).read_bytes())
        with np.load(args.data) as data:
            x, y = data["x"], data["y"]
        if len(x) != len(y) or len(x) == 0:
            raise TinyTrainError(f"{args.data}: 'x' and 'y' must hold the same, non-zero number of samples")
        simulation.run_client(args.address, simulation.DeviceClient(trainer, x, y, args.epochs, args.seed))
    except (TinyTrainError, OSError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: fleet learning on Flower against each device alone and against centralised training.

Not a test: prints tables. The task is tinytrain_tflm.tools.tasks.digits_new_classes (a CNN pretrained
in float on digits 0-5, then trained on device, int8, on all ten). Its 898 training samples are split
among 10 devices by class skew (Dirichlet alpha 0.5: most devices see a few classes). Per round every
device trains one pass over its own shard; then:

- fleet: FleetAvg averages the devices' trained tensors over Flower (tinytrain_tflm.fleet);
- alone: each device keeps training on its own shard only (mean, min and max over the 10);
- centralised: one device trains one pass over the union per round (the same samples, all in one place).

Accuracy is on the 899 held-out samples of all ten digits.

    .venv/bin/python benchmarks/fleet.py [--rounds 20] [--clients 10] [--alpha 0.5] [--clip-norm X]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tinytrain_tflm as tt
from tinytrain_tflm.fleet import payload, simulation
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.tools import tasks

LAST_TWO = {"bias_last": 2, "weights": {"1": 1, "2": 1}}  # the demo's scheme: the last conv and the classifier
LR = 0.005
CHECKPOINTS = (1, 2, 5, 10, 15, 20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--clip-norm", type=float, help="FleetAvg's bound on update norms (default: each round's median)")
    args = parser.parse_args()
    task = tasks.digits_new_classes()
    int8_model = keras_to_int8(tasks.pretrained_cnn(task), task.pretrain_x[:200])
    training = tt.compile(int8_model, update=LAST_TWO, optimizer=tt.SGD(lr=LR), gradient="float32")
    shards = simulation.class_skew_shards(task.train_y, args.clients, args.alpha, seed=0)
    data = [(task.train_x[s], task.train_y[s]) for s in shards]
    specs = payload.specs(tt.Trainer(training))
    print(f"{args.clients} devices, class-skewed shards (alpha {args.alpha}): samples {[len(s) for s in shards]}")
    print(f"classes per device: {[len(np.unique(task.train_y[s])) for s in shards]}")
    print(
        f"scheme {LAST_TWO}: {sum(s.count for s in specs):,} trained values, update payload {payload.payload_size(specs):,} B, "
        f"training model {len(training.bytes):,} B"
    )

    start = time.perf_counter()
    fleet = simulation.run_fleet(training.bytes, data, task.test_x, task.test_y, args.rounds, clip_norm=args.clip_norm, seed=0)
    fleet_seconds = time.perf_counter() - start
    checkpoints = [r for r in CHECKPOINTS if r <= args.rounds]

    start = time.perf_counter()
    alone = {r: [] for r in checkpoints}
    for k, (x, y) in enumerate(data):
        trainer = tt.Trainer(training)
        for r in range(1, args.rounds + 1):
            simulation.local_training(trainer, x, y, 1, 1000 * k + r)
            if r in alone:
                alone[r].append(trainer.accuracy(task.test_x, task.test_y))
    alone_seconds = time.perf_counter() - start

    start = time.perf_counter()
    central, trainer = {}, tt.Trainer(training)
    for r in range(1, args.rounds + 1):
        simulation.local_training(trainer, task.train_x, task.train_y, 1, r)
        if r in checkpoints:
            central[r] = trainer.accuracy(task.test_x, task.test_y)
    central_seconds = time.perf_counter() - start

    print(f"\nheld-out accuracy ({len(task.test_x)} samples, ten digits); before training {fleet.rounds[0].accuracy:.1%}")
    header = f"{'round':>5} {'fleet':>7} {'alone: mean (min-max)':>24} {'centralised':>12}"
    print(f"{header} {'up/down B per device':>21} {'clipped':>8}")
    for report in fleet.rounds[1:]:
        r = report.round
        solo = f"{np.mean(alone[r]):.1%} ({min(alone[r]):.1%}-{max(alone[r]):.1%})" if r in alone else ""
        central_text = f"{central[r]:.1%}" if r in central else ""
        traffic = f"{report.bytes_up_per_client:,}/{report.bytes_down_per_client:,}"
        print(f"{r:5} {report.accuracy:7.1%} {solo:>24} {central_text:>12} {traffic:>21} {report.clipped:>8}")
    print(
        f"\ndevice arena {fleet.arena_bytes:,} B (x86-64, measured); per device and round {payload.payload_size(specs):,} B "
        f"each way, {args.rounds * 2 * payload.payload_size(specs):,} B over {args.rounds} rounds"
    )
    print(f"wall time: fleet {fleet_seconds:.0f} s, alone {alone_seconds:.0f} s, centralised {central_seconds:.0f} s")


if __name__ == "__main__":
    main()

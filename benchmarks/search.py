"""Benchmark: the sparse-update scheme search on MobileNetV2-w0.35 at 128x128 under 256 KB.

Not a test: prints figures. The transfer task is the digits "new classes" task
of the demo scaled to 128x128x3 (tinytrain_tflm.tools.tasks): MobileNetV2-w0.35 is
pretrained in float on digits 0-5, converted to int8, then trained on device
on all ten. The search runs through the CLI exactly as a user would run it
(`tinytrain-tflm search --budget 256KB --data ...`), on the training split only
(it holds out a fifth of it for its own validation). Then the scheme it found
and the last layers that fit the same budget each train one epoch on device
from the same start, in the same sample order, and are scored on the test
split, which neither the search nor training saw.

    .venv/bin/python benchmarks/search.py [--budget 256KB] [--steps 300] [--generations 6] [--flash-requantization]

The pretrained model is cached in build/benchmarks/ (about 2 minutes to make).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import tinytrain_tflm as tt  # noqa: E402
from tinytrain_tflm.frontend.convert import keras_to_int8  # noqa: E402
from tinytrain_tflm.options import MemoryOptions  # noqa: E402
from tinytrain_tflm.passes.optimizer import SGD  # noqa: E402
from tinytrain_tflm.tools import tasks  # noqa: E402
from tinytrain_tflm.tools.cli import parse_size  # noqa: E402
from tinytrain_tflm.tools.search import SEARCH_OPTIONS, SchemeSearch  # noqa: E402

CACHE = Path(__file__).resolve().parent.parent / "build" / "benchmarks"


def pretrained_model(task: tasks.TransferTask) -> bytes:
    path = CACHE / "mobilenet_v2_035_128_digits0-5.tflite"
    if not path.exists():
        print("pretraining MobileNetV2-w0.35 on digits 0-5 at 128x128 (float, Adam, 8 epochs)...", flush=True)
        model = tasks.pretrained_mobilenet_v2(task)
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_bytes(keras_to_int8(model, task.pretrain_x[:64]))
    return path.read_bytes()


def run_search(model: bytes, task: tasks.TransferTask, args: argparse.Namespace, workdir: Path) -> dict:
    (workdir / "model.tflite").write_bytes(model)
    np.savez(workdir / "train.npz", x=task.train_x, y=task.train_y)
    command = [
        str(Path(sys.executable).parent / "tinytrain-tflm"),
        "search",
        str(workdir / "model.tflite"),
        "--budget",
        args.budget,
        "--data",
        str(workdir / "train.npz"),
        "--tile",
        "auto",
        "--steps",
        str(args.steps),
        "--generations",
        str(args.generations),
        "--lr",
        str(args.lr),
        "-o",
        str(workdir / "scheme.json"),
        *(["--flash-requantization"] if args.flash_requantization else []),
    ]
    print("$ tinytrain-tflm " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return json.loads((workdir / "scheme.json").read_text())


def train_and_score(model: bytes, scheme: dict, task: tasks.TransferTask, args: argparse.Namespace) -> tuple[int, float, float]:
    """(measured arena, test accuracy after one epoch, seconds per step)."""
    optimizer = SGD(lr=args.lr)
    training = tt.compile(
        model, update=scheme, optimizer=optimizer, gradient="int8", tiles="auto", flash_requantization=args.flash_requantization
    )
    arena = tt.minimum_arena_size(training.bytes)
    trainer = tt.Trainer(training)
    start = time.perf_counter()
    for i in np.random.default_rng(1).permutation(len(task.train_x)):
        trainer.step(task.train_x[i], int(task.train_y[i]))
    seconds = (time.perf_counter() - start) / len(task.train_x)
    return arena, trainer.accuracy(task.test_x, task.test_y), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="256KB")
    parser.add_argument("--steps", type=int, default=300, help="on-device steps per contribution measurement")
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--flash-requantization", action="store_true", help="compile every scheme with it")
    args = parser.parse_args()

    task = tasks.resized(tasks.digits_new_classes(), 128)
    model = pretrained_model(task)
    before = tt.Trainer(tt.compile(model, update="last")).accuracy(task.test_x, task.test_y)
    print(f"int8 model pretrained on digits 0-5: {before:.1%} on the ten-class test split ({len(task.test_x)} samples)")

    with tempfile.TemporaryDirectory() as workdir:
        searched = run_search(model, task, args, Path(workdir))
    # The same rule the search uses for its own baseline: sizing needs no task.
    memory_options = MemoryOptions("auto", flash_requantization=args.flash_requantization)
    sizing = SchemeSearch(model, None, parse_size(args.budget), dataclasses.replace(SEARCH_OPTIONS, memory=memory_options))
    baseline = sizing.last_layers_baseline()

    print(f"\none epoch on device ({len(task.train_x)} steps, lr {args.lr}), int8 gradients, first stage tiled:")
    print(f"  {'scheme':70} {'arena x86':>10} {'test acc.':>9} {'s/step':>7}")
    for name, scheme in (("searched", searched), ("last layers that fit", baseline)):
        arena, accuracy, seconds = train_and_score(model, scheme, task, args)
        print(f"  {name + ' ' + json.dumps(scheme):70} {arena:>10,} {accuracy:>9.1%} {seconds:>7.3f}", flush=True)


if __name__ == "__main__":
    main()

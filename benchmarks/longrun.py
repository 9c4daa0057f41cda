"""Benchmark: long on-device training runs in the field, with and without the divergence guard.

Not a test: prints a table and saves a plot. Each run streams --steps samples through the host TFLM
runtime (bit-identical to the device) on tinytrain_tflm.tools.tasks.digits_new_classes: a small CNN
pretrained on digits 0-5 trains all its layers on the ten digits, with what a device meets:
- 20% of the training samples carry a wrong label, the same ones all run long;
- a burst of garbage in the middle (BURST steps): noise far outside the input range, which the
  quantizer saturates, with random labels, and a NaN sample every NAN_EVERY steps of it (the host API
  refuses those: counted, never trained on).
For several learning rates, float32 and int8 gradients, guard off and `rollback` (GuardOptions()
defaults), it reports held-out accuracy over time, the share of trained int8 weights at -127 or 127,
and the non-finite losses (an integer loss op over int8 logits: any would be a bug).

    .venv/bin/python benchmarks/longrun.py --plot build/longrun.png
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import time

import numpy as np

import tinytrain_tflm as tt
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.runtime.guard import DivergenceGuard, GuardOptions, saturated_share
from tinytrain_tflm.tools import tasks

WRONG_LABELS = 0.2
BURST = 500  # garbage steps, starting half-way
NAN_EVERY = 50  # within the burst
EVALUATE_EVERY = 1000  # steps between accuracy and saturation points (and one at the end of the burst)
TEST_SAMPLES = 200  # held-out samples per accuracy point (of 899)


@dataclasses.dataclass
class Run:
    lr: float
    gradient: str
    guard: bool
    steps: list[int] = dataclasses.field(default_factory=list)
    accuracy: list[float] = dataclasses.field(default_factory=list)
    saturated: list[float] = dataclasses.field(default_factory=list)
    non_finite: int = 0
    refused: int = 0
    rollbacks: int = 0
    stopped_at: int | None = None  # the guard's step where it stopped training (GuardOptions.halt_after)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"lr {self.lr:g}, {self.gradient}, guard {'rollback' if self.guard else 'off'}"


def stream(task: tasks.TransferTask, steps: int, seed: int = 0):
    """(step, sample, label) for `steps` steps: shuffled epochs with fixed wrong labels, the garbage burst
    half-way."""
    rng = np.random.default_rng(seed)
    labels = task.train_y.copy()
    wrong = rng.choice(len(labels), round(WRONG_LABELS * len(labels)), replace=False)
    labels[wrong] = (labels[wrong] + rng.integers(1, task.classes, len(wrong))) % task.classes
    order = np.concatenate([rng.permutation(len(labels)) for _ in range(steps // len(labels) + 1)])
    burst = range(steps // 2, steps // 2 + BURST)
    for step in range(steps):
        if step in burst:
            garbage = rng.normal(0, 50, task.train_x.shape[1:]).astype(np.float32)
            if (step - burst.start) % NAN_EVERY == 0:
                garbage[0, 0, 0] = np.nan
            yield step, garbage, int(rng.integers(task.classes))
        else:
            yield step, task.train_x[order[step]], int(labels[order[step]])


def long_run(model: bytes, task: tasks.TransferTask, run: Run, steps: int) -> Run:
    start = time.perf_counter()
    trainer = tt.Trainer(tt.compile(model, update="all", gradient=run.gradient, optimizer=tt.SGD(lr=run.lr)))
    guard = DivergenceGuard(trainer, GuardOptions(rollback=True), warn=lambda line: None) if run.guard else None
    test_x, test_y = task.test_x[:TEST_SAMPLES], task.test_y[:TEST_SAMPLES]

    def record(step: int) -> None:
        current = trainer if guard is None else guard.trainer
        run.steps.append(step)
        run.accuracy.append(current.accuracy(test_x, test_y))
        run.saturated.append(saturated_share(current))

    record(0)
    for step, x, label in stream(task, steps):
        try:
            loss = trainer.step(x, label) if guard is None else guard.step(x, label)
        except tt.TinyTrainError:  # the NaN samples: refused by the host API
            run.refused += 1
            continue
        run.non_finite += not math.isfinite(loss)
        if (step + 1) % EVALUATE_EVERY == 0 or step + 1 == steps // 2 + BURST:
            record(step + 1)
    if guard is not None:
        run.rollbacks = len(guard.events)
        run.stopped_at = guard.events[-1].step if guard.halted else None
    run.seconds = time.perf_counter() - start
    return run


def table(runs: list[Run], steps: int) -> str:
    half, after = steps // 2, steps // 2 + BURST
    at = lambda run, values, step: values[run.steps.index(min(run.steps, key=lambda s: abs(s - step)))]  # noqa: E731
    lines = [
        f"| lr | gradient | guard | accuracy: start | before burst ({half:,}) | after burst ({after:,}) | final ({steps:,}) "
        "| lowest | saturated weights: start / max / final | non-finite losses | NaN samples refused | rollbacks | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        accuracy = [f"{at(run, run.accuracy, s):.1%}" for s in (0, half, after, steps)]
        stopped = "" if run.stopped_at is None else f", stopped at {run.stopped_at:,}"
        saturated = f"{run.saturated[0]:.1%} / {max(run.saturated):.1%} / {run.saturated[-1]:.1%}"
        lines.append(
            f"| {run.lr:g} | {run.gradient} | {'rollback' if run.guard else 'off'} | {' | '.join(accuracy)} "
            f"| {min(run.accuracy):.1%} | {saturated} | {run.non_finite} | {run.refused} | {run.rollbacks}{stopped} "
            f"| {run.seconds:.0f} s |"
        )
    return "\n".join(lines)


def plot(runs: list[Run], steps: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for run in runs:
        style = "-" if run.guard else ":"
        top.plot(run.steps, run.accuracy, style, label=run.label)
        bottom.plot(run.steps, run.saturated, style, label=run.label)
    for axis in (top, bottom):
        axis.axvspan(steps // 2, steps // 2 + BURST, color="grey", alpha=0.2)
    top.set_ylabel(f"held-out accuracy ({TEST_SAMPLES} samples)")
    bottom.set_ylabel("trained int8 weights at -127 or 127")
    bottom.set_xlabel("step (grey: garbage burst)")
    top.legend(fontsize=7, ncol=2)
    top.set_title(f"digits, all layers, {WRONG_LABELS:.0%} wrong labels; dotted: no guard, solid: guard rollback")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--lr", type=float, nargs="+", default=[0.01, 0.1, 10.0])
    parser.add_argument("--gradient", nargs="+", default=["float32", "int8"])
    parser.add_argument("--plot", help="save the accuracy and saturation curves to this image")
    args = parser.parse_args()
    task = tasks.digits_new_classes()
    model = keras_to_int8(tasks.pretrained_cnn(task), task.pretrain_x[:200])
    print(
        f"{args.steps:,} steps per run, {len(task.train_x)} training samples, {WRONG_LABELS:.0%} wrong labels, "
        f"{BURST} garbage steps from step {args.steps // 2:,}",
        flush=True,
    )
    runs = []
    for lr, gradient, guard in itertools.product(args.lr, args.gradient, (False, True)):
        runs.append(long_run(model, task, Run(lr, gradient, guard), args.steps))
        print(table(runs[-1:], args.steps).splitlines()[-1], flush=True)
    print(table(runs, args.steps))
    if args.plot:
        plot(runs, args.steps, args.plot)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    main()

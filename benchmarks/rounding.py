"""Benchmark: how the int8 update's rounding and QAS change what on-device training learns.

Not a test: prints a table. The task is tinytrain_tflm.tools.tasks.digits_new_classes
(pretrained on digits 0-5, trained on device on all ten); each configuration
trains the last layer for the same samples in the same order and reports held-out
accuracy. A small learning rate makes most integer steps smaller than one quantum:
truncation toward zero (the paper's MCU code) then loses them, stochastic
rounding keeps their expectation.

    .venv/bin/python benchmarks/rounding.py
"""

from __future__ import annotations

import itertools
import time

import numpy as np

import tinytrain_tflm as tt
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.tools import tasks

EPOCHS = 2


def main() -> None:
    task = tasks.digits_new_classes()
    float_model = tasks.pretrained_cnn(task)
    int8_model = keras_to_int8(float_model, task.pretrain_x[:200])
    order = np.concatenate([np.random.default_rng(epoch).permutation(len(task.train_x)) for epoch in range(EPOCHS)])
    print(f"last-layer training on device, {EPOCHS} epochs, {len(task.train_x)} samples, held-out accuracy on {len(task.test_x)}")
    print(f"{'lr':>7} {'QAS':>5} {'rounding':>11} {'accuracy':>9} {'time':>7}")
    for lr in (0.02, 0.002):
        float_accuracy = tasks.float_finetune_accuracy(float_model, task, trainable_layers=1, lr=lr, order=order)
        for qas, rounding in itertools.product((True, False), ("truncate", "nearest", "stochastic")):
            start = time.perf_counter()
            trainer = tt.Trainer(
                tt.compile(int8_model, update="last", optimizer=tt.SGD(lr=lr, qas=qas, rounding=rounding), gradient="float32")
            )
            for i in order:
                trainer.step(task.train_x[i], int(task.train_y[i]))
            accuracy = trainer.accuracy(task.test_x, task.test_y)
            seconds = time.perf_counter() - start
            print(f"{lr:7.3f} {'on' if qas else 'off':>5} {rounding:>11} {accuracy:9.1%} {seconds:6.1f}s", flush=True)
        print(f"{lr:7.3f} {'float fine-tuning':>17} {float_accuracy:9.1%}")


if __name__ == "__main__":
    main()

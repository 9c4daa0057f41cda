"""tinytrain-tflm demo: train an int8 CNN on device, inside the TFLM runtime.

The task (tinytrain_tflm.tools.tasks): a CNN pretrained in TensorFlow on digits 0-5
must learn 6-9 from samples seen only on the device.

1. pretrain the float CNN on digits 0-5 and convert it to int8;
2. compile training models (forward, loss, backward, SGD in one .tflite);
3. train each on device in the TFLM x86 reference runtime, one sample per step;
4. report test accuracy before, after the last epoch and at the best epoch (picked on validation
   samples held out of the training samples, never on the test samples), against float fine-tuning
   in TensorFlow;
5. export the tuned inference model and check it in TFLM.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import tinytrain_tflm as tt
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.tools import tasks

OUT = Path("build/demo")
EPOCHS = 3
# Int8 weights keep the converter's scales, so their range is fixed: a modest rate keeps them off the limits.
LR = 0.005
LAST_TWO = {"bias_last": 2, "weights": {"1": 1, "2": 1}}
SPARSE = {"bias_last": 3, "weights": {"1": 0.5, "2": 1}}


def train_on_device(
    int8_model: bytes, task, order: np.ndarray, validation: np.ndarray, update, optimizer: tt.SGD
) -> tuple[tt.Trainer, float, list[tuple[float, float]]]:
    """The trainer after the last epoch, the test accuracy before training, and after each epoch the
    accuracy on the validation samples (training samples `order` never visits) and on the test samples."""
    trainer = tt.Trainer(tt.compile(int8_model, update=update, optimizer=optimizer))
    before = trainer.accuracy(task.test_x, task.test_y)
    per_epoch = len(order) // EPOCHS
    epochs = []
    for step, i in enumerate(order, 1):
        trainer.step(task.train_x[i], int(task.train_y[i]))
        if step % per_epoch == 0:
            epochs.append(
                (trainer.accuracy(task.train_x[validation], task.train_y[validation]), trainer.accuracy(task.test_x, task.test_y))
            )
            print(
                f"        epoch {len(epochs)}/{EPOCHS}: validation accuracy {epochs[-1][0]:.1%}, test {epochs[-1][1]:.1%}",
                flush=True,
            )
    return trainer, before, epochs


def main() -> int:
    print("tinytrain-tflm demo: on-device training of an int8 CNN in the TFLM runtime\n")
    task = tasks.digits_new_classes()
    print(f"[1/5] pretraining a float CNN on digits 0-5 ({len(task.pretrain_x)} samples) and converting it to int8")
    float_model = tasks.pretrained_cnn(task)
    int8_model = keras_to_int8(float_model, task.pretrain_x[:200])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "digits_int8.tflite").write_bytes(int8_model)
    print(f"      {len(int8_model):,} bytes -> {OUT / 'digits_int8.tflite'}")

    # A tenth of the training samples is kept apart to pick the best epoch; the test samples never pick anything.
    validation = np.random.default_rng(100).choice(len(task.train_x), len(task.train_x) // 10, replace=False)
    train = np.setdiff1d(np.arange(len(task.train_x)), validation)
    order = np.concatenate([train[np.random.default_rng(epoch).permutation(len(train))] for epoch in range(EPOCHS)])
    runs = [
        ("last two layers, int8 SGD + QAS", LAST_TWO, tt.SGD(lr=LR)),
        ("last two layers, naive int8 SGD (no QAS)", LAST_TWO, tt.SGD(lr=LR, qas=False)),
        ("sparse: all biases, layer 2, half of layer 1", SPARSE, tt.SGD(lr=LR)),
    ]
    results = []
    print(
        f"[2/5] + [3/5] compiling and training on device, {EPOCHS} epochs of {len(train)} samples, batch 1 "
        f"({len(validation)} more kept apart for validation)"
    )
    for name, update, optimizer in runs:
        print(f"      {name}", flush=True)
        start = time.perf_counter()
        trainer, before, epochs = train_on_device(int8_model, task, order, validation, update, optimizer)
        results.append((name, before, epochs, time.perf_counter() - start, trainer))

    print("[4/5] float fine-tuning of the same two layers in TensorFlow, same samples in the same order")
    float_after = tasks.float_finetune_accuracy(float_model, task, trainable_layers=2, lr=LR, order=order)
    print(f"\n      test accuracy on all ten digits ({len(task.test_x)} held-out samples)")
    print(f"      {'training':48} {'before':>7} {'final':>7} {'best epoch':>11} {'time':>7}")
    for name, before, epochs, seconds, _ in results:
        best = int(np.argmax([validation_accuracy for validation_accuracy, _ in epochs]))  # first of ties
        print(f"      {name:48} {before:7.1%} {epochs[-1][1]:7.1%} {epochs[best][1]:7.1%} ({best + 1}) {seconds:6.1f}s")
    print(f"      {'float fine-tuning, last two layers (TensorFlow)':48} {results[0][1]:7.1%} {float_after:7.1%}")
    print(f"      final: after epoch {EPOCHS}, the model exported below. best epoch: the epoch with the highest accuracy on")
    print(f"      the {len(validation)} validation samples, scored here on the test samples, which picked nothing")
    print("      (`tinytrain-tflm train --val V.npz --keep best` keeps that epoch's weights)")

    print("\n[5/5] exporting the tuned model (last two layers, QAS)")
    trainer = results[0][4]
    tuned = trainer.export()
    (OUT / "digits_tuned.tflite").write_bytes(tuned)
    graph = tt.read_graph(tuned)
    interpreter = tt.Interpreter(tuned, tt.minimum_arena_size(tuned))
    quant = graph.tensors[graph.inputs[0]].quantization
    predictions = [np.argmax(interpreter.run([quant.quantize(x[None], np.int8)])[0]) for x in task.test_x]
    exported = float(np.mean(np.array(predictions) == task.test_y))
    arena = tt.minimum_arena_size(trainer.model)
    print(f"      {OUT / 'digits_tuned.tflite'}: {len(tuned):,} bytes, stock TFLM ops only, test accuracy {exported:.1%}")
    print(f"      training model: {len(trainer.model):,} bytes, minimum TFLM arena {arena:,} bytes (x86-64, measured)")
    ok = results[0][2][-1][1] > results[0][1] + 0.2 and abs(exported - results[0][2][-1][1]) < 1e-9
    print("\ndone: on-device training learned the new classes" if ok else "\nunexpected result")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

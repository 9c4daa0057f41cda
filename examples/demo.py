"""tinytrain-tflm demo: adapt an int8 CNN to a new domain on device, inside the TFLM runtime.

The task (tinytrain_tflm.tools.tasks.mnist_to_digits, real data installed by `make setup`): a CNN
pretrained in TensorFlow on MNIST reduced to 8x8 must adapt to scikit-learn's 8x8 digits, written by
other people and digitized differently, from 10 labelled digits per class seen only on the device.

1. pretrain the float CNN on 20,000 MNIST digits at 8x8 and convert it to int8;
2. compile training models (forward, loss, backward, SGD in one .tflite);
3. train each on device in the TFLM x86 reference runtime, one sample per step, int8 gradients;
4. report held-out accuracy before, after the last epoch and at the best epoch (picked on the task's
   validation digits, never on the test digits), against float fine-tuning of the same parameters in
   TensorFlow with the same samples in the same order;
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
EPOCHS = 5
LR = 0.01
# A sparse scheme under benchmarks/transfer.py's 19,284-byte arena budget for this task, one its search
# picked in an earlier run: every bias, the classifier, conv 1 and half of conv 0's output channels.
# (Each seed's search picks its own from its validation split: README, "Real transfer tasks".)
SPARSE = {"bias_last": 4, "weights": {"0": 0.5, "1": 1, "3": 1}}


def train_on_device(int8_model: bytes, task, order: np.ndarray, update, optimizer: tt.SGD):
    """(trainer after the last epoch, test accuracy before training, after each epoch (validation, test)
    accuracy, arena in bytes). The validation digits are the task's own, apart from training and test."""
    data = task.data
    trainer = tt.Trainer(tt.compile(int8_model, update=update, optimizer=optimizer, gradient="int8"))
    before = trainer.accuracy(data.test_x, data.test_y)
    per_epoch = len(order) // EPOCHS
    epochs = []
    for step, i in enumerate(order, 1):
        trainer.step(data.train_x[i], int(data.train_y[i]))
        if step % per_epoch == 0:
            epochs.append((trainer.accuracy(task.val_x, task.val_y), trainer.accuracy(data.test_x, data.test_y)))
    print(f"        validation / test accuracy per epoch: {', '.join(f'{v:.1%}/{t:.1%}' for v, t in epochs)}", flush=True)
    return trainer, before, epochs, tt.minimum_arena_size(trainer.model)


def main() -> int:
    print("tinytrain-tflm demo: on-device domain adaptation of an int8 CNN in the TFLM runtime\n")
    task = tasks.mnist_to_digits()
    data = task.data
    print(f"[1/5] pretraining a float CNN on {len(data.pretrain_x):,} MNIST digits at 8x8 and converting it to int8")
    float_model, source_accuracy = tasks.pretrained_real_model(task)
    int8_model = keras_to_int8(float_model, data.pretrain_x[:200])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "digits_int8.tflite").write_bytes(int8_model)
    print(f"      held-out MNIST accuracy {source_accuracy:.1%}; {len(int8_model):,} bytes -> {OUT / 'digits_int8.tflite'}")

    order = np.concatenate([np.random.default_rng(epoch).permutation(len(data.train_x)) for epoch in range(EPOCHS)])
    runs = [
        ("classifier only, int8 SGD + QAS", "last", tt.SGD(lr=LR)),
        ("sparse, int8 SGD + QAS", SPARSE, tt.SGD(lr=LR)),
        ("sparse, naive int8 SGD (no QAS)", SPARSE, tt.SGD(lr=LR, qas=False)),
    ]
    print(f"[2/5] + [3/5] compiling and training on device: {EPOCHS} epochs of {len(data.train_x)} scikit-learn digits, batch 1")
    print(f"      sparse = {SPARSE}")
    results = []
    for name, update, optimizer in runs:
        print(f"      {name}", flush=True)
        start = time.perf_counter()
        trainer, before, epochs, arena = train_on_device(int8_model, task, order, update, optimizer)
        results.append((name, before, epochs, arena, time.perf_counter() - start, trainer))

    print("[4/5] float fine-tuning of the same parameters in TensorFlow, same samples in the same order")
    float_runs = [
        (name, tasks.float_finetune(float_model, update, data, LR, order))
        for name, update in (("classifier only", "last"), ("sparse", SPARSE))
    ]
    print(f"\n      test accuracy on {len(data.test_x)} held-out scikit-learn digits (none trained on)")
    print(f"      {'training':40} {'before':>7} {'final':>7} {'best epoch':>11} {'arena':>9} {'time':>7}")
    for name, before, epochs, arena, seconds, _ in results:
        best = int(np.argmax([validation for validation, _ in epochs]))  # first of ties
        print(
            f"      {name:40} {before:7.1%} {epochs[-1][1]:7.1%} {epochs[best][1]:7.1%} ({best + 1})"
            f" {arena:>7,} B {seconds:6.1f}s"
        )
    for name, accuracy in float_runs:
        print(f"      {'float fine-tuning, ' + name + ' (TF)':40} {results[0][1]:7.1%} {accuracy:7.1%}")
    print(f"      final: after epoch {EPOCHS}, the model exported below. best epoch: the epoch with the highest accuracy on")
    print(f"      the {len(task.val_y)} validation digits, scored here on the test digits, which picked nothing")
    print("      (`tinytrain-tflm train --val V.npz --keep best` keeps that epoch's weights). arena: minimum TFLM arena,")
    print("      x86-64, measured.")

    print("\n[5/5] exporting the tuned model (sparse, QAS)")
    trainer = results[1][5]
    tuned = trainer.export()
    (OUT / "digits_tuned.tflite").write_bytes(tuned)
    graph = tt.read_graph(tuned)
    interpreter = tt.Interpreter(tuned, tt.minimum_arena_size(tuned))
    quant = graph.tensors[graph.inputs[0]].quantization
    predictions = [np.argmax(interpreter.run([quant.quantize(x[None], np.int8)])[0]) for x in data.test_x]
    exported = float(np.mean(np.array(predictions) == data.test_y))
    print(f"      {OUT / 'digits_tuned.tflite'}: {len(tuned):,} bytes, stock TFLM ops only, test accuracy {exported:.1%}")
    before, sparse_final, classifier_final = results[1][1], results[1][2][-1][1], results[0][2][-1][1]
    ok = sparse_final > before + 0.2 and abs(exported - sparse_final) < 1e-9
    print(
        f"\nsparse update: {before:.1%} -> {sparse_final:.1%}, {100 * (sparse_final - classifier_final):+.1f} points over the"
        " classifier alone (one seed: benchmarks/transfer.py averages 3)"
    )
    print("done: on-device training adapted the model to the new digits" if ok else "unexpected result")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""tinytrain-tflm demo: the training loss and its gradient, computed inside TFLM.

1. trains a small CNN on scikit-learn's 8x8 digits in TensorFlow (float);
2. converts it to int8 with the TensorFlow converter, as a user's script would;
3. attaches tinytrain's loss op: int8 logits + label -> loss and d loss / d logits;
4. runs that training model in the TFLM x86 reference runtime over the held-out
   digits and checks loss and gradient against NumPy;
5. measures the model's minimum arena in TFLM.

Later stages (gradient kernels, optimizer, compiler) turn step 3 into full
on-device training; this demo grows with them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

import tinytrain_tflm as tt
from tinytrain_tflm.convert import keras_to_int8

OUT = Path("build/demo")


def step(number: int, text: str) -> None:
    print(f"[{number}/5] {text}", flush=True)


def load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # [n, 8, 8, 1] in [0, 1]
    return train_test_split(images, digits.target.astype(np.int32), test_size=0.2, random_state=0)


def train_float_cnn(x_train, y_train, x_test, y_test):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((8, 8, 1)),
            tf.keras.layers.Conv2D(8, 3, activation="relu"),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(10),
        ]
    )
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    return model, model.evaluate(x_test, y_test, verbose=0)[1]


def main() -> int:
    print("tinytrain-tflm demo: the training loss, computed on the TFLM runtime\n")
    x_train, x_test, y_train, y_test = load_digits()

    step(1, f"training a float CNN on {len(x_train)} 8x8 digits in TensorFlow")
    keras_model, float_accuracy = train_float_cnn(x_train, y_train, x_test, y_test)
    print(f"      float test accuracy: {float_accuracy:.1%}")

    step(2, "converting to int8 with the TensorFlow converter")
    int8_model = keras_to_int8(keras_model, x_train[:200])
    print(f"      {len(int8_model):,} bytes")

    step(3, "attaching the tinytrain loss op (softmax cross-entropy + gradient)")
    graph = tt.read_graph(int8_model)
    training_model = tt.emit_model(tt.attach_loss(graph))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "digits_int8.tflite").write_bytes(int8_model)
    (OUT / "digits_train.tflite").write_bytes(training_model)
    print(f"      {len(training_model):,} bytes -> {OUT / 'digits_train.tflite'}")

    step(4, f"running {len(x_test)} held-out digits through TFLM")
    input_quant = graph.tensors[graph.inputs[0]].quantization
    logits_quant = graph.tensors[graph.outputs[0]].quantization
    arena = tt.minimum_arena_size(training_model)
    interpreter = tt.Interpreter(training_model, arena)
    losses, correct, grad_error = [], 0, 0.0
    for image, label in zip(x_test, y_test, strict=True):
        x = input_quant.quantize(image[None], np.int8)
        loss, logits, grad = interpreter.run([x, np.array([label], np.int32)])
        # Independent reference: float64 softmax cross-entropy of the dequantized logits.
        z = logits_quant.dequantize(logits)[0]
        p = np.exp(z - z.max())
        p /= p.sum()
        reference_grad = p - np.eye(10)[label]
        losses.append((loss[0], -np.log(p[label])))
        grad_error = max(grad_error, float(np.abs(grad[0] - reference_grad).max()))
        correct += int(np.argmax(logits) == label)
    tflm_loss, numpy_loss = np.mean(losses, axis=0)
    print(f"      int8 accuracy in TFLM        {correct / len(x_test):.1%}")
    print(f"      mean cross-entropy, TFLM     {tflm_loss:.4f}")
    print(f"      mean cross-entropy, NumPy    {numpy_loss:.4f}")
    print(f"      max |gradient - NumPy|       {grad_error:.1e}")

    step(5, "arena")
    report = interpreter.arena_report()
    print(f"      minimum arena {arena:,} bytes, measured in TFLM by bisection")
    print(f"      ({report.head:,} planned tensors + {report.tail:,} persistent, x86-64 bookkeeping)")
    ok = abs(tflm_loss - numpy_loss) < 1e-4 and grad_error < 1e-5
    print("\nloss and gradient agree with NumPy" if ok else "\nMISMATCH against NumPy")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

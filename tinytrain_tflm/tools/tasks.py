"""An offline transfer-learning task for the demo, the tests and the benchmarks.

"New classes" on scikit-learn's 8x8 digits (shipped with the package, no
download): a small CNN is pretrained in TensorFlow on digits 0-5 only, then
fine-tuned on device on all ten. Before fine-tuning it cannot name 6-9; the
question is how much of that on-device training recovers, against float
fine-tuning of the same layers in TensorFlow with the same samples in the same order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import TinyTrainError
from ..frontend.convert import tensorflow


@dataclasses.dataclass(frozen=True)
class TransferTask:
    pretrain_x: np.ndarray  # samples the float model is pretrained on
    pretrain_y: np.ndarray
    train_x: np.ndarray  # samples trained on device
    train_y: np.ndarray
    test_x: np.ndarray  # held out from both
    test_y: np.ndarray
    classes: int


def digits_new_classes(known_classes: int = 6, seed: int = 0) -> TransferTask:
    """Half of the digits for training, half for testing; pretraining sees only labels < known_classes."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise TinyTrainError("the digits task needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    labels = digits.target.astype(np.int32)
    train_x, test_x, train_y, test_y = train_test_split(images, labels, test_size=0.5, random_state=seed, stratify=labels)
    known = train_y < known_classes
    return TransferTask(train_x[known], train_y[known], train_x, train_y, test_x, test_y, 10)


def resized(task: TransferTask, size: int, channels: int = 3) -> TransferTask:
    """The task's images scaled bilinearly to size x size, repeated over `channels` and mapped to
    [-1, 1]: the input convention of Keras' MobileNets, for a 128x128 model on the same digits."""
    tf = tensorflow()

    def scale(images: np.ndarray) -> np.ndarray:
        return (tf.image.resize(np.repeat(images, channels, axis=-1), (size, size)).numpy() * 2 - 1).astype(np.float32)

    return TransferTask(
        scale(task.pretrain_x), task.pretrain_y, scale(task.train_x), task.train_y, scale(task.test_x), task.test_y, task.classes
    )


def pretrained_mobilenet_v2(task: TransferTask, alpha: float = 0.35, epochs: int = 8, seed: int = 0):
    """Keras' MobileNetV2 (random initialization) trained with Adam on the pretraining split.

    Batch normalization's moving averages use momentum 0.9 instead of Keras' 0.999: with a few
    hundred steps the default leaves them near their initial values, and the converter folds those
    into the int8 model (test accuracy near chance although training accuracy is high)."""
    tf = tensorflow()

    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.applications.MobileNetV2(
        input_shape=task.train_x.shape[1:], alpha=alpha, weights=None, classes=task.classes, classifier_activation=None
    )
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(tf.keras.optimizers.Adam(1e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(task.pretrain_x, task.pretrain_y, epochs=epochs, batch_size=32, verbose=0)
    return model


def pretrained_cnn(task: TransferTask, epochs: int = 30, seed: int = 0):
    """A small float CNN (conv, max-pool, conv, max-pool, FC) trained with Adam on the pretraining split."""
    tf = tensorflow()

    tf.keras.utils.set_random_seed(seed)
    layers = tf.keras.layers
    model = tf.keras.Sequential(
        [
            tf.keras.Input(task.train_x.shape[1:]),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(task.classes),
        ]
    )
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(task.pretrain_x, task.pretrain_y, epochs=epochs, batch_size=32, verbose=0)
    return model


def float_finetune_accuracy(model, task: TransferTask, trainable_layers: int, lr: float, order: np.ndarray) -> float:
    """Test accuracy after float SGD (batch 1, no momentum) of the last `trainable_layers` weighted
    layers of a copy of `model`, visiting training samples in `order` (indices, epochs concatenated)."""
    tf = tensorflow()

    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    weighted = [layer for layer in clone.layers if layer.weights]
    for layer in weighted[: len(weighted) - trainable_layers]:
        layer.trainable = False
    optimizer = tf.keras.optimizers.SGD(lr)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, clone(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, clone.trainable_variables), clone.trainable_variables, strict=True))

    for i in order:
        step(task.train_x[i : i + 1], task.train_y[i : i + 1])
    predictions = np.argmax(clone.predict(task.test_x, verbose=0), axis=1)
    return float(np.mean(predictions == task.test_y))

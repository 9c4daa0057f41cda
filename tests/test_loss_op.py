"""TT_SOFTMAX_CROSS_ENTROPY in the TFLM runtime against a float64 NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import loss_model, loss_options, reference_loss

from tinytrain_tflm import Interpreter, TFLMError

ARENA = 16 * 1024

CASES = [  # batch, classes, scale, zero_point, label_smoothing
    (1, 10, 0.1, -3, 0.0),
    (4, 2, 0.05, 0, 0.0),
    (8, 37, 0.25, 12, 0.1),
    (3, 100, 0.02, -128, 0.2),
    (5, 12, 1.0, 0, 0.0),  # logit gaps up to 255: exp underflows to 0 for most classes
]


def _random_batch(rng, batch, classes):
    return rng.integers(-128, 128, (batch, classes), dtype=np.int8), rng.integers(0, classes, batch, dtype=np.int32)


@pytest.mark.parametrize("batch,classes,scale,zero_point,smoothing", CASES)
def test_float_gradient_matches_numpy(rng, batch, classes, scale, zero_point, smoothing):
    interpreter = Interpreter(loss_model(batch, classes, scale, zero_point, label_smoothing=smoothing), ARENA)
    for _ in range(3):  # the same interpreter, fresh data each time: no state leaks between invokes
        q, labels = _random_batch(rng, batch, classes)
        loss, grad = interpreter.run([q, labels])
        want_loss, want_grad = reference_loss(q, labels, scale, zero_point, smoothing)
        assert loss.shape == (1,) and grad.dtype == np.float32
        np.testing.assert_allclose(loss[0], want_loss, rtol=2e-5)
        np.testing.assert_allclose(grad, want_grad, atol=2e-6)


@pytest.mark.parametrize("batch,classes,scale,zero_point,smoothing", CASES)
def test_int8_gradient_is_the_float_gradient_rounded(rng, batch, classes, scale, zero_point, smoothing):
    interpreter = Interpreter(loss_model(batch, classes, scale, zero_point, gradient="int8", label_smoothing=smoothing), ARENA)
    q, labels = _random_batch(rng, batch, classes)
    loss, grad_q, grad_scale = interpreter.run([q, labels])
    want_loss, want_grad = reference_loss(q, labels, scale, zero_point, smoothing)
    np.testing.assert_allclose(loss[0], want_loss, rtol=2e-5)
    # The scale puts the largest |gradient| at 127 ...
    np.testing.assert_allclose(grad_scale[0], np.abs(want_grad).max() / 127, rtol=1e-5)
    assert np.abs(grad_q).max() == 127 and grad_q.min() >= -127
    # ... and every value is the nearest level.
    assert np.abs(grad_q * grad_scale[0] - want_grad).max() <= 0.5 * grad_scale[0] * (1 + 1e-4)


def test_label_out_of_range_is_reported_and_the_interpreter_recovers(rng):
    interpreter = Interpreter(loss_model(3, 10), ARENA)
    q, _ = _random_batch(rng, 3, 10)
    for labels, message in (
        ([0, 10, 1], r"label 10 \(sample 1\) is out of range \[0, 10\)"),
        ([-1, 0, 0], "label -1 .sample 0."),
    ):
        with pytest.raises(TFLMError, match=message):
            interpreter.run([q, np.array(labels, np.int32)])
    loss, _ = interpreter.run([q, np.array([1, 2, 3], np.int32)])
    assert np.isfinite(loss[0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(logits_dtype=np.float32), "logits must be int8, got float32"),
        (dict(labels_dtype=np.int8), "labels must be int32, got int8"),
        (dict(gradient="int32"), "grad_logits must be float32 or int8, got int32"),
        (dict(gradient="int8", grad_scale_output=False), "int8 grad_logits needs a third output"),
        (dict(gradient="float32", grad_scale_output=True), "float32 grad_logits takes no grad_scale output"),
        (dict(options=loss_options(num_classes=5)), "options say 5 classes but logits have 10"),
        (dict(label_smoothing=1.0), r"label_smoothing must be in \[0, 1\)"),
        (dict(scale=0.0), "positive scale"),
    ],
)
def test_prepare_rejects_bad_graphs(kwargs, message):
    with pytest.raises(TFLMError, match=f"TT_SOFTMAX_CROSS_ENTROPY: .*{message}"):
        Interpreter(loss_model(2, 10, **kwargs), ARENA, check_model=False)


def _corrupt(blob: bytes, offset: int) -> bytes:
    return blob[:offset] + bytes([blob[offset] ^ 0x41]) + blob[offset + 1 :]


GOOD = loss_options(10)


@pytest.mark.parametrize(
    "options,message",
    [
        (None, "truncated"),
        (GOOD[:10], "truncated"),
        (GOOD[:-1], "truncated"),
        (GOOD + b"\0\0\0\0", "wrong payload length"),
        (_corrupt(GOOD, 0), "no tinytrain magic"),
        (_corrupt(GOOD, 4), "another schema version"),
        (_corrupt(GOOD, 6), "belongs to another op"),
        (_corrupt(GOOD, 17), r"corrupt \(CRC-32 mismatch\)"),
        (_corrupt(GOOD, 12), r"corrupt \(CRC-32 mismatch\)"),
    ],
)
def test_corrupt_options_fail_in_prepare_with_a_message(options, message):
    with pytest.raises(TFLMError, match=f"TT_SOFTMAX_CROSS_ENTROPY: custom options: .*{message}"):
        Interpreter(loss_model(2, 10, options=options), ARENA, check_model=False)

"""The schema: generated files up to date; the Python blob codec checks what the C reader checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tinytrain_tflm import TinyTrainError
from tinytrain_tflm.backend import schema, schema_generated

ROOT = Path(__file__).resolve().parent.parent


def test_generated_files_match_the_schema():
    result = subprocess.run([sys.executable, str(ROOT / "schema" / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_installed_schema_is_the_checked_in_one():
    assert (ROOT / "tinytrain_tflm" / "backend" / "schema_generated.py").read_text() == Path(
        schema_generated.__file__
    ).read_text()


def test_round_trip():
    blob = schema.encode_blob(
        "TRAINING_METADATA",
        input_tensor=0,
        label_tensor=7,
        control_tensor=9,
        loss_tensor=8,
        logits_tensor=5,
        num_classes=10,
        softmax_tensor=-1,
        softmax_beta=1.0,
        loss=schema_generated.LOSS_MEAN_SQUARED_ERROR,
        sigmoid_tensor=-1,
    )
    assert len(blob) == 16 + 10 * 4
    decoded = schema.decode_blob("TRAINING_METADATA", blob)
    assert decoded["label_tensor"] == 7 and decoded["loss"] == schema_generated.LOSS_MEAN_SQUARED_ERROR


@pytest.mark.parametrize(
    "values,message",
    [
        (dict(num_classes=3), r"takes fields \['num_classes', 'label_smoothing'\]"),
        (dict(num_classes=2.5, label_smoothing=0.0), "must be an int32"),
        (dict(num_classes=2**31, label_smoothing=0.0), "must be an int32"),
        (dict(num_classes=3, label_smoothing=float("nan")), "finite float"),
    ],
)
def test_encode_rejects_bad_values(values, message):
    with pytest.raises(TinyTrainError, match=message):
        schema.encode_blob("SOFTMAX_CROSS_ENTROPY", **values)


def test_decode_rejects_what_the_kernels_reject():
    blob = schema.encode_blob("SOFTMAX_CROSS_ENTROPY", num_classes=3, label_smoothing=0.1)
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    for bad, message in [
        (blob[:8], "truncated"),
        (b"XXXX" + blob[4:], "no tinytrain magic"),
        (blob[:4] + b"\x09\x00" + blob[6:], "schema version 9"),
        (flipped, "CRC-32"),
        (blob + b"\0", "payload of 9 bytes"),
    ]:
        with pytest.raises(TinyTrainError, match=message):
            schema.decode_blob("SOFTMAX_CROSS_ENTROPY", bad)
    with pytest.raises(TinyTrainError, match="is not TRAINING_METADATA"):
        schema.decode_blob("TRAINING_METADATA", blob)

"""The tinytrain-tflm command line: outputs, one-line errors, input files left alone."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import loss_model

import tinytrain_tflm as tt
from tinytrain_tflm.frontend import ir


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "tinytrain_tflm.cli", *args], capture_output=True, text=True, timeout=300)


def _classifier(tmp_path, inputs: int = 4, classes: int = 3):
    """A one-op int8 classifier: logits = FULLY_CONNECTED(x), weights -6..6 in turn."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

    graph = ir.Graph()
    q = lambda s: ir.Quantization(np.array([s], np.float32), np.array([0], np.int64))  # noqa: E731
    weights = (np.arange(classes * inputs) % 13 - 6).astype(np.int8).reshape(classes, inputs)
    x = graph.add_tensor(ir.Tensor("x", (1, inputs), np.dtype(np.int8), q(0.05)))
    w = graph.add_tensor(ir.Tensor("w", (classes, inputs), np.dtype(np.int8), q(0.02), weights))
    y = graph.add_tensor(ir.Tensor("y", (1, classes), np.dtype(np.int8), q(0.1)))
    graph.ops.append(ir.Op("FULLY_CONNECTED", [x, w, -1], [y], builtin_options=tfl.FullyConnectedOptionsT()))
    graph.inputs, graph.outputs = [x], [y]
    path = tmp_path / f"classifier_{inputs}x{classes}.tflite"
    path.write_bytes(tt.emit_model(graph))
    return path


def test_attach_loss_writes_a_runnable_training_model(tmp_path):
    source = _classifier(tmp_path)
    out = tmp_path / "train.tflite"
    result = _cli("attach-loss", str(source), "-o", str(out), "--gradient", "int8")
    assert result.returncode == 0, result.stderr
    outputs = tt.Interpreter(out.read_bytes(), 8192).run([np.ones((1, 4), np.int8), np.array([2], np.int32)])
    assert len(outputs) == 4 and outputs[2].dtype == np.int8  # loss, logits, grad, grad_scale


def test_refuses_to_overwrite_its_input(tmp_path):
    source = _classifier(tmp_path)
    before = source.read_bytes()
    result = _cli("attach-loss", str(source), "-o", str(source))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tinytrain-tflm: error: refusing to overwrite the input file {source}; choose another -o"
    ]
    assert source.read_bytes() == before


def test_errors_are_one_line(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    for args, message in [
        (("arena", str(tmp_path / "missing.tflite")), "cannot read"),
        (("arena", str(junk)), "not a TFLite model"),
        (("attach-loss", str(junk), "-o", str(tmp_path / "o.tflite")), "not a TFLite model"),
    ]:
        result = _cli(*args)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr


def test_arena_and_doctor(tmp_path):
    model = tmp_path / "loss.tflite"
    model.write_bytes(loss_model(2, 10))
    result = _cli("arena", str(model))
    assert result.returncode == 0, result.stderr
    reported = int(result.stdout.split("minimum arena: ")[1].split()[0])
    assert reported == tt.minimum_arena_size(model.read_bytes())
    doctor = _cli("doctor")
    assert doctor.returncode == 0 and "0.dev20261002031052" in doctor.stdout

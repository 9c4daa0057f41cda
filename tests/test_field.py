"""Training in the field (issue 16): state across a save and reload, the divergence guard, bad samples."""

from __future__ import annotations

import numpy as np
import pytest
from models import int8_model
from test_cli import _classifier, _cli

import tinytrain_tflm as tt
from tinytrain_tflm.runtime.guard import DivergenceGuard, GuardOptions, saturated_share


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


@pytest.fixture(scope="module")
def linear_task(tmp_path_factory):
    """The one-op classifier of test_cli and 150 samples labelled by a linear rule it can learn."""
    tmp = tmp_path_factory.mktemp("linear")
    source = _classifier(tmp)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (150, 4)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(4, 3)), axis=1).astype(np.int32)
    np.savez(tmp / "data.npz", x=x, y=y)
    return tmp, source.read_bytes(), x, y


def _guarded(source: bytes, lr: float, options: GuardOptions, x, y, epochs: int = 2):
    warnings = []
    guard = DivergenceGuard(tt.Trainer(tt.compile(source, update="all", optimizer=tt.SGD(lr=lr))), options, warnings.append)
    for _ in range(epochs):
        for sample, label in zip(x, y, strict=True):
            guard.step(sample, label)
    return guard, warnings


def test_the_guard_stays_quiet_on_healthy_training_and_warns_once_on_an_absurd_learning_rate(linear_task):
    _, source, x, y = linear_task
    calm, warnings = _guarded(source, 0.05, GuardOptions(), x, y)
    assert not calm.events and not warnings and calm.trainer.accuracy(x, y) > 0.8
    wild, warnings = _guarded(source, 50.0, GuardOptions(), x, y)
    assert len(wild.events) > 1 and len(warnings) == 1, warnings
    assert warnings[0].startswith(f"warning: step {wild.events[0].step}: training may be diverging: ")
    assert "\n" not in warnings[0] and "the mean loss over the last 50 steps is" in warnings[0]
    assert saturated_share(wild.trainer) > 0.5  # warned only: the weights stay ruined
    # A loss bound the calm run exceeds trips on the loss, after one full window.
    bounded, warnings = _guarded(source, 0.05, GuardOptions(window=10, loss_bound=0.01), x, y, epochs=1)
    assert bounded.events[0].step == 10 and "mean loss over the last 10 steps" in warnings[0]


def test_the_guard_rolls_back_to_the_last_healthy_state(linear_task):
    _, source, x, y = linear_task
    options = GuardOptions(window=10, snapshot_every=20, rollback=True)
    guard, warnings = _guarded(source, 50.0, options, x, y)
    assert len(warnings) == 2 and "rolled back to the state of step" in warnings[0], warnings
    assert all(event.rolled_back_to is not None and event.rolled_back_to % 20 == 0 for event in guard.events)
    # It diverges from every state it restores: after halt_after rollbacks in a row it stops and keeps it.
    last = guard.events[-1]
    assert guard.halted and last.halted and [e.rolled_back_to for e in guard.events[-3:]] == [last.rolled_back_to] * 3
    assert warnings[1] == (
        f"warning: step {last.step}: training stopped: it diverged 3 times in a row from the state of step "
        f"{last.rolled_back_to}, which it keeps; a lower --lr (compile) helps"
    )
    kept = guard.trainer.weights()
    guard.step(x[0], y[0])
    assert all(np.array_equal(guard.trainer.weights()[k], v) for k, v in kept.items())
    assert saturated_share(guard.trainer) <= guard.start_share + options.saturation_rise
    # The state restored is exactly the one the same steps reach unguarded.
    first = guard.events[0]
    replay = tt.Trainer(tt.compile(source, update="all", optimizer=tt.SGD(lr=50.0)))
    for sample, label in list(zip(x, y, strict=True))[: first.rolled_back_to]:
        replay.step(sample, label)
    restored, _ = _guarded(source, 50.0, options, x[: first.step], y[: first.step], epochs=1)
    for key, value in replay.weights().items():
        np.testing.assert_array_equal(restored.trainer.weights()[key], value)


def test_train_guard_options(linear_task):
    tmp, source, _, _ = linear_task
    wild = tmp / "wild.tflite"
    wild.write_bytes(tt.compile(source, update="all", optimizer=tt.SGD(lr=50.0)).bytes)
    data = ("--data", str(tmp / "data.npz"), "--epochs", "4")
    result = _cli("train", str(wild), *data, "--guard", "rollback", "-o", str(tmp / "rolled.tflite"))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 2 and "rolled back to the state of step" in warnings[0] and "training stopped" in warnings[1]
    assert "guard: rolled back 3 times" in result.stderr and "training stopped at step" in result.stderr
    assert saturated_share(tt.Trainer(tmp / "rolled.tflite")) < 0.05
    quiet = _cli("train", str(wild), *data, "--guard", "off", "-o", str(tmp / "off.tflite"))
    assert quiet.returncode == 0 and "warning" not in quiet.stderr and saturated_share(tt.Trainer(tmp / "off.tflite")) > 0.5
    bad = _cli("train", str(wild), *data, "--guard-loss", "nan", "-o", str(tmp / "never.tflite"))
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip() == "tinytrain-tflm: error: --guard-loss must be a finite number > 0, got nan"


def test_bad_samples_on_the_host_are_one_line_errors(linear_task):
    _, source, x, _ = linear_task
    trainer = tt.Trainer(tt.compile(source, update="all"))
    bad = x[0].copy()
    bad[1] = np.inf
    with pytest.raises(tt.TinyTrainError, match="^sample holds NaN or infinite values$"):
        trainer.step(bad, 0)
    with pytest.raises(tt.TinyTrainError, match=r"^label 3 is out of range \[0, 3\)$"):
        trainer.step(x[0], 3)
    with pytest.raises(tt.TinyTrainError, match=r"^label -1 is out of range"):
        trainer.step(x[0], -1)


@pytest.mark.parametrize(
    "name, grid, scheme",
    [("small_cnn", (2, 2), {"weights": {"1": 1, "2": 1}}), ("mobilenet_v2_blocks", (3, 2), {"weights": {"7": 1, "4": 0.5}})],
)
def test_the_export_of_a_tiled_model_has_the_source_layers(name, grid, scheme):
    model = int8_model(name)
    source = tt.read_graph(model)
    trainer = tt.Trainer(tt.compile(model, update=scheme, tiles=grid))
    samples = [x for x, _ in _samples(trainer, 3)]
    for i, x in enumerate(samples):
        trainer.step(x, i % 2)
    exported = trainer.export()
    graph = tt.read_graph(exported)

    def layers(g):
        return [(op.kind, g.tensors[op.outputs[0]].shape, getattr(op.builtin_options, "padding", None)) for op in g.ops]

    assert layers(graph) == layers(source)
    interpreter = tt.Interpreter(exported, 128 * 1024)
    output = graph.tensors[graph.outputs[0]].quantization
    for x in samples:
        quantized = trainer.input.quantization.quantize(x, np.int8)
        np.testing.assert_array_equal(output.dequantize(interpreter.run([quantized])[0]), trainer.predict(x))
    # The same scheme trains the same layers of the export, tiled or not, from the trained weights.
    for tiles in (grid, None):
        again = tt.Trainer(tt.compile(exported, update=scheme, tiles=tiles))
        shapes = lambda t: [(p.name, p.trained_shape) for p in t.parameters]  # noqa: E731
        assert shapes(again) == shapes(trainer)
        assert all(np.array_equal(again.weights()[k], v) for k, v in trainer.weights().items())


def test_a_garbage_burst_rolls_back_and_passes_untrained(linear_task):
    _, source, x, y = linear_task
    compiled = tt.compile(source, update="all", optimizer=tt.SGD(lr=0.05))
    guard = DivergenceGuard(tt.Trainer(compiled), GuardOptions(window=10, snapshot_every=20, rollback=True), lambda line: None)
    for sample, label in zip(x[:100], y[:100], strict=True):
        guard.step(sample, label)
    assert not guard.events
    rng = np.random.default_rng(1)
    for _ in range(40):  # noise far outside the input range, random labels
        guard.step(rng.normal(0, 50, 4).astype(np.float32), int(rng.integers(3)))
    assert guard.events and guard.paused and not guard.halted
    # Once a window scores a healthy loss again, training resumes from the state restored: nothing of the burst
    # is learnt (the window rolls: the pause ends within the clean samples, which train from then on).
    trained = []
    for sample, label in zip(x[100:120], y[100:120], strict=True):
        if not guard.paused:
            trained.append((sample, label))
        guard.step(sample, label)
    assert not guard.paused and 0 < len(trained) < 20
    assert all(event.rolled_back_to == guard.events[0].rolled_back_to for event in guard.events)
    replay = tt.Trainer(compiled)
    for sample, label in [*zip(x[: guard.events[0].rolled_back_to], y, strict=False), *trained]:
        replay.step(sample, label)
    for key, value in replay.weights().items():
        np.testing.assert_array_equal(guard.trainer.weights()[key], value)

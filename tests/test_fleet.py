"""Fleet learning on Flower: FleetAvg's aggregation against a NumPy reference (weighted FedAvg in real
units, TT_SGD's nearest rounding, norm clipping), its refusal of bad payloads, and a federation of 4
TFLM Trainers over 3 rounds on non-IID digits whose global accuracy rises, each client sending and
receiving exactly the scheme's payload size per round."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinytrain_tflm as tt
from tinytrain_tflm.errors import TinyTrainError

pytest.importorskip("flwr")
from flwr.common import Code, FitRes, Parameters, Status  # noqa: E402

from tinytrain_tflm.fleet import payload, simulation, strategy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECS = [
    # int8 weights [3, 4] quantized along axis 0, of which channels 0 and 1 train
    payload.TensorSpec(5, "w", (3, 4), np.dtype(np.int8), 0, 2, np.array([0.1, 0.02], np.float32)),
    # int32 bias, every channel trains
    payload.TensorSpec(6, "b", (3,), np.dtype(np.int32), 0, 3, np.array([1e-3, 2e-3, 4e-3], np.float32)),
]


def reference_scales() -> np.ndarray:
    """Each carried value's scale, written out by hand for SPECS."""
    return np.array([0.1] * 4 + [0.02] * 4 + [1e-3, 2e-3, 4e-3], np.float64)


def update(rng, round_=1, samples=10, spread=20) -> payload.Update:
    return payload.Update(
        round_, samples, [rng.integers(-spread, spread, 8).astype(np.int8), rng.integers(-5000, 5000, 3).astype(np.int32)]
    )


def reference_aggregate(global_values, updates, clip_norm):
    """FedAvg of dequantized changes clipped to clip_norm (median of norms when None), rounded half away from zero."""
    s = reference_scales().astype(np.float32).astype(np.float64)
    g = np.concatenate(global_values).astype(np.float64) * s
    changes = [np.concatenate(u.values).astype(np.float64) * s - g for u in updates]
    norms = [np.sqrt(np.sum(c**2)) for c in changes]
    bound = np.median(norms) if clip_norm is None else clip_norm
    clipped = [c * min(1.0, bound / n) for c, n in zip(changes, norms, strict=True)]
    weights = [u.num_samples for u in updates]
    q = (g + sum(w * c for w, c in zip(weights, clipped, strict=True)) / sum(weights)) / s
    q = np.where(q >= 0, np.floor(q + 0.5), np.ceil(q - 0.5))
    return [np.clip(q[:8], -127, 127).astype(np.int8), q[8:].astype(np.int32)]


@pytest.mark.parametrize("clip_norm", [None, 0.05, 1e9])
def test_aggregation_matches_numpy(rng, clip_norm):
    global_values = update(rng, samples=0).values
    updates = [update(rng, samples=int(rng.integers(1, 100))) for _ in range(5)]
    values, stats = strategy.aggregate(global_values, updates, SPECS, clip_norm)
    for got, want in zip(values, reference_aggregate(global_values, updates, clip_norm), strict=True):
        np.testing.assert_array_equal(got, want)
    assert stats["saturated"] == 0


def test_rounding_is_tt_sgd_nearest_ties_away_from_zero():
    zero = [np.zeros(8, np.int8), np.zeros(3, np.int32)]
    two = payload.Update(1, 1, [np.full(8, 2, np.int8), np.full(3, -2, np.int32)])
    three = payload.Update(1, 1, [np.full(8, 3, np.int8), np.full(3, -3, np.int32)])
    values, _ = strategy.aggregate(zero, [two, three], SPECS, clip_norm=1e9)
    assert values[0].tolist() == [3] * 8  # 2.5 -> 3 (NumPy's round gives 2)
    assert values[1].tolist() == [-3] * 3  # -2.5 -> -3
    at_limit = payload.Update(1, 1, [np.full(8, 127, np.int8), np.full(3, 2**31 - 1, np.int32)])
    values, stats = strategy.aggregate(zero, [at_limit, at_limit], SPECS, clip_norm=1e9)
    assert values[0].tolist() == [127] * 8 and values[1].tolist() == [2**31 - 1] * 3 and stats["saturated"] == 0


def test_norm_clipping_keeps_one_bad_client_from_dominating(rng):
    zero = [np.zeros(8, np.int8), np.zeros(3, np.int32)]
    honest = [update(rng, spread=3) for _ in range(4)]
    attacker = payload.Update(1, 10, [np.full(8, 127, np.int8), np.full(3, 10**6, np.int32)])
    s = reference_scales()

    def change_norm(values):
        return np.linalg.norm(np.concatenate(values).astype(np.float64) * s)

    unclipped, _ = strategy.aggregate(zero, [*honest, attacker], SPECS, clip_norm=1e9)
    clipped, stats = strategy.aggregate(zero, [*honest, attacker], SPECS, clip_norm=None)
    median = np.median([change_norm(u.values) for u in [*honest, attacker]])
    assert stats["clipped"] >= 1 and stats["clip_bound"] == pytest.approx(median)
    # A weighted mean of changes each at most `median` long is at most that long (plus rounding).
    assert change_norm(clipped) <= median + np.linalg.norm(s) / 2
    assert change_norm(unclipped) > 5 * change_norm(clipped)


def fit_res(blob: bytes, samples: int, code=Code.OK, tensor_type=strategy.TENSOR_TYPE) -> FitRes:
    return FitRes(Status(code, "ok" if code == Code.OK else "out of memory"), Parameters([blob], tensor_type), samples, {})


def test_strategy_rejects_bad_payloads_and_averages_the_rest(rng):
    initial = update(rng, samples=0).values
    fleet = strategy.FleetAvg(SPECS, initial, num_clients=7, max_samples=1000)
    good = update(rng, round_=2, samples=40)
    blob = payload.write_update(good, SPECS)
    corrupt = bytearray(blob)
    corrupt[40] ^= 0x10
    results = [
        fit_res(blob, 40),
        fit_res(bytes(corrupt), 40),  # CRC mismatch
        fit_res(payload.write_update(update(rng, round_=1), SPECS), 10),  # stale round
        fit_res(payload.write_update(update(rng, round_=2, samples=0), SPECS), 0),  # no samples
        fit_res(payload.write_update(update(rng, round_=2, samples=5000), SPECS), 5000),  # over max_samples
        fit_res(payload.write_update(update(rng, round_=2, samples=10), SPECS), 99),  # count disagrees
        fit_res(blob, 40, tensor_type="numpy.ndarray"),
        fit_res(blob, 40, code=Code.FIT_NOT_IMPLEMENTED),
    ]
    parameters, stats = fleet.aggregate_fit(2, [(None, r) for r in results], failures=[])
    assert (stats["accepted"], stats["rejected"]) == (1, 7)
    for reason in ["CRC-32", "round 1", "0 samples", "5000 samples", "reported 99", "tensor", "client failed"]:
        assert reason in stats["rejections"]
    # One accepted update: its change is the median, unclipped, so the global values become its values.
    new = payload.read_update(strategy.from_parameters(parameters), SPECS)
    for got, want in zip(new.values, good.values, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TinyTrainError, match="clip_norm must be positive"):
        strategy.FleetAvg(SPECS, initial, num_clients=1, clip_norm=0.0)


@pytest.fixture(scope="module")
def digits_model():
    from tinytrain_tflm.frontend.convert import keras_to_int8
    from tinytrain_tflm.tools import tasks

    task = tasks.digits_new_classes()
    model = keras_to_int8(tasks.pretrained_cnn(task, epochs=6), task.pretrain_x[:200])
    return task, tt.compile(model, update="last", optimizer=tt.SGD(lr=0.005)).bytes


def test_federation_of_four_trainers_raises_global_accuracy(digits_model):
    task, training_model = digits_model
    shards = simulation.class_skew_shards(task.train_y, 4, alpha=0.5, seed=0)
    assert max(len(np.unique(task.train_y[s])) for s in shards) <= 10
    # 450 of the 899 held-out samples keep the four evaluations short (each is a TFLM invoke per sample).
    test_x, test_y = task.test_x[:450], task.test_y[:450]
    report = simulation.run_fleet(training_model, [(task.train_x[s], task.train_y[s]) for s in shards], test_x, test_y, rounds=3)
    accuracies = [r.accuracy for r in report.rounds]
    assert [r.round for r in report.rounds] == [0, 1, 2, 3]
    assert accuracies[-1] > accuracies[0] + 0.05, accuracies
    specs = payload.specs(tt.Trainer(training_model))
    assert report.payload_bytes == payload.payload_size(specs)
    for r in report.rounds[1:]:
        assert (r.bytes_up_per_client, r.bytes_down_per_client) == (report.payload_bytes, report.payload_bytes)
        assert (r.accepted, r.rejected) == (4, 0)
    assert report.arena_bytes > 0


def test_cli_fleet_runs_a_round_and_refuses_bad_arguments(tmp_path, rng, capsys):
    from tinytrain_tflm.cli import main

    model = tt.compile((ROOT / "tests" / "data" / "small_cnn.tflite").read_bytes(), update="last")
    (tmp_path / "train.tflite").write_bytes(model.bytes)
    x = rng.uniform(0, 1, (24, 12, 12, 1)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(24) % 3)
    np.savez(tmp_path / "t.npz", x=x[:6], y=np.arange(6) % 3)
    common = [str(tmp_path / "train.tflite"), "--data", str(tmp_path / "d.npz"), "--test", str(tmp_path / "t.npz")]
    assert main(["fleet", *common, "--clients", "25"]) == 2
    assert "--clients" in capsys.readouterr().err
    out = tmp_path / "global.tflite"
    assert main(["fleet", *common, "--clients", "2", "--rounds", "1", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    size = payload.payload_size(payload.specs(tt.Trainer(model)))
    assert f"{size:,} / {size:,}" in printed and "payload:" in printed
    # The global model is a training model every client can load for a next round, with the fleet's values.
    fleet_trainer, start = tt.Trainer(out.read_bytes()), tt.Trainer(model)
    assert [(s.tensor, s.shape, s.count) for s in payload.specs(fleet_trainer)] == [
        (s.tensor, s.shape, s.count) for s in payload.specs(start)
    ]
    assert any((a != b).any() for a, b in zip(payload.current_values(fleet_trainer), payload.current_values(start), strict=True))


def test_client_processes_join_a_federation(tmp_path, rng):
    """Two devices as their own processes (python -m tinytrain_tflm.fleet.client): the payloads cross
    process boundaries over gRPC, and each device's upload is the scheme's size whatever its sample count."""
    import subprocess
    import sys

    model = tt.compile((ROOT / "tests" / "data" / "small_cnn.tflite").read_bytes(), update="last")
    (tmp_path / "train.tflite").write_bytes(model.bytes)
    x = rng.uniform(0, 1, (40, 12, 12, 1)).astype(np.float32)
    y = np.arange(40) % 3
    np.savez(tmp_path / "a.npz", x=x[:10], y=y[:10])
    np.savez(tmp_path / "b.npz", x=x[10:], y=y[10:])
    address = f"127.0.0.1:{simulation.free_port()}"
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "tinytrain_tflm.fleet.client",
                address,
                str(tmp_path / "train.tflite"),
                str(tmp_path / f),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in ("a.npz", "b.npz")
    ]
    try:
        report = simulation.run_fleet(model.bytes, [], x[:9], y[:9], rounds=2, external_clients=2, address=address)
    finally:
        outputs = [client.communicate(timeout=60) for client in clients]
    assert [client.returncode for client in clients] == [0, 0], outputs
    size = payload.payload_size(payload.specs(tt.Trainer(model)))
    for r in report.rounds[1:]:
        assert (r.accepted, r.bytes_up_per_client, r.bytes_down_per_client) == (2, size, size)

"""FleetAvg: a Flower Strategy that averages devices' int8/int32 trained tensors.

Each round the server sends the global values as a fleet update (payload.py) and every sampled device
answers with its own values after local training. Aggregation, in real units:

1. every payload is checked against the model's trained tensors (format, CRC, tensor list, the fixed
   scales, int8 range, round number, a sample count in [1, max_samples]); a bad one is rejected and
   counted, never averaged;
2. each device's change from the global values, dequantized, is clipped to an L2 norm of at most
   `clip_norm` (by default the median norm of the round's accepted changes, so no single device can
   pull the round further than a typical one);
3. the changes are averaged weighted by sample counts (FedAvg) and added to the global values;
4. the result is requantized to the fixed per-channel scales with TT_SGD's nearest rounding (ties away
   from zero) and saturated to the parameter range (int8 [-127, 127]); saturated values are counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # Flower's usage telemetry would try the network

from flwr.common import Code, EvaluateIns, EvaluateRes, FitIns, FitRes, Parameters, Scalar  # noqa: E402
from flwr.server.client_manager import ClientManager  # noqa: E402
from flwr.server.client_proxy import ClientProxy  # noqa: E402
from flwr.server.strategy import Strategy  # noqa: E402

from ..errors import TinyTrainError  # noqa: E402
from . import payload  # noqa: E402

TENSOR_TYPE = "tinytrain-fleet-update"


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Nearest integer, ties away from zero: TT_SGD's `nearest` (roundf), not NumPy's ties-to-even."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def to_parameters(blob: bytes) -> Parameters:
    return Parameters(tensors=[blob], tensor_type=TENSOR_TYPE)


def from_parameters(parameters: Parameters) -> bytes:
    if parameters.tensor_type != TENSOR_TYPE or len(parameters.tensors) != 1:
        count, kind = len(parameters.tensors), parameters.tensor_type
        raise TinyTrainError(f"expected one {TENSOR_TYPE} tensor, got {count} of type {kind!r}")
    return parameters.tensors[0]


def aggregate(
    global_values: list[np.ndarray],
    updates: list[payload.Update],
    specs: list[payload.TensorSpec],
    clip_norm: float | None,
) -> tuple[list[np.ndarray], dict[str, float]]:
    """New global values from accepted updates (steps 2-4 of the module docstring) and round statistics."""
    scales = [spec.element_scales() for spec in specs]
    base = np.concatenate([g.astype(np.float64) * s for g, s in zip(global_values, scales, strict=True)])
    changes = [np.concatenate([v.astype(np.float64) * s for v, s in zip(u.values, scales, strict=True)]) - base for u in updates]
    norms = np.array([np.linalg.norm(c) for c in changes])
    bound = float(np.median(norms)) if clip_norm is None else clip_norm
    factors = np.minimum(1.0, bound / np.maximum(norms, 1e-30))
    weights = np.array([u.num_samples for u in updates], np.float64)
    mean_change = sum(w * f * c for w, f, c in zip(weights, factors, changes, strict=True)) / weights.sum()
    real = base + mean_change
    result, saturated, offset = [], 0, 0
    for spec, s in zip(specs, scales, strict=True):
        q = round_half_away(real[offset : offset + spec.count] / s)
        low, high = spec.limits
        saturated += int(np.count_nonzero((q < low) | (q > high)))
        result.append(np.clip(q, low, high).astype(spec.dtype))
        offset += spec.count
    stats = {"clip_bound": bound, "clipped": int(np.count_nonzero(factors < 1.0)), "saturated": saturated}
    return result, stats


class FleetAvg(Strategy):
    """FedAvg over fleet update payloads (module docstring). Every available device trains every round.

    evaluate_fn(round, values) -> (loss, metrics) scores the global values after each round (0: the initial
    values) on the server's held-out data."""

    def __init__(
        self,
        specs: list[payload.TensorSpec],
        initial_values: list[np.ndarray],
        num_clients: int,
        evaluate_fn: Callable[[int, list[np.ndarray]], tuple[float, dict[str, Scalar]]] | None = None,
        clip_norm: float | None = None,
        max_samples: int = 1_000_000,
        fit_config: dict[str, Scalar] | None = None,
        connect_timeout: float = 120.0,
    ):
        super().__init__()
        if clip_norm is not None and not clip_norm > 0:
            raise TinyTrainError(f"clip_norm must be positive, got {clip_norm}")
        self.specs = specs
        self.values = [np.asarray(v, spec.dtype).ravel() for v, spec in zip(initial_values, specs, strict=True)]
        self.num_clients = num_clients
        self.evaluate_fn = evaluate_fn
        self.clip_norm = clip_norm
        self.max_samples = max_samples
        self.fit_config = dict(fit_config or {})
        self.connect_timeout = connect_timeout
        self.history: list[dict[str, Scalar]] = []  # per round: aggregation statistics

    def _global_blob(self, server_round: int) -> bytes:
        return payload.write_update(payload.Update(server_round, 0, self.values), self.specs)

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return to_parameters(self._global_blob(0))

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        # Flower's own wait is a day long: a client that died before connecting must end the run instead.
        if not client_manager.wait_for(self.num_clients, timeout=int(self.connect_timeout)):
            connected = client_manager.num_available()
            raise TinyTrainError(f"only {connected} of {self.num_clients} clients connected within {self.connect_timeout:.0f} s")
        clients = client_manager.sample(num_clients=self.num_clients, min_num_clients=self.num_clients)
        ins = FitIns(to_parameters(self._global_blob(server_round)), {**self.fit_config, "round": server_round})
        return [(client, ins) for client in clients]

    def check(self, server_round: int, result: FitRes) -> payload.Update:
        """The device's update, or a TinyTrainError naming why it is rejected."""
        if result.status.code != Code.OK:
            raise TinyTrainError(f"client failed: {result.status.message}")
        update = payload.read_update(from_parameters(result.parameters), self.specs)
        if update.round != server_round:
            raise TinyTrainError(f"update is for round {update.round}, this is round {server_round}")
        if not 1 <= update.num_samples <= self.max_samples:
            raise TinyTrainError(f"update claims {update.num_samples} samples, outside [1, {self.max_samples}]")
        if update.num_samples != result.num_examples:
            raise TinyTrainError(f"update claims {update.num_samples} samples, the client reported {result.num_examples}")
        return update

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        accepted, rejected, up = [], [], []
        for _, result in results:
            up.append(sum(len(t) for t in result.parameters.tensors))
            try:
                accepted.append(self.check(server_round, result))
            except TinyTrainError as error:
                rejected.append(str(error))
        stats: dict[str, Scalar] = {"accepted": len(accepted), "rejected": len(rejected) + len(failures)}
        if accepted:
            self.values, aggregation = aggregate(self.values, accepted, self.specs, self.clip_norm)
            stats.update(aggregation)
        stats["bytes_up_per_client"] = max(up, default=0)
        stats["bytes_down_per_client"] = len(self._global_blob(server_round))
        stats["rejections"] = "; ".join(rejected)
        self.history.append(stats)
        return to_parameters(self._global_blob(server_round)), stats

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return []  # the server scores the global values itself (evaluate)

    def aggregate_evaluate(
        self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]], failures: list
    ) -> tuple[float | None, dict[str, Scalar]]:
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        if self.evaluate_fn is None:
            return None
        return self.evaluate_fn(server_round, self.values)

"""The optimizer: what the compiler emits right after each parameter's gradient."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from ..backend import schema, schema_generated
from ..errors import TinyTrainError
from ..frontend import ir

ROUNDINGS = {
    "truncate": schema_generated.ROUND_TRUNCATE,
    "nearest": schema_generated.ROUND_NEAREST,
    "stochastic": schema_generated.ROUND_STOCHASTIC,
}

# Largest learning rate accepted: far above any useful one (with QAS a step moves a real weight by lr times
# its real gradient, as float SGD does), high enough to demonstrate divergence (`train` warns of it; its
# test uses 50), and it stops the absurd: lr 1e30 saturated the int32 biases in 5 steps, the forward
# accumulator wrapped and the model fell to chance.
MAX_LEARNING_RATE = 100.0


@dataclasses.dataclass(frozen=True)
class SGD:
    """SGD on int8 weights and int32 biases, updated in place on the device.

    qas: quantization-aware scaling (BRIEF section 1): the integer step is
    lr * g / s, so the real-valued step equals float SGD's; without it the
    step is lr * s * g, the naive int8 SGD whose steps are s^2 too small.
    rounding: a step smaller than one quantum is lost under "truncate" (what
    the paper's MCU code does); "stochastic" keeps its expectation at no
    memory cost and is the default; "nearest" is between the two.
    accumulate: a float32 gradient accumulator per parameter (as much RAM as
    float32 gradients of the trained parameters) for mini-batches: invokes with
    CONTROL_ACCUMULATE add their gradients, the next CONTROL_UPDATE steps with
    the mean (Trainer.batch_size, `train --batch`).
    """

    lr: float = 0.01
    momentum: float = 0.0
    qas: bool = True
    rounding: str = "stochastic"
    seed: int = 1
    accumulate: bool = False

    def __post_init__(self):
        if not 0 < self.lr <= MAX_LEARNING_RATE:
            raise TinyTrainError(f"learning rate must be in (0, {MAX_LEARNING_RATE}], got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise TinyTrainError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.rounding not in ROUNDINGS:
            raise TinyTrainError(f"rounding must be one of {sorted(ROUNDINGS)}, got {self.rounding!r}")
        if not 0 < self.seed < 2**31:
            raise TinyTrainError(f"seed must be in [1, 2^31), got {self.seed}")

    def emit_update(self, b, parameter: int, grad) -> None:
        """Emits TT_SGD for one parameter (the engine's update callback)."""

        def state(kind: str) -> int:  # a float32 variable of the gradient's shape
            shape = b.graph.tensors[grad.data].shape
            name = f"{b.graph.tensors[parameter].name}/{kind}"
            return b.graph.add_tensor(ir.Tensor(name, shape, np.dtype(np.float32), is_variable=True))

        momentum = state("momentum") if self.momentum > 0 else -1
        accumulator = state("accumulator") if self.accumulate else -1
        # One generator per parameter, each with its own seed, so streams differ. The seed follows the
        # parameter's name (its source tensor's, which every pass keeps), not the order updates are emitted
        # in: a pass that reorders them keeps the bits. Two parameters named alike would share a stream
        # (TFLite's converter names tensors uniquely).
        name = b.graph.tensors[parameter].name.encode()
        seed = (self.seed + 7919 * zlib.crc32(name)) % (2**31 - 1) or 1
        options = schema.encode_blob(
            "SGD", learning_rate=self.lr, momentum=self.momentum, qas=int(self.qas), rounding=ROUNDINGS[self.rounding], seed=seed
        )
        b.emit(schema_generated.SGD, [parameter, grad, momentum, b.control, b.learning_rate, accumulator], [], options)


def _xorshift32(state: int) -> int:
    """One step of TT_SGD's generator (kernels/core/optimizer/sgd_update.h: NextRandom)."""
    state ^= (state << 13) & 0xFFFFFFFF
    state ^= state >> 17
    return state ^ ((state << 5) & 0xFFFFFFFF)


def _apply(columns: list[int], vector: int) -> int:
    """A 32x32 matrix over GF(2), given by its columns, times a 32-bit vector."""
    result = 0
    for bit, column in enumerate(columns):
        if vector >> bit & 1:
            result ^= column
    return result


def advance_seed(seed: int, draws: int) -> int:
    """The state of TT_SGD's generator after `draws` numbers from `seed`: what its seed option must become
    for a saved model to continue the stream (each stochastic update draws one number per element of its
    gradient). xorshift32 is linear over GF(2), so the jump is its matrix to the power `draws`, by
    squaring: 10^9 draws take about 30 matrix products, not 10^9 steps."""
    power = [_xorshift32(1 << bit) for bit in range(32)]
    while draws:
        if draws & 1:
            seed = _apply(power, seed)
        power = [_apply(power, column) for column in power]
        draws >>= 1
    return seed

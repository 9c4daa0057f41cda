"""TT_SGD's update element by element, in the arithmetic kernels/core/tt_functions.h documents for
tt_sgd_update_s8 / _s32: float32 steps, or fixed point where int8 weights step by int8 gradient levels
with stochastic rounding and neither momentum nor a mini-batch. The exact reference of the SGD cases of
tests/cortex_m/generate_references.py and of tests/test_kernels_sgd.py. Mini-batch accumulation is not
modelled (the tests of it check the mean against this step)."""

from __future__ import annotations

import numpy as np

ROUND_TRUNCATE, ROUND_NEAREST, ROUND_STOCHASTIC = 0, 1, 2  # tt_schema_generated.h
INT8_LARGEST_STEP = 256.0  # ParameterLimits<int8_t>::kLargestStep, in quanta


def xorshift32(state: int) -> int:
    """The kernel's generator (Marsaglia's xorshift32, shifts 13, 17, 5)."""
    state ^= (state << 13) & 0xFFFFFFFF
    state ^= state >> 17
    state ^= (state << 5) & 0xFFFFFFFF
    return state


def level_step(quanta_per_level: np.float32) -> tuple[int, int]:
    """(multiplier, level_scale): k quanta per level, clamped to +-256, as multiplier * level_scale / 2^32 with
    level_scale the smallest power of two that keeps multiplier within int32 and multiplier rounded to
    nearest, ties away from zero (LevelStepOf). Halving a float by powers of two is exact, in float64 too."""
    scaled = min(max(float(quanta_per_level), -INT8_LARGEST_STEP), INT8_LARGEST_STEP) * 2.0**32
    level_scale = 1
    while abs(scaled) >= 2.0**31:
        scaled /= 2
        level_scale *= 2
    return int(np.sign(scaled) * np.floor(abs(scaled) + 0.5)), level_scale


def sgd_step(
    parameter: np.ndarray,
    scales: np.ndarray,
    grad: np.ndarray,
    grad_scale: float | None,
    learning_rate: float,
    qas: int,
    rounding: int,
    rng_state: int,
    momentum: np.ndarray | None = None,
    beta: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """One step on parameter [outer, channels, inner] (int8 or int32) from grad [outer, channels_to_update,
    inner]: float32 values, or int8 levels with grad_scale. Returns the updated parameter, momentum and
    generator state. The generator draws one number per updated element, channel by channel."""
    outer, _, inner = parameter.shape
    updated_channels = grad.shape[1]
    s32 = parameter.dtype == np.int32
    low, high = (-(2**31), 2**31 - 1) if s32 else (-127, 127)
    largest = np.float32(2.0**32 if s32 else INT8_LARGEST_STEP)
    lr, beta = np.float32(learning_rate), np.float32(beta)
    updated = parameter.astype(np.int64)
    momentum = None if momentum is None else momentum.copy()
    levels = grad_scale is not None
    in_fixed_point = levels and not s32 and rounding == ROUND_STOCHASTIC and momentum is None
    values = grad.astype(np.float32) * np.float32(grad_scale) if levels else grad.astype(np.float32)
    for c in range(updated_channels):
        scale = np.float32(scales[c if scales.size > 1 else 0])
        factor = lr / scale if qas else lr * scale
        if in_fixed_point:
            multiplier, level_scale = level_step((-factor) * np.float32(grad_scale))
        for o in range(outer):
            for i in range(inner):
                if in_fixed_point:
                    rng_state = xorshift32(rng_state)
                    step = (int(grad[o, c, i]) * level_scale * multiplier + rng_state) >> 32  # floor
                else:
                    v = values[o, c, i]
                    if momentum is not None:
                        momentum[o, c, i] = beta * momentum[o, c, i] + v
                        v = momentum[o, c, i]
                    delta = min(max((-factor) * v, -largest), largest)
                    if rounding == ROUND_TRUNCATE:
                        step = int(np.trunc(np.float64(delta)))
                    elif rounding == ROUND_NEAREST:
                        step = int(np.sign(delta) * np.floor(np.abs(np.float64(delta)) + 0.5))
                    else:
                        rng_state = xorshift32(rng_state)
                        step = int(np.floor(delta + np.float32(rng_state >> 8) * np.float32(2.0**-24)))
                updated[o, c, i] = min(max(updated[o, c, i] + step, low), high)
    return updated.astype(parameter.dtype), momentum, rng_state

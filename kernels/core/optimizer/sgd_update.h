/* Internal to the kernel core: the SGD update rule shared by the int8 weight
 * and int32 bias variants, and the rounding of a fractional integer step. */
#ifndef TINYTRAIN_KERNELS_CORE_OPTIMIZER_SGD_UPDATE_H_
#define TINYTRAIN_KERNELS_CORE_OPTIMIZER_SGD_UPDATE_H_

#include <math.h>
#include <stdint.h>

#include <type_traits>

#if defined(__ARM_FEATURE_SAT)
#include <arm_acle.h>
#endif

#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "../tt_schema_generated.h"

namespace tinytrain_core {

// The saturation range of each parameter type, and the largest change in quanta an update computes
// exactly: a larger one saturates every parameter of the type alike, so changes are clamped to it
// first (which also keeps the float-to-integer conversion defined, and maps NaN to a bound instead of
// undefined behaviour). Step is the integer type that holds q + such a change.
template <typename T>
struct ParameterLimits;

template <>
struct ParameterLimits<int8_t> {
  // -127, not -128: int8 weights are symmetric, as TFLite quantizes them.
  static constexpr int64_t kLowest = -127;
  static constexpr int64_t kHighest = 127;
  // 256 quanta take any int8 value (-128 included) past either bound. Within int32, the FPU converts
  // the change: a float-to-int64 conversion is a library call on a 32-bit MCU.
  static constexpr float kLargestStep = 256.0f;
  using Step = int32_t;
};

template <>
struct ParameterLimits<int32_t> {
  static constexpr int64_t kLowest = INT32_MIN;
  static constexpr int64_t kHighest = INT32_MAX;
  static constexpr float kLargestStep = 4294967296.0f;  // 2^32
  using Step = int64_t;
};

// An updated parameter q + change, formed in Step (where it cannot overflow), saturated to its type's range.
template <typename T>
inline T Saturated(typename ParameterLimits<T>::Step updated) {
  constexpr typename ParameterLimits<T>::Step lowest = ParameterLimits<T>::kLowest;
  constexpr typename ParameterLimits<T>::Step highest = ParameterLimits<T>::kHighest;
#if defined(__ARM_FEATURE_SAT)
  // SSAT (Armv7E-M and later) takes an int8's upper bound and -128 in one instruction, which the compiler
  // does not form from the clamp: its bounds are not a power of two apart.
  if constexpr (std::is_same<T, int8_t>::value) {
    updated = __ssat(updated, 8);
    updated = updated < lowest ? lowest : updated;  // as one statement, not in the cast: GCC adds an SXTB
    return static_cast<T>(updated);
  }
#endif
  return static_cast<T>(updated < lowest ? lowest : updated > highest ? highest : updated);
}

// xorshift32 (Marsaglia 2003): period 2^32 - 1 over nonzero states.
inline uint32_t NextRandom(uint32_t* state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *state = x;
  return x;
}

// Uniform in [0, 1) from the top 24 bits, which a float holds exactly.
inline float UniformUnit(uint32_t* state) {
  return static_cast<float>(NextRandom(state) >> 8) * (1.0f / 16777216.0f);
}

// A change of `delta` quanta clamped to ParameterLimits<T>::kLargestStep.
template <typename T>
inline float BoundedStep(float delta) {
  constexpr float kLargest = ParameterLimits<T>::kLargestStep;
  return fminf(fmaxf(delta, -kLargest), kLargest);
}

// An integral float within ParameterLimits<T>::kLargestStep as Step. For int64 (int32 biases) one
// int32 conversion (VCVT) wherever the value fits it, as nearly every change of a bias does: a
// float-to-int64 conversion is a library call on a 32-bit MCU. Both truncate toward zero.
template <typename Step>
inline Step ToStep(float value) {
  if constexpr (sizeof(Step) > sizeof(int32_t)) {
    if (fabsf(value) < 2147483648.0f) return static_cast<int32_t>(value);
  }
  return static_cast<Step>(value);
}

// A change of `bounded` quanta (BoundedStep) rounded stochastically: up with probability equal to
// the fractional part, so unbiased, and steps smaller than one quantum still move the parameter on
// average. `state` is the generator.
template <typename T>
inline typename ParameterLimits<T>::Step StochasticStep(float bounded, uint32_t* state) {
  return ToStep<typename ParameterLimits<T>::Step>(floorf(bounded + UniformUnit(state)));
}

// A change of `delta` quanta as an integer change under `rounding`, clamped to
// ParameterLimits<T>::kLargestStep first. `state` is the stochastic mode's generator.
template <typename T>
inline typename ParameterLimits<T>::Step RoundStep(int32_t rounding, float delta, uint32_t* state) {
  using Step = typename ParameterLimits<T>::Step;
  const float bounded = BoundedStep<T>(delta);
  if (rounding == TT_ROUND_STOCHASTIC) return StochasticStep<T>(bounded, state);
  // roundf, not lroundf: the same ties away from zero, without a 32-bit long overflowing on an MCU.
  if (rounding == TT_ROUND_NEAREST) return ToStep<Step>(roundf(bounded));
  return ToStep<Step>(bounded);  // TT_ROUND_TRUNCATE: conversion truncates toward zero
}

// The change of a channel's int8 weights per level of an int8 gradient, k quanta, as the fixed-point
// number multiplier * level_scale / 2^32, for the update with stochastic rounding (SgdUpdate). k is
// clamped to BoundedStep first: any nonzero level has |level| >= 1, so a larger k saturates the weight
// anyway. multiplier is k * 2^32 / level_scale rounded to nearest, level_scale the smallest power of two
// that keeps it within int32: 1 whenever |k| < 1/2 (changes below 64 quanta: nearly always), at most 2^10
// (|k| = 256). The mean change then errs from level * k by at most |level| * level_scale * 2^-33 quanta:
// below 2^-26 quanta at level_scale 1, a relative 2^-31 above it.
struct LevelStep {
  int32_t multiplier;
  int32_t level_scale;
};

inline LevelStep LevelStepOf(float quanta_per_level) {
  float scaled = BoundedStep<int8_t>(quanta_per_level) * 4294967296.0f;  // times 2^32: exact
  int32_t level_scale = 1;
  while (fabsf(scaled) >= 2147483648.0f) {  // not below 2^31: halve (exact) until it is
    scaled *= 0.5f;
    level_scale *= 2;
  }
  // Below 2^31, a float that rounds up to an integer stays below it: floats from 2^30 up are integers.
  return LevelStep{static_cast<int32_t>(roundf(scaled)), level_scale};
}

// q + floor((scaled_level * multiplier + random) / 2^32) (LevelStep, scaled_level = level * level_scale),
// one 64-bit multiply-accumulate (SMLAL on Arm) with q in the high word and random in the low one:
// with random uniform in [0, 2^32), the carry out of the low word rounds the change up with probability
// equal to its fraction, so the mean change is scaled_level * multiplier / 2^32 exactly. |scaled_level *
// multiplier| < 2^48: no overflow.
inline int32_t AddLevelStep(int32_t q, int32_t scaled_level, int32_t multiplier, uint32_t random) {
  const uint64_t high = static_cast<uint64_t>(static_cast<uint32_t>(q)) << 32;
  const int64_t sum = static_cast<int64_t>(high | random) + static_cast<int64_t>(scaled_level) * multiplier;
  return static_cast<int32_t>(sum >> 32);  // arithmetic shift: floor
}

// Calls body(i, p) for each element of channel c, in memory order: i indexes the gradient (and momentum
// and accumulator), which hold only the updated channels, p the parameter. Updates go channel by
// channel, so that what depends on the channel alone is computed once per channel (outer > 1 spreads a
// depthwise filter's channel over the whole tensor).
template <typename Body>
inline void ForEachOfChannel(const tt_sgd_dims& dims, int32_t c, Body&& body) {
  if (dims.inner == 1) {  // one loop (a depthwise filter's channel): GCC keeps a loop of one iteration
    for (int32_t outer = 0; outer < dims.outer; ++outer) {
      body(outer * dims.channels_to_update + c, outer * dims.channels + c);
    }
    return;
  }
  for (int32_t outer = 0; outer < dims.outer; ++outer) {
    const int32_t i = (outer * dims.channels_to_update + c) * dims.inner;
    const int32_t p = (outer * dims.channels + c) * dims.inner;
    for (int32_t inner = 0; inner < dims.inner; ++inner) body(i + inner, p + inner);
  }
}

// The usual update's loops over channel c: stochastic rounding, no momentum, no mini-batch. They take
// and return the generator's state by value, as their other operands, so that it stays in a register
// whether the compiler inlines them or not (an int8 store may alias anything whose address was taken).
// With int8 gradient levels in fixed point (LevelStep); kScaledLevels: level_scale > 1.
template <bool kScaledLevels>
uint32_t StepChannelByLevels(tt_sgd_dims dims, int32_t c, LevelStep k, const int8_t* levels, uint32_t state,
                             int8_t* parameter) {
  ForEachOfChannel(dims, c, [&](int32_t i, int32_t p) {
    const int32_t level = kScaledLevels ? levels[i] * k.level_scale : levels[i];
    parameter[p] = Saturated<int8_t>(AddLevelStep(parameter[p], level, k.multiplier, NextRandom(&state)));
  });
  return state;
}

// With float gradients (or int32 parameters): a change of -factor * g quanta, StochasticStep.
template <typename T, typename Grad>
uint32_t StepChannel(tt_sgd_dims dims, int32_t c, float factor, Grad grad, uint32_t state, T* parameter) {
  ForEachOfChannel(dims, c, [&](int32_t i, int32_t p) {
    parameter[p] = Saturated<T>(parameter[p] + StochasticStep<T>(BoundedStep<T>(-factor * grad[i]), &state));
  });
  return state;
}

// What an update depends on besides its data: run-time values in the generic
// functions; a kernel generated for one model (tinytrain_tflm/firmware/codegen.py)
// passes a struct with static constexpr members of the same names and types.
struct SgdShape {
  tt_sgd_params params;
  tt_sgd_dims dims;
  int32_t num_scales;
  const float* scales;
};

// The argument checks of tt_sgd_update_s8 / _s32.
inline bool ValidSgdArgs(const uint32_t* rng_state, const tt_sgd_params* params, int32_t num_scales,
                         const float* scales, const tt_sgd_dims* dims, const tt_grad_in* grad, const float* momentum,
                         const tt_sgd_accumulator* accumulator, const void* parameter) {
  if (params == nullptr || scales == nullptr || dims == nullptr || !ValidGradIn(grad) || parameter == nullptr) {
    return false;
  }
  if (accumulator != nullptr && (accumulator->sum == nullptr || accumulator->count < 0)) return false;
  if (num_scales != 1 && num_scales < dims->channels_to_update) return false;
  if (dims->outer < 1 || dims->inner < 1 || dims->channels_to_update < 1 ||
      dims->channels_to_update > dims->channels) {
    return false;
  }
  if (!(params->momentum >= 0.0f && params->momentum < 1.0f) || (params->momentum > 0.0f) != (momentum != nullptr)) {
    return false;
  }
  const int32_t rounding = params->rounding;
  if (rounding != TT_ROUND_TRUNCATE && rounding != TT_ROUND_NEAREST && rounding != TT_ROUND_STOCHASTIC) {
    return false;
  }
  return rounding != TT_ROUND_STOCHASTIC || (rng_state != nullptr && *rng_state != 0);
}

// The update of tt_sgd_update_s8 / _s32 (after ValidSgdArgs), saturating to ParameterLimits<T>. The
// learning rate is an argument rather than read from s.params: it may change between invokes (the
// learning-rate input of TT_SGD), so a kernel generated for one model must not fold it into a constant.
// With an accumulator each gradient is first averaged with the mini-batch's accumulated ones, and the
// accumulator cleared for the next mini-batch.
template <typename T, typename S, typename Grad>
void SgdUpdate(const S& s, float learning_rate, uint32_t* rng_state, const Grad& g, float* momentum,
               tt_sgd_accumulator* accumulator, T* parameter) {
  // Everything the loops read is copied into locals: a parameter's int8 stores may alias any memory,
  // so values read through s, g or rng_state would be reloaded, and the generator stored, per element.
  const int32_t rounding = s.params.rounding;
  const bool stochastic = rounding == TT_ROUND_STOCHASTIC;
  uint32_t state = stochastic ? *rng_state : 0;
  const Grad grad = g;
  const tt_sgd_dims dims = s.dims;
  const float beta = s.params.momentum;
  float* const sum = accumulator != nullptr ? accumulator->sum : nullptr;
  const float samples = accumulator != nullptr ? static_cast<float>(accumulator->count + 1) : 1.0f;
  // The usual update (stochastic rounding, no momentum, no mini-batch) gets loops of its own, with no
  // per-element tests of the others; with int8 weights and int8 gradients they run in fixed point.
  const bool plain_stochastic = stochastic && sum == nullptr && momentum == nullptr;
  constexpr bool kLevels = std::is_same<T, int8_t>::value && std::is_same<Grad, S8GradReader>::value;
  // The integer step per unit of real gradient: lr / s with QAS (float SGD's step in real units),
  // lr * s without. Recomputed per channel rather than stored: no persistent array.
  auto factor_of = [&](int32_t c) {
    const float scale = s.scales[s.num_scales == 1 ? 0 : c];
    return s.params.qas ? learning_rate / scale : learning_rate * scale;
  };
  if (plain_stochastic) {
    for (int32_t c = 0; c < dims.channels_to_update; ++c) {
      if constexpr (kLevels) {
        const LevelStep k = LevelStepOf(-factor_of(c) * grad.scale);
        state = k.level_scale == 1 ? StepChannelByLevels<false>(dims, c, k, grad.data, state, parameter)
                                   : StepChannelByLevels<true>(dims, c, k, grad.data, state, parameter);
      } else {
        state = StepChannel(dims, c, factor_of(c), grad, state, parameter);
      }
    }
  } else {
    for (int32_t c = 0; c < dims.channels_to_update; ++c) {
      const float factor = factor_of(c);
      ForEachOfChannel(dims, c, [&](int32_t i, int32_t p) {
        float velocity = grad[i];
        if (sum != nullptr) {
          velocity = (sum[i] + velocity) / samples;
          sum[i] = 0.0f;
        }
        if (momentum != nullptr) {
          momentum[i] = beta * momentum[i] + velocity;
          velocity = momentum[i];
        }
        parameter[p] = Saturated<T>(parameter[p] + RoundStep<T>(rounding, -factor * velocity, &state));
      });
    }
  }
  if (stochastic) *rng_state = state;
  if (accumulator != nullptr) accumulator->count = 0;
}

// The generic functions: checks, then the update with run-time shape and representation.
template <typename T>
tt_status SgdUpdateChecked(uint32_t* rng_state, const tt_sgd_params* params, int32_t num_scales, const float* scales,
                           const tt_sgd_dims* dims, const tt_grad_in* grad, float* momentum,
                           tt_sgd_accumulator* accumulator, T* parameter) {
  if (!ValidSgdArgs(rng_state, params, num_scales, scales, dims, grad, momentum, accumulator, parameter)) {
    return TT_ARG_ERROR;
  }
  const SgdShape shape{*params, *dims, num_scales, scales};
  WithGradReader(*grad, [&](auto g) {
    SgdUpdate(shape, params->learning_rate, rng_state, g, momentum, accumulator, parameter);
  });
  return TT_SUCCESS;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_OPTIMIZER_SGD_UPDATE_H_

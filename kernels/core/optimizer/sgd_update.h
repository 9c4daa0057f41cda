/* Internal to the kernel core: the SGD update rule shared by the int8 weight
 * and int32 bias variants, and the rounding of a fractional integer step. */
#ifndef TINYTRAIN_KERNELS_CORE_OPTIMIZER_SGD_UPDATE_H_
#define TINYTRAIN_KERNELS_CORE_OPTIMIZER_SGD_UPDATE_H_

#include <math.h>
#include <stdint.h>

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

// A change of `bounded` quanta (BoundedStep) rounded stochastically: up with probability equal to
// the fractional part, so unbiased, and steps smaller than one quantum still move the parameter on
// average. `state` is the generator.
template <typename T>
inline typename ParameterLimits<T>::Step StochasticStep(float bounded, uint32_t* state) {
  return static_cast<typename ParameterLimits<T>::Step>(floorf(bounded + UniformUnit(state)));
}

// A change of `delta` quanta as an integer change under `rounding`, clamped to
// ParameterLimits<T>::kLargestStep first. `state` is the stochastic mode's generator.
template <typename T>
inline typename ParameterLimits<T>::Step RoundStep(int32_t rounding, float delta, uint32_t* state) {
  using Step = typename ParameterLimits<T>::Step;
  const float bounded = BoundedStep<T>(delta);
  if (rounding == TT_ROUND_STOCHASTIC) return StochasticStep<T>(bounded, state);
  // roundf, not lroundf: the same ties away from zero, without a 32-bit long overflowing on an MCU.
  if (rounding == TT_ROUND_NEAREST) return static_cast<Step>(roundf(bounded));
  return static_cast<Step>(bounded);  // TT_ROUND_TRUNCATE: conversion truncates toward zero
}

// A flag as a type, for a loop instantiated with and without a case.
template <bool kValue>
struct BoolConstant {
  static constexpr bool value = kValue;
};

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
  using Step = typename ParameterLimits<T>::Step;
  constexpr Step lowest = ParameterLimits<T>::kLowest;
  constexpr Step highest = ParameterLimits<T>::kHighest;
  // Everything the loop reads is copied into locals: a parameter's int8 stores may alias any memory,
  // so values read through s, g or rng_state would be reloaded, and the generator stored, per element.
  const int32_t rounding = s.params.rounding;
  const bool stochastic = rounding == TT_ROUND_STOCHASTIC;
  uint32_t state = stochastic ? *rng_state : 0;
  const Grad grad = g;
  const tt_sgd_dims dims = s.dims;
  const float beta = s.params.momentum;
  float* const sum = accumulator != nullptr ? accumulator->sum : nullptr;
  const float samples = accumulator != nullptr ? static_cast<float>(accumulator->count + 1) : 1.0f;
  // The usual update (stochastic rounding, no momentum, no mini-batch) gets a loop of its own, with
  // no per-element tests of the others: the same operations in the same order, so the same bits.
  const bool plain_stochastic = stochastic && sum == nullptr && momentum == nullptr;
  auto update = [&](auto plain) {
    constexpr bool kPlain = decltype(plain)::value;
    int32_t i = 0;  // Index into grad and momentum, which hold only the updated channels.
    for (int32_t outer = 0; outer < dims.outer; ++outer) {
      for (int32_t c = 0; c < dims.channels_to_update; ++c) {
        // The integer step per unit of real gradient: lr / s with QAS (float SGD's step in real
        // units), lr * s without. Recomputed per channel rather than stored: no persistent array.
        const float scale = s.scales[s.num_scales == 1 ? 0 : c];
        const float factor = s.params.qas ? learning_rate / scale : learning_rate * scale;
        T* values = parameter + (outer * dims.channels + c) * dims.inner;
        for (int32_t inner = 0; inner < dims.inner; ++inner, ++i) {
          float velocity = grad[i];
          Step step;
          if constexpr (kPlain) {
            step = StochasticStep<T>(BoundedStep<T>(-factor * velocity), &state);
          } else {
            if (sum != nullptr) {
              velocity = (sum[i] + velocity) / samples;
              sum[i] = 0.0f;
            }
            if (momentum != nullptr) {
              momentum[i] = beta * momentum[i] + velocity;
              velocity = momentum[i];
            }
            step = RoundStep<T>(rounding, -factor * velocity, &state);
          }
          // In Step, q + delta cannot overflow before the saturation.
          const Step updated = values[inner] + step;
          values[inner] = static_cast<T>(updated < lowest ? lowest : updated > highest ? highest : updated);
        }
      }
    }
  };
  if (plain_stochastic) {
    update(BoolConstant<true>{});
  } else {
    update(BoolConstant<false>{});
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

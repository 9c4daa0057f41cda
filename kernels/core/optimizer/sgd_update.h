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

// Changes beyond 2^32 quanta saturate every parameter type alike; clamping to
// it first also keeps the float-to-int64 conversion defined (and maps NaN to
// a bound instead of undefined behaviour).
constexpr float kLargestStep = 4294967296.0f;

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

// Calls body(round) with the rounding functor for `rounding`, so the update
// loop is compiled once per mode with no per-element branch. round(delta)
// takes a change in quanta and returns the integer change.
template <typename Body>
void WithRounding(int32_t rounding, uint32_t* rng_state, Body&& body) {
  const auto bounded = [](float delta) { return fminf(fmaxf(delta, -kLargestStep), kLargestStep); };
  if (rounding == TT_ROUND_TRUNCATE) {
    body([&](float delta) { return static_cast<int64_t>(bounded(delta)); });  // conversion truncates toward zero
  } else if (rounding == TT_ROUND_NEAREST) {
    // roundf, not lroundf: the same ties away from zero, without a 32-bit long overflowing on an MCU.
    body([&](float delta) { return static_cast<int64_t>(roundf(bounded(delta))); });
  } else {
    // Up with probability equal to the fractional part: unbiased, so steps
    // smaller than one quantum still move the parameter on average.
    body([&](float delta) { return static_cast<int64_t>(floorf(bounded(delta) + UniformUnit(rng_state))); });
  }
}

// The update of tt_sgd_update_s8 / _s32, saturating to [lowest, highest].
template <typename T>
tt_status SgdUpdate(uint32_t* rng_state, const tt_sgd_params* params, int32_t num_scales, const float* scales,
                    const tt_sgd_dims* dims, const tt_grad_in* grad, float* momentum, T* parameter, int64_t lowest,
                    int64_t highest) {
  if (params == nullptr || scales == nullptr || dims == nullptr || !ValidGradIn(grad) || parameter == nullptr) {
    return TT_ARG_ERROR;
  }
  if (num_scales != 1 && num_scales < dims->channels_to_update) return TT_ARG_ERROR;
  if (dims->outer < 1 || dims->inner < 1 || dims->channels_to_update < 1 ||
      dims->channels_to_update > dims->channels) {
    return TT_ARG_ERROR;
  }
  if (!(params->momentum >= 0.0f && params->momentum < 1.0f) || (params->momentum > 0.0f) != (momentum != nullptr)) {
    return TT_ARG_ERROR;
  }
  const int32_t rounding = params->rounding;
  if (rounding != TT_ROUND_TRUNCATE && rounding != TT_ROUND_NEAREST && rounding != TT_ROUND_STOCHASTIC) {
    return TT_ARG_ERROR;
  }
  if (rounding == TT_ROUND_STOCHASTIC && (rng_state == nullptr || *rng_state == 0)) return TT_ARG_ERROR;

  const float beta = params->momentum;
  WithGradReader(*grad, [&](auto g) {
    WithRounding(rounding, rng_state, [&](auto round) {
      int32_t i = 0;  // Index into grad and momentum, which hold only the updated channels.
      for (int32_t outer = 0; outer < dims->outer; ++outer) {
        for (int32_t c = 0; c < dims->channels_to_update; ++c) {
          // The integer step per unit of real gradient: lr / s with QAS (float SGD's step in real
          // units), lr * s without. Recomputed per channel rather than stored: no persistent array.
          const float scale = scales[num_scales == 1 ? 0 : c];
          const float factor = params->qas ? params->learning_rate / scale : params->learning_rate * scale;
          T* values = parameter + (outer * dims->channels + c) * dims->inner;
          for (int32_t inner = 0; inner < dims->inner; ++inner, ++i) {
            float velocity = g[i];
            if (momentum != nullptr) {
              momentum[i] = beta * momentum[i] + velocity;
              velocity = momentum[i];
            }
            // int64: q + delta cannot overflow before the saturation.
            const int64_t updated = static_cast<int64_t>(values[inner]) + round(-factor * velocity);
            values[inner] = static_cast<T>(updated < lowest ? lowest : updated > highest ? highest : updated);
          }
        }
      }
    });
  });
  return TT_SUCCESS;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_OPTIMIZER_SGD_UPDATE_H_

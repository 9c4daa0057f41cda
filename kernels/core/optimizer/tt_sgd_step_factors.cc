#include "../tt_functions.h"

extern "C" tt_status tt_sgd_step_factors(const tt_sgd_params* params, int32_t num_scales, const float* scales,
                                         int32_t channels_to_update, float* step_factors) {
  if (params == nullptr || scales == nullptr || step_factors == nullptr || channels_to_update < 1) return TT_ARG_ERROR;
  if (!(params->learning_rate > 0.0f) || (params->qas != 0 && params->qas != 1)) return TT_ARG_ERROR;
  if (num_scales != 1 && num_scales < channels_to_update) return TT_ARG_ERROR;
  const auto scale_of = [&](int32_t c) { return scales[num_scales == 1 ? 0 : c]; };
  for (int32_t c = 0; c < channels_to_update; ++c) {
    if (!(scale_of(c) > 0.0f)) return TT_ARG_ERROR;
  }
  for (int32_t c = 0; c < channels_to_update; ++c) {
    // A real step lr * g moves the integer by lr * g / s (QAS). Without QAS
    // the gradient w.r.t. the integer, s * g, is applied as is: lr * s * g.
    step_factors[c] = params->qas ? params->learning_rate / scale_of(c) : params->learning_rate * scale_of(c);
  }
  return TT_SUCCESS;
}

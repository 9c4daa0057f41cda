#include "../bias/bias_grad.h"
#include "../tt_functions.h"
#include "sgd_update.h"

extern "C" tt_status tt_sgd_update_channel_sums_s32(uint32_t* rng_state, const tt_sgd_params* params, int32_t num_scales,
                                                    const float* scales, const tt_dims* grad_dims,
                                                    const tt_grad_in* grad_output, float* momentum, int32_t* parameter) {
  if (grad_dims == nullptr) return TT_ARG_ERROR;
  const int32_t rows = grad_dims->n * grad_dims->h * grad_dims->w;
  const int32_t channels = grad_dims->c;
  if (rows < 1) return TT_ARG_ERROR;
  const tt_sgd_dims dims{1, channels, channels, 1};
  if (!tinytrain_core::ValidSgdArgs(rng_state, params, num_scales, scales, &dims, grad_output, momentum, nullptr,
                                    parameter)) {
    return TT_ARG_ERROR;
  }
  const tinytrain_core::SgdShape shape{*params, dims, num_scales, scales};
  tinytrain_core::WithGradReader(*grad_output, [&](auto g) {
    const tinytrain_core::ChannelSumReader<decltype(g)> sums{g, rows, channels};
    tinytrain_core::SgdUpdate(shape, params->learning_rate, rng_state, sums, momentum, nullptr, parameter);
  });
  return TT_SUCCESS;
}

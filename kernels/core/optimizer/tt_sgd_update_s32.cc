#include "../tt_functions.h"
#include "sgd_update.h"

extern "C" tt_status tt_sgd_update_s32(uint32_t* rng_state, const tt_sgd_params* params, int32_t num_scales,
                                       const float* scales, const tt_sgd_dims* dims, const tt_grad_in* grad,
                                       float* momentum, tt_sgd_accumulator* accumulator, int32_t* parameter) {
  return tinytrain_core::SgdUpdateChecked(rng_state, params, num_scales, scales, dims, grad, momentum, accumulator, parameter);
}

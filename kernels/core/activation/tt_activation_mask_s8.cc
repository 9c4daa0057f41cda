#include "../tt_functions.h"
#include "activation_pass.h"

extern "C" tt_status tt_activation_mask_s8(const tt_activation_params* params, int32_t count, const int8_t* y,
                                           uint8_t* mask) {
  if (!tinytrain_core::ValidActivationParams(params) || count < 1 || y == nullptr || mask == nullptr) {
    return TT_ARG_ERROR;
  }
  tinytrain_core::ActivationMask(tinytrain_core::ActivationShape{*params, count}, y, mask);
  return TT_SUCCESS;
}

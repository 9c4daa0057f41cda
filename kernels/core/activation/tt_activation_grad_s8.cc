#include "../tt_functions.h"
#include "activation_pass.h"

extern "C" tt_status tt_activation_grad_s8(const tt_activation_params* params, int32_t count, const int8_t* y,
                                           const tt_grad_in* grad_output, tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidActivationParams(params) ||
      !tinytrain_core::ValidPassGradArgs(count, y, grad_output, grad_input)) {
    return TT_ARG_ERROR;
  }
  tinytrain_core::PassGradWhere(count, *grad_output, *grad_input,
                                [&](int32_t i) { return tinytrain_core::InsideClampRange(*params, y[i]); });
  return TT_SUCCESS;
}

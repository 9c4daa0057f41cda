#include "../tt_functions.h"
#include "activation_pass.h"

extern "C" tt_status tt_activation_grad_mask(int32_t count, const uint8_t* mask, const tt_grad_in* grad_output,
                                             tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidPassGradArgs(count, mask, grad_output, grad_input)) return TT_ARG_ERROR;
  tinytrain_core::PassGradWhere(count, *grad_output, *grad_input,
                                [&](int32_t i) { return tinytrain_core::MaskBit(mask, i); });
  return TT_SUCCESS;
}

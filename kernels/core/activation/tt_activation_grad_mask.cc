#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "activation_pass.h"

extern "C" tt_status tt_activation_grad_mask(int32_t count, const uint8_t* mask, const tt_grad_in* grad_output,
                                             tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidPassGradArgs(count, mask, grad_output, grad_input)) return TT_ARG_ERROR;
  const tinytrain_core::CountShape shape{count};
  tinytrain_core::WithGradType(grad_output->type, [&](auto type) {
    tinytrain_core::ActivationGradMaskAs<decltype(type)::value>(shape, mask, *grad_output, *grad_input);
  });
  return TT_SUCCESS;
}

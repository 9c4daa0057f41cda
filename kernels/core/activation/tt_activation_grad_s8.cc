#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "activation_pass.h"

extern "C" tt_status tt_activation_grad_s8(const tt_activation_params* params, int32_t count, const int8_t* y,
                                           const tt_grad_in* grad_output, tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidActivationParams(params) ||
      !tinytrain_core::ValidPassGradArgs(count, y, grad_output, grad_input)) {
    return TT_ARG_ERROR;
  }
  const tinytrain_core::ActivationShape shape{*params, count};
  tinytrain_core::WithGradType(grad_output->type, [&](auto type) {
    tinytrain_core::ActivationGradAs<decltype(type)::value>(shape, y, *grad_output, *grad_input);
  });
  return TT_SUCCESS;
}

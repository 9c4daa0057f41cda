#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "unary_grad.h"

extern "C" tt_status tt_unary_grad_s8(const tt_unary_params* params, int32_t count, const int8_t* saved,
                                      const tt_grad_in* grad_output, tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidUnaryParams(params) || count < 1 || saved == nullptr ||
      !tinytrain_core::ValidGradIn(grad_output) || !tinytrain_core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const tinytrain_core::UnaryGradShape shape{*params, count};
  tinytrain_core::WithGrads(*grad_output, *grad_input,
                            [&](auto grad, auto& sink) { tinytrain_core::UnaryGrad(shape, saved, grad, sink); });
  return TT_SUCCESS;
}

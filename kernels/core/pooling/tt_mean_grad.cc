#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "pool_grad_kernels.h"

extern "C" tt_status tt_mean_grad(const tt_dims* grad_input_dims, const tt_grad_in* grad_output,
                                  tt_grad_out* grad_input) {
  if (grad_input_dims == nullptr || !tinytrain_core::ValidGradIn(grad_output) ||
      !tinytrain_core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const tt_dims& in = *grad_input_dims;
  if (in.n < 1 || in.h < 1 || in.w < 1 || in.c < 1) return TT_ARG_ERROR;
  const tinytrain_core::MeanGradShape shape{in};
  tinytrain_core::WithGrads(*grad_output, *grad_input,
                            [&](auto grad, auto& sink) { tinytrain_core::MeanGrad(shape, grad, sink); });
  return TT_SUCCESS;
}

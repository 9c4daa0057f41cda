#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "pool_grad_kernels.h"
#include "pool_window.h"

extern "C" tt_status tt_max_pool2d_grad_s8(const tt_pool_params* params, const tt_dims* grad_output_dims,
                                           const tt_grad_in* grad_output, const tt_dims* input_dims,
                                           const int8_t* input, tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidPoolArgs(params, grad_output_dims, input_dims) || input == nullptr ||
      !tinytrain_core::ValidGradIn(grad_output) || !tinytrain_core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const tinytrain_core::PoolGradShape shape{*params, *grad_output_dims, *input_dims};
  tinytrain_core::WithGrads(*grad_output, *grad_input,
                            [&](auto grad, auto& sink) { tinytrain_core::MaxPoolGrad(shape, grad, input, sink); });
  return TT_SUCCESS;
}

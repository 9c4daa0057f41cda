#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "pool_grad_kernels.h"
#include "pool_window.h"

extern "C" tt_status tt_avg_pool2d_grad(const tt_pool_params* params, const tt_dims* grad_output_dims,
                                        const tt_grad_in* grad_output, const tt_dims* grad_input_dims,
                                        tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidPoolArgs(params, grad_output_dims, grad_input_dims) ||
      !tinytrain_core::ValidGradIn(grad_output) || !tinytrain_core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const tinytrain_core::PoolGradShape shape{*params, *grad_output_dims, *grad_input_dims};
  tinytrain_core::WithGrads(*grad_output, *grad_input,
                            [&](auto grad, auto& sink) { tinytrain_core::AvgPoolGrad(shape, grad, sink); });
  return TT_SUCCESS;
}

#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "bias_grad.h"

extern "C" tt_status tt_bias_grad(const tt_dims* grad_dims, const tt_grad_in* grad_output, int32_t channels_to_update,
                                  tt_grad_out* grad_bias) {
  if (grad_dims == nullptr || !tinytrain_core::ValidGradIn(grad_output) || !tinytrain_core::ValidGradOut(grad_bias)) {
    return TT_ARG_ERROR;
  }
  const int32_t rows = grad_dims->n * grad_dims->h * grad_dims->w;
  if (rows < 1 || channels_to_update < 1 || channels_to_update > grad_dims->c) return TT_ARG_ERROR;

  const tinytrain_core::BiasGradShape shape{*grad_dims, channels_to_update};
  tinytrain_core::WithGrads(*grad_output, *grad_bias,
                            [&](auto grad, auto& sink) { tinytrain_core::BiasGrad(shape, grad, sink); });
  return TT_SUCCESS;
}

#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "pool_window.h"

extern "C" tt_status tt_avg_pool2d_grad(const tt_pool_params* params, const tt_dims* grad_output_dims,
                                        const tt_grad_in* grad_output, const tt_dims* grad_input_dims,
                                        tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidPoolArgs(params, grad_output_dims, grad_input_dims) ||
      !tinytrain_core::ValidGradIn(grad_output) || !tinytrain_core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  // Each window's output is the mean of its in-bounds elements, so each of them
  // receives 1 / count of the window's gradient.
  const auto share = [](int32_t, int32_t, int32_t, int32_t, tinytrain_core::Span rows, tinytrain_core::Span cols) {
    return 1.0f / static_cast<float>(rows.size() * cols.size());
  };
  tinytrain_core::WithGradReader(*grad_output, [&](auto grad) {
    tinytrain_core::WriteGrad(*grad_input, [&](auto sink) {
      tinytrain_core::GatherPoolGrad(*params, *grad_output_dims, grad, *grad_input_dims, sink, share);
    });
  });
  return TT_SUCCESS;
}

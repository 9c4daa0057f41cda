#include "../common/grad_io.h"
#include "../tt_functions.h"

extern "C" tt_status tt_mean_grad(const tt_dims* grad_input_dims, const tt_grad_in* grad_output,
                                  tt_grad_out* grad_input) {
  if (grad_input_dims == nullptr || !tinytrain_core::ValidGradIn(grad_output) ||
      !tinytrain_core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const tt_dims& in = *grad_input_dims;
  if (in.n < 1 || in.h < 1 || in.w < 1 || in.c < 1) return TT_ARG_ERROR;
  const float share = 1.0f / static_cast<float>(in.h * in.w);
  tinytrain_core::WithGradReader(*grad_output, [&](auto grad) {
    tinytrain_core::WriteGrad(*grad_input, [&](auto sink) {
      for (int32_t n = 0; n < in.n; ++n) {
        for (int32_t pixel = 0; pixel < in.h * in.w; ++pixel) {
          for (int32_t c = 0; c < in.c; ++c) sink(grad[n * in.c + c] * share);
        }
      }
    });
  });
  return TT_SUCCESS;
}

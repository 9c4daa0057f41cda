#include "../common/grad_io.h"
#include "../tt_functions.h"

extern "C" tt_status tt_bias_grad(const tt_dims* grad_dims, const tt_grad_in* grad_output, int32_t channels_to_update,
                                  tt_grad_out* grad_bias) {
  if (grad_dims == nullptr || !tinytrain_core::ValidGradIn(grad_output) || !tinytrain_core::ValidGradOut(grad_bias)) {
    return TT_ARG_ERROR;
  }
  const int32_t rows = grad_dims->n * grad_dims->h * grad_dims->w;
  const int32_t channels = grad_dims->c;
  if (rows < 1 || channels_to_update < 1 || channels_to_update > channels) return TT_ARG_ERROR;

  tinytrain_core::WithGradReader(*grad_output, [&](auto grad) {
    tinytrain_core::WriteGrad(*grad_bias, [&](auto sink) {
      for (int32_t c = 0; c < channels_to_update; ++c) {
        float sum = 0.0f;
        for (int32_t row = 0; row < rows; ++row) sum += grad[row * channels + c];
        sink(sum);
      }
    });
  });
  return TT_SUCCESS;
}

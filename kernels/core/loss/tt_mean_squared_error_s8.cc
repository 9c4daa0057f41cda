#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "saturation.h"

extern "C" tt_status tt_mean_squared_error_s8(const tt_quant_params* output_quant, const tt_quant_params* target_quant,
                                              int32_t count, const int8_t* output, const int8_t* target, float* loss,
                                              tt_grad_out* grad) {
  if (output_quant == nullptr || target_quant == nullptr || !(output_quant->scale > 0.0f) ||
      !(target_quant->scale > 0.0f) || count < 1 || output == nullptr || target == nullptr || loss == nullptr ||
      !tinytrain_core::ValidGradOut(grad)) {
    return TT_ARG_ERROR;
  }
  const auto difference = [&](int32_t i) {
    return output_quant->scale * static_cast<float>(output[i] - output_quant->zero_point) -
           target_quant->scale * static_cast<float>(target[i] - target_quant->zero_point);
  };
  float sum = 0.0f;
  for (int32_t i = 0; i < count; ++i) sum += difference(i) * difference(i);
  const float inv_count = 1.0f / static_cast<float>(count);
  *loss = sum * inv_count;
  tinytrain_core::WriteGrad(*grad, [&](auto& sink) {
    for (int32_t i = 0; i < count; ++i) sink(tinytrain_core::UnlessPushedOut(output[i], 2.0f * difference(i) * inv_count));
  });
  return TT_SUCCESS;
}

#include "../tt_functions.h"
#include "softmax_cross_entropy_row.h"

extern "C" tt_status tt_softmax_cross_entropy_s8(const tt_softmax_cross_entropy_params* params,
                                                 const tt_quant_params* logits_quant,
                                                 const tt_dims* logits_dims, const int8_t* logits,
                                                 const int32_t* labels, float* loss, float* grad) {
  const tt_status status = tinytrain_core::CheckSoftmaxCrossEntropyArgs(
      params, logits_quant, logits_dims, logits, labels, loss, grad);
  if (status != TT_SUCCESS) return status;

  const int32_t batch = logits_dims->n;
  const int32_t classes = logits_dims->c;
  const float inv_batch = 1.0f / static_cast<float>(batch);
  const float smoothing = params->label_smoothing;
  float total = 0.0f;
  for (int32_t n = 0; n < batch; ++n) {
    const tinytrain_core::SoftmaxRow row(logits + n * classes, classes, logits_quant->scale);
    total += row.CrossEntropy(labels[n], smoothing);
    for (int32_t c = 0; c < classes; ++c) {
      grad[n * classes + c] = row.Gradient(c, labels[n], smoothing) * inv_batch;
    }
  }
  *loss = total * inv_batch;
  return TT_SUCCESS;
}

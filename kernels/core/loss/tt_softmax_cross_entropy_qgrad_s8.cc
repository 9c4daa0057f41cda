#include <math.h>

#include "../tt_functions.h"
#include "softmax_cross_entropy_row.h"

extern "C" tt_status tt_softmax_cross_entropy_qgrad_s8(
    const tt_softmax_cross_entropy_params* params, const tt_quant_params* logits_quant,
    const tt_dims* logits_dims, const int8_t* logits, const int32_t* labels, float* loss,
    int8_t* grad, float* grad_scale) {
  const tt_status status = tinytrain_core::CheckSoftmaxCrossEntropyArgs(
      params, logits_quant, logits_dims, logits, labels, loss, grad);
  if (status != TT_SUCCESS) return status;
  if (grad_scale == nullptr) return TT_ARG_ERROR;

  const int32_t batch = logits_dims->n;
  const int32_t classes = logits_dims->c;
  const float smoothing = params->label_smoothing;

  // Pass 1: the loss and the largest |p - t|, which sets the gradient's scale.
  float total = 0.0f;
  float max_abs = 0.0f;
  for (int32_t n = 0; n < batch; ++n) {
    const tinytrain_core::SoftmaxRow row(logits + n * classes, classes, logits_quant->scale);
    total += row.CrossEntropy(labels[n], smoothing);
    for (int32_t c = 0; c < classes; ++c) {
      max_abs = fmaxf(max_abs, fabsf(row.Gradient(c, labels[n], smoothing)));
    }
  }
  const float inv_batch = 1.0f / static_cast<float>(batch);
  *loss = total * inv_batch;
  // The 1/batch factor goes into the scale, not the int8 values, so small
  // batches and large ones use the same 254 levels.
  const float row_scale = max_abs > 0.0f ? max_abs / 127.0f : 1.0f / 127.0f;
  *grad_scale = row_scale * inv_batch;

  // Pass 2: quantize (p - t) / row_scale, rounded to nearest.
  const float inv_row_scale = 1.0f / row_scale;
  for (int32_t n = 0; n < batch; ++n) {
    const tinytrain_core::SoftmaxRow row(logits + n * classes, classes, logits_quant->scale);
    for (int32_t c = 0; c < classes; ++c) {
      const float q = roundf(row.Gradient(c, labels[n], smoothing) * inv_row_scale);
      grad[n * classes + c] = static_cast<int8_t>(fminf(127.0f, fmaxf(-127.0f, q)));
    }
  }
  return TT_SUCCESS;
}

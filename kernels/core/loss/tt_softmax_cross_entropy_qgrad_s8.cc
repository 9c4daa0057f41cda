#include "../tt_functions.h"
#include "softmax_cross_entropy_row.h"

extern "C" tt_status tt_softmax_cross_entropy_qgrad_s8(
    const tt_softmax_cross_entropy_params* params, const tt_quant_params* logits_quant,
    const tt_dims* logits_dims, const int8_t* logits, const int32_t* labels, float* loss,
    int8_t* grad, float* grad_scale) {
  if (!tinytrain_core::ValidSoftmaxCrossEntropyArgs(params, logits_quant, logits_dims, logits, labels, loss, grad) ||
      grad_scale == nullptr) {
    return TT_ARG_ERROR;
  }
  const tinytrain_core::SoftmaxCrossEntropyShape shape{*params, *logits_quant, *logits_dims};
  return tinytrain_core::SoftmaxCrossEntropyQgrad(shape, logits, labels, loss, grad, grad_scale);
}

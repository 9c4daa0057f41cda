/* Internal to the loss functions: the softmax of one row of int8 logits. */
#ifndef TINYTRAIN_KERNELS_CORE_LOSS_SOFTMAX_CROSS_ENTROPY_ROW_H_
#define TINYTRAIN_KERNELS_CORE_LOSS_SOFTMAX_CROSS_ENTROPY_ROW_H_

#include <math.h>
#include <stdint.h>

#include "../tt_functions.h"

namespace tinytrain_core {

// Keeps a row's max and partition sum, not its probabilities, so both loss
// variants recompute p_c on demand and need no scratch row. Exponents are
// scale * (q_c - max_q) <= 0, so expf never overflows.
class SoftmaxRow {
 public:
  SoftmaxRow(const int8_t* logits, int32_t classes, float scale)
      : logits_(logits), classes_(classes), scale_(scale), max_q_(logits[0]) {
    for (int32_t c = 1; c < classes; ++c) {
      if (logits[c] > max_q_) max_q_ = logits[c];
    }
    float sum = 0.0f;
    for (int32_t c = 0; c < classes; ++c) sum += Unnormalized(c);
    log_sum_ = logf(sum);  // sum >= 1: the max term is exp(0).
    inv_sum_ = 1.0f / sum;
  }

  float Probability(int32_t c) const { return Unnormalized(c) * inv_sum_; }

  // Smoothed one-hot target: (1 - e) * [c == label] + e / classes.
  float Target(int32_t c, int32_t label, float smoothing) const {
    return (c == label ? 1.0f - smoothing : 0.0f) + smoothing / static_cast<float>(classes_);
  }

  // -sum_c t_c log p_c, with log p_c = scale * (q_c - max_q) - log(sum).
  float CrossEntropy(int32_t label, float smoothing) const {
    float weighted_shift = 0.0f;
    for (int32_t c = 0; c < classes_; ++c) {
      weighted_shift += Target(c, label, smoothing) * Shift(c);
    }
    return log_sum_ - weighted_shift;
  }

  // d loss_row / d x_c before the batch mean, except that a logit saturated at
  // an int8 limit gets no gradient pushing it further out: its value cannot
  // follow, and weights chasing it would grow without bound (the logits'
  // scale is fixed during training), saturating every class.
  float Gradient(int32_t c, int32_t label, float smoothing) const {
    const float gradient = Probability(c) - Target(c, label, smoothing);
    const bool pushed_out = (logits_[c] == 127 && gradient < 0.0f) || (logits_[c] == -128 && gradient > 0.0f);
    return pushed_out ? 0.0f : gradient;
  }

 private:
  float Shift(int32_t c) const { return scale_ * static_cast<float>(logits_[c] - max_q_); }
  float Unnormalized(int32_t c) const { return expf(Shift(c)); }

  const int8_t* logits_;
  int32_t classes_;
  float scale_;
  int32_t max_q_;
  float log_sum_;
  float inv_sum_;
};

// Argument checks shared by both variants; labels are checked last, so every
// other mistake is reported before the data-dependent one.
inline tt_status CheckSoftmaxCrossEntropyArgs(const tt_softmax_cross_entropy_params* params,
                                              const tt_quant_params* logits_quant,
                                              const tt_dims* dims, const int8_t* logits,
                                              const int32_t* labels, const float* loss,
                                              const void* grad) {
  if (params == nullptr || logits_quant == nullptr || dims == nullptr || logits == nullptr ||
      labels == nullptr || loss == nullptr || grad == nullptr) {
    return TT_ARG_ERROR;
  }
  if (dims->n < 1 || dims->c < 2 || dims->h != 1 || dims->w != 1) return TT_ARG_ERROR;
  if (!(logits_quant->scale > 0.0f) || !(params->label_smoothing >= 0.0f) ||
      !(params->label_smoothing < 1.0f)) {
    return TT_ARG_ERROR;
  }
  if (tt_first_label_out_of_range(labels, dims->n, dims->c) >= 0) return TT_LABEL_OUT_OF_RANGE;
  return TT_SUCCESS;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_LOSS_SOFTMAX_CROSS_ENTROPY_ROW_H_

/* Internal to the loss functions: the softmax of one row of int8 logits. */
#ifndef TINYTRAIN_KERNELS_CORE_LOSS_SOFTMAX_CROSS_ENTROPY_ROW_H_
#define TINYTRAIN_KERNELS_CORE_LOSS_SOFTMAX_CROSS_ENTROPY_ROW_H_

#include <math.h>
#include <stdint.h>

#include "../common/tt_math.h"
#include "../tt_functions.h"
#include "saturation.h"

namespace tinytrain_core {

// Keeps a row's max and partition sum, not its probabilities, so both loss
// variants recompute p_c on demand and need no scratch row. Exponents are
// scale * (q_c - max_q) <= 0, so exp never overflows. tt_expf and tt_logf, not libm's:
// the same bits on every target (common/tt_math.h).
class SoftmaxRow {
 public:
  SoftmaxRow(const int8_t* logits, int32_t classes, float scale)
      : logits_(logits), classes_(classes), scale_(scale), max_q_(logits[0]) {
    for (int32_t c = 1; c < classes; ++c) {
      if (logits[c] > max_q_) max_q_ = logits[c];
    }
    float sum = 0.0f;
    for (int32_t c = 0; c < classes; ++c) sum += Unnormalized(c);
    log_sum_ = tt_logf(sum);  // sum >= 1: the max term is exp(0).
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
  // an int8 limit gets no gradient pushing it further out (saturation.h):
  // otherwise every class would end up saturated.
  float Gradient(int32_t c, int32_t label, float smoothing) const {
    return UnlessPushedOut(logits_[c], Probability(c) - Target(c, label, smoothing));
  }

 private:
  float Shift(int32_t c) const { return scale_ * static_cast<float>(logits_[c] - max_q_); }
  float Unnormalized(int32_t c) const { return tt_expf(Shift(c)); }

  const int8_t* logits_;
  int32_t classes_;
  float scale_;
  int32_t max_q_;
  float log_sum_;
  float inv_sum_;
};

// Argument checks shared by both variants. Labels are checked by the bodies,
// after these: every other mistake is reported before the data-dependent one.
inline bool ValidSoftmaxCrossEntropyArgs(const tt_softmax_cross_entropy_params* params,
                                         const tt_quant_params* logits_quant, const tt_dims* dims,
                                         const int8_t* logits, const int32_t* labels, const float* loss,
                                         const void* grad) {
  if (params == nullptr || logits_quant == nullptr || dims == nullptr || logits == nullptr ||
      labels == nullptr || loss == nullptr || grad == nullptr) {
    return false;
  }
  if (dims->n < 1 || dims->c < 2 || dims->h != 1 || dims->w != 1) return false;
  return logits_quant->scale > 0.0f && params->label_smoothing >= 0.0f && params->label_smoothing < 1.0f;
}

// The bodies of both variants over a shape S with members params,
// logits_quant and logits (n = batch, c = classes): run-time values in the
// generic functions, static constexpr ones in a generated kernel.
struct SoftmaxCrossEntropyShape {
  tt_softmax_cross_entropy_params params;
  tt_quant_params logits_quant;
  tt_dims logits;
};

// tt_softmax_cross_entropy_s8 after its argument checks.
template <typename S>
tt_status SoftmaxCrossEntropy(const S& s, const int8_t* logits, const int32_t* labels, float* loss, float* grad) {
  const int32_t batch = s.logits.n;
  const int32_t classes = s.logits.c;
  if (tt_first_label_out_of_range(labels, batch, classes) >= 0) return TT_LABEL_OUT_OF_RANGE;
  const float inv_batch = 1.0f / static_cast<float>(batch);
  const float smoothing = s.params.label_smoothing;
  float total = 0.0f;
  for (int32_t n = 0; n < batch; ++n) {
    const SoftmaxRow row(logits + n * classes, classes, s.logits_quant.scale);
    total += row.CrossEntropy(labels[n], smoothing);
    for (int32_t c = 0; c < classes; ++c) {
      grad[n * classes + c] = row.Gradient(c, labels[n], smoothing) * inv_batch;
    }
  }
  *loss = total * inv_batch;
  return TT_SUCCESS;
}

// tt_softmax_cross_entropy_qgrad_s8 after its argument checks.
template <typename S>
tt_status SoftmaxCrossEntropyQgrad(const S& s, const int8_t* logits, const int32_t* labels, float* loss,
                                   int8_t* grad, float* grad_scale) {
  const int32_t batch = s.logits.n;
  const int32_t classes = s.logits.c;
  if (tt_first_label_out_of_range(labels, batch, classes) >= 0) return TT_LABEL_OUT_OF_RANGE;
  const float smoothing = s.params.label_smoothing;

  // Pass 1: the loss and the largest |p - t|, which sets the gradient's scale.
  float total = 0.0f;
  float max_abs = 0.0f;
  for (int32_t n = 0; n < batch; ++n) {
    const SoftmaxRow row(logits + n * classes, classes, s.logits_quant.scale);
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
    const SoftmaxRow row(logits + n * classes, classes, s.logits_quant.scale);
    for (int32_t c = 0; c < classes; ++c) {
      const float q = roundf(row.Gradient(c, labels[n], smoothing) * inv_row_scale);
      grad[n * classes + c] = static_cast<int8_t>(fminf(127.0f, fmaxf(-127.0f, q)));
    }
  }
  return TT_SUCCESS;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_LOSS_SOFTMAX_CROSS_ENTROPY_ROW_H_

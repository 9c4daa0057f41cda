#include "../common/grad_io.h"
#include "../common/tt_math.h"
#include "../tt_functions.h"
#include "saturation.h"

namespace {

// log(1 + exp(-|z|)) and sigmoid(z) from one exponent of a non-positive argument: no overflow.
struct Logit {
  float z;
  float e;  // exp(-|z|), in (0, 1]
  explicit Logit(float value) : z(value), e(tinytrain_core::tt_expf(value < 0.0f ? value : -value)) {}
  float Sigmoid() const { return z >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e); }
  float Loss(int32_t label) const { return (z > 0.0f ? z : 0.0f) - static_cast<float>(label) * z + Log1pE(); }
  // log(1 + e). Forming 1 + e loses e's low bits, which are all of a confident sample's loss: below
  // 0.05 the series e - e^2/2 + e^3/3 - e^4/4 (truncation < e^5/5, a relative 1.3e-6 at most) instead.
  float Log1pE() const {
    if (e >= 0.05f) return tinytrain_core::tt_logf(1.0f + e);
    return e * (1.0f - e * (0.5f - e * (1.0f / 3.0f - e * 0.25f)));
  }
};

}  // namespace

extern "C" tt_status tt_binary_cross_entropy_s8(const tt_quant_params* logits_quant, int32_t batch, const int8_t* logits,
                                                const int32_t* labels, float* loss, tt_grad_out* grad) {
  if (logits_quant == nullptr || !(logits_quant->scale > 0.0f) || batch < 1 || logits == nullptr || labels == nullptr ||
      loss == nullptr || !tinytrain_core::ValidGradOut(grad)) {
    return TT_ARG_ERROR;
  }
  if (tt_first_label_out_of_range(labels, batch, 2) >= 0) return TT_LABEL_OUT_OF_RANGE;
  const auto logit = [&](int32_t i) {
    return Logit(logits_quant->scale * static_cast<float>(logits[i] - logits_quant->zero_point));
  };
  float sum = 0.0f;
  for (int32_t i = 0; i < batch; ++i) sum += logit(i).Loss(labels[i]);
  *loss = sum / static_cast<float>(batch);
  const float inv_batch = 1.0f / static_cast<float>(batch);
  tinytrain_core::WriteGrad(*grad, [&](auto& sink) {
    for (int32_t i = 0; i < batch; ++i) {
      const float gradient = (logit(i).Sigmoid() - static_cast<float>(labels[i])) * inv_batch;
      sink(tinytrain_core::UnlessPushedOut(logits[i], gradient));
    }
  });
  return TT_SUCCESS;
}

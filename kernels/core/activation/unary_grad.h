/* Internal to the kernel core: the body of tt_unary_grad_s8, instantiated by
 * the generic function with run-time params and by generated kernels
 * (tinytrain_tflm/firmware/codegen.py) with static constexpr ones, so the
 * function switch folds away. The body assumes the generic checks passed. */
#ifndef TINYTRAIN_KERNELS_CORE_ACTIVATION_UNARY_GRAD_H_
#define TINYTRAIN_KERNELS_CORE_ACTIVATION_UNARY_GRAD_H_

#include <math.h>
#include <stdint.h>

#include "../tt_functions.h"
#include "../tt_schema_generated.h"

namespace tinytrain_core {

struct UnaryGradShape {
  tt_unary_params params;
  int32_t count;
};

inline bool ValidUnaryParams(const tt_unary_params* params) {
  return params != nullptr && params->function >= TT_UNARY_LOGISTIC && params->function <= TT_UNARY_LEAKY_RELU &&
         isfinite(params->alpha) && params->saved.scale > 0.0f && params->saved.zero_point >= -128 &&
         params->saved.zero_point <= 127;
}

// f' at the real value of one saved element (see tt_unary_grad_s8).
inline float UnaryDerivative(const tt_unary_params& params, int8_t saved) {
  const float v = params.saved.scale * static_cast<float>(saved - params.saved.zero_point);
  switch (params.function) {
    case TT_UNARY_LOGISTIC:
      return v * (1.0f - v);
    case TT_UNARY_TANH:
      return 1.0f - v * v;
    case TT_UNARY_HARD_SWISH:
      // x relu6(x + 3) / 6; on the kinks TF's relu6 gradient is 0, giving 0 at -3 and 1 at 3.
      if (v <= -3.0f) return 0.0f;
      if (v >= 3.0f) return 1.0f;
      return (2.0f * v + 3.0f) / 6.0f;
    default:  // TT_UNARY_LEAKY_RELU; x = 0 takes the slope, as TF's LeakyReluGrad does.
      return v > 0.0f ? 1.0f : params.alpha;
  }
}

// tt_unary_grad_s8.
template <typename S, typename Grad, typename Sink>
void UnaryGrad(const S& s, const int8_t* saved, const Grad& grad, Sink&& sink) {
  for (int32_t i = 0; i < s.count; ++i) sink(UnaryDerivative(s.params, saved[i]) * grad[i]);
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_ACTIVATION_UNARY_GRAD_H_

/* Internal to the kernel core: the body of tt_bias_grad, instantiated by the
 * generic function with a BiasGradShape of run-time values and by generated
 * kernels with static constexpr members of the same names and types. */
#ifndef TINYTRAIN_KERNELS_CORE_BIAS_BIAS_GRAD_H_
#define TINYTRAIN_KERNELS_CORE_BIAS_BIAS_GRAD_H_

#include <stdint.h>

#include "../common/s8_grad_sums.h"
#include "../tt_types.h"

namespace tinytrain_core {

struct BiasGradShape {
  tt_dims grad_output;         // rows = n * h * w, c channels
  int32_t channels_to_update;  // in [1, c]
};

// An int8 gradient's sums are exact integer sums of its levels, times its scale.
template <typename S, typename Grad, typename Sink>
void BiasGrad(const S& s, const Grad& grad, Sink&& sink) {
  const int32_t rows = s.grad_output.n * s.grad_output.h * s.grad_output.w;
  const int32_t channels = s.grad_output.c;
  if constexpr (ReadsS8<Grad>::value) {
    WithExactAccumulator(rows, kLargestLevel, [&](auto zero) {
      using Sum = decltype(zero);
      for (int32_t c = 0; c < s.channels_to_update; ++c) {
        Sum sum = 0;
        for (int32_t row = 0; row < rows; ++row) sum += grad.data[row * channels + c];
        sink(SumToFloat(sum) * grad.scale);
      }
    });
  } else {
    for (int32_t c = 0; c < s.channels_to_update; ++c) {
      float sum = 0.0f;
      for (int32_t row = 0; row < rows; ++row) sum += grad[row * channels + c];
      sink(sum);
    }
  }
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_BIAS_BIAS_GRAD_H_

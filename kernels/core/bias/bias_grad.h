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

// Channel c of a [rows, channels] gradient summed over its rows. An int8 gradient's sum is the exact
// integer sum of its levels, times its scale; a float32 one is summed in row order.
template <typename Grad>
float ChannelSum(const Grad& grad, int32_t rows, int32_t channels, int32_t c) {
  if constexpr (ReadsS8<Grad>::value) {
    float sum = 0.0f;
    WithExactAccumulator(rows, kLargestLevel, [&](auto zero) {
      decltype(zero) levels = 0;
      const int8_t* level = grad.data + c;
      int32_t row = 0;
      // Four rows a pass (an exact sum in any order): 11 instructions per 4 levels on a Cortex-M7, where
      // a loop per level takes 6. A fused bias update sums every row of its layer's output gradient.
      for (; row + 4 <= rows; row += 4, level += 4 * channels) {
        levels += level[0] + level[channels] + level[2 * channels] + level[3 * channels];
      }
      for (; row < rows; ++row, level += channels) levels += *level;
      sum = SumToFloat(levels) * grad.scale;
    });
    return sum;
  } else {
    float sum = 0.0f;
    for (int32_t row = 0; row < rows; ++row) sum += grad[row * channels + c];
    return sum;
  }
}

template <typename S, typename Grad, typename Sink>
void BiasGrad(const S& s, const Grad& grad, Sink&& sink) {
  const int32_t rows = s.grad_output.n * s.grad_output.h * s.grad_output.w;
  for (int32_t c = 0; c < s.channels_to_update; ++c) sink(ChannelSum(grad, rows, s.grad_output.c, c));
}

// A reader whose element c is ChannelSum(grad, ..., c): a bias gradient computed where it is read, so
// an update reads the layer's output gradient and no bias-gradient tensor exists.
template <typename Grad>
struct ChannelSumReader {
  Grad grad;
  int32_t rows;
  int32_t channels;
  float operator[](int32_t c) const { return ChannelSum(grad, rows, channels, c); }
};

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_BIAS_BIAS_GRAD_H_

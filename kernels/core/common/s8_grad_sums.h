/* Internal to the kernel core: the integer sums of the layer gradients when the gradient they read
 * is int8 (tt_grad_type TT_GRAD_S8). An int8 gradient is levels times one scale, so a sum over
 * its elements times int8 operands is an integer sum times float factors: the kernels add levels
 * as integers and apply the float scales once per output element. Integer sums are exact, so every
 * order of addition, and every accumulator wide enough, gives the same bits: an optimized version
 * (kernels/cmsis_nn) may use dual 16-bit MACs and still match this reference exactly.
 *
 * Where a per-channel filter scale sits inside the sum (the conv input gradient sums over output
 * channels, each with its scale), the levels are first rescaled to integers against the largest
 * scale: RescaledLevels. That is the one approximation here, far below an int8 gradient's step. */
#ifndef TINYTRAIN_KERNELS_CORE_COMMON_S8_GRAD_SUMS_H_
#define TINYTRAIN_KERNELS_CORE_COMMON_S8_GRAD_SUMS_H_

#include <stdint.h>

#include "../tt_types.h"
#include "conv_grad_loops.h"
#include "grad_io.h"
#include "tt_math.h"

namespace tinytrain_core {

// Whether a gradient reader reads int8 levels (grad.data) times grad.scale.
template <typename Grad>
struct ReadsS8 {
  static constexpr bool value = false;
};
template <>
struct ReadsS8<S8GradReader> {
  static constexpr bool value = true;
};

// |level| <= 128 and |int8 operand| <= 128; a centered input (q - zero point) is within 255.
constexpr int64_t kLargestLevel = 128;
constexpr int64_t kLargestCentered = 255;

// Calls body(int32_t{}) when `terms` products of magnitude at most `largest_term` sum without
// overflowing int32, else body(int64_t{}). Both give the same exact sum: a layer an MCU holds takes
// int32, the host's reference may take either.
template <typename Body>
void WithExactAccumulator(int64_t terms, int64_t largest_term, Body&& body) {
  if (terms * largest_term <= INT32_MAX) {
    body(int32_t{});
  } else {
    body(int64_t{});
  }
}

// An exact integer sum as float32: int32 by the FPU's conversion; int64 (beyond any MCU layer) as its
// high and low parts, with int32 conversions only (int64 to float is a library call on Cortex-M).
inline float SumToFloat(int32_t sum) { return static_cast<float>(sum); }
inline float SumToFloat(int64_t sum) {
  return static_cast<float>(static_cast<int32_t>(sum >> 16)) * 65536.0f + static_cast<float>(static_cast<int32_t>(sum & 0xFFFF));
}

// The conv input gradient's levels rescaled to the largest filter scale, as int16-sized integers:
// r(q, co) = (q * M[co] + 2^14) >> 15 (rounded half up), with the channel's integer multiplier
// M[co] = RoundToInt(scale[co] * 2^(bits + 15) / max scale) <= 2^(bits + 22), so |r| <= 2^(bits + 7).
// bits is the largest <= 7 for which the `terms` products r * w (|w| <= 128) an input-gradient
// element sums stay within half of int32: 16 - ceil(log2(terms)) (7 up to 512 terms, 5 for 1,280).
// The element is then Value(sum of r * w) = sum * (grad scale * max scale * 2^-bits). Rounding r
// costs at most 2^-(bits + 1) of the largest scale's level per term: 1/8,192 of an int8 level at
// 1,280 terms, against the int8 gradient's own step of 1/254 of its range.
class RescaledLevels {
 public:
  RescaledLevels(const FilterScales& scales, int32_t channels, int32_t terms, float grad_scale) : scales_(scales) {
    float largest = scales[0];
    for (int32_t c = 1; c < channels; ++c) largest = scales[c] > largest ? scales[c] : largest;
    int32_t bits = 16;
    for (int32_t capacity = 1; capacity < terms; capacity *= 2) --bits;
    bits = bits > 7 ? 7 : bits;
    unit_ = (1.0f / largest) * tt_exp2i(bits + 15);
    value_unit_ = grad_scale * (largest * tt_exp2i(-bits));
  }
  // Channel co's integer multiplier M[co].
  int32_t Multiplier(int32_t co) const { return RoundToInt(scales_[co] * unit_); }
  static int32_t Rescale(int32_t level, int32_t multiplier) { return (level * multiplier + (1 << 14)) >> 15; }
  int32_t operator()(int8_t level, int32_t co) const { return Rescale(level, Multiplier(co)); }
  float Value(int32_t sum) const { return static_cast<float>(sum) * value_unit_; }

 private:
  FilterScales scales_;
  float unit_;
  float value_unit_;
};

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_COMMON_S8_GRAD_SUMS_H_

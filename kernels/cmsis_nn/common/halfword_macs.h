/* Internal to kernels/cmsis_nn: the int8 x int16 inner loop of its pointwise int8-gradient kernels,
 * on the DSP extension's SXTB16 and halfword MACs (SMLABB, SMLATB, SMLABT, SMLATT). Integer sums are
 * exact, so these loops give the reference's (kernels/core) sums in any order. */
#ifndef TINYTRAIN_KERNELS_CMSIS_NN_COMMON_HALFWORD_MACS_H_
#define TINYTRAIN_KERNELS_CMSIS_NN_COMMON_HALFWORD_MACS_H_

#include <stdint.h>
#include <string.h>

// The cmsis-nn kernel set's targets (Cortex-M4, M7, M55) all have the DSP extension.
#if !defined(__ARM_FEATURE_DSP)
#error "kernels/cmsis_nn needs the DSP extension (SXTB16 and the halfword MACs)"
#endif
#include <arm_acle.h>

namespace tinytrain_cmsis_nn {

// SXTB16 of bytes >> 8 (bytes 1 and 3 sign-extended into the halves), the shift folded into the
// instruction's rotation, which GCC does not do on its own.
inline uint32_t OddBytes(uint32_t bytes) {
  uint32_t halves;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(halves) : "r"(bytes));
  return halves;
}

// Bytes 0 and 2 sign-extended into the halves.
inline uint32_t EvenBytes(uint32_t bytes) { return __sxtb16(bytes); }

// Four channels' sums for two factors: the 8 int32 accumulators of AddFourChannels.
struct FourChannelSums {
  int32_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;  // times the low halves' factor
  int32_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;  // times the high halves'
};

// Adds four int8 values (as one 32-bit word) times the two 16-bit factors of `factor` (low and high
// half) to sums.c* and sums.d*: SXTB16 sign-extends values 0 and 2 (then 1 and 3) into 16-bit halves,
// and each halfword MAC multiplies one half by one factor.
inline void AddFourValues(uint32_t values, uint32_t factor, FourChannelSums& sums) {
  const uint32_t even = EvenBytes(values);  // values 0 and 2
  const uint32_t odd = OddBytes(values);    // values 1 and 3
  sums.c0 = __smlabb(even, factor, sums.c0);
  sums.c2 = __smlatb(even, factor, sums.c2);
  sums.d0 = __smlabt(even, factor, sums.d0);
  sums.d2 = __smlatt(even, factor, sums.d2);
  sums.c1 = __smlabb(odd, factor, sums.c1);
  sums.c3 = __smlatb(odd, factor, sums.c3);
  sums.d1 = __smlabt(odd, factor, sums.d1);
  sums.d3 = __smlatt(odd, factor, sums.d3);
}

// For i in [0, count): four int8 values at row + i * stride (channels c..c+3) times the two 16-bit
// factors of factors(i), added to sums (AddFourValues). Two rows per iteration: with 8 accumulators
// the M-profile's registers hold one row's pointers and temporaries but spill some loop state, which
// two rows then reload half as often: 16 MACs for 3 loads, 4 SXTB16 and the loop.
template <typename Factors>
inline void AddFourChannels(const int8_t* row, int32_t stride, int32_t count, Factors&& factors,
                            FourChannelSums& sums) {
  int32_t i = 0;
  for (; i + 2 <= count; i += 2, row += 2 * stride) {
    uint32_t first, second;
    memcpy(&first, row, 4);
    memcpy(&second, row + stride, 4);
    AddFourValues(first, factors(i), sums);
    AddFourValues(second, factors(i + 1), sums);
  }
  if (i < count) {
    uint32_t last;
    memcpy(&last, row, 4);
    AddFourValues(last, factors(i), sums);
  }
}

// One int32 sum per channel of a four-channel word. AddProducts adds each channel's product of its
// 16-bit halves in a and b, as EvenBytes and OddBytes split words (channels 0, 2 in the even
// halves, 1, 3 in the odd ones): one halfword MAC per channel.
struct FourSums {
  int32_t sum0, sum1, sum2, sum3;
  void AddProducts(uint32_t a_even, uint32_t a_odd, uint32_t b_even, uint32_t b_odd) {
    sum0 = __smlabb(a_even, b_even, sum0);
    sum2 = __smlatt(a_even, b_even, sum2);
    sum1 = __smlabb(a_odd, b_odd, sum1);
    sum3 = __smlatt(a_odd, b_odd, sum3);
  }
  void Store(int32_t* sums) const {
    sums[0] = sum0;
    sums[1] = sum1;
    sums[2] = sum2;
    sums[3] = sum3;
  }
};

// The input for the filter gradients' row loops (AddFourLevelReads): each of the four channels its own
// input (a depthwise filter: one word of inputs), or one input for all four (a conv's input channel
// against four filters).
enum class RowInputs { kPerChannel, kShared };

// Adds level * (x - zero point) for four channels (one word of levels) over `count` reads along a row
// to sums[0..3], levels and inputs advancing by level_step and x_step: SXTB16 splits the levels into
// channels 0, 2 and 1, 3 as 16-bit halves, the centred inputs (|x - zero point| <= 255) are paired
// the same way, and each halfword MAC adds one channel's product. Not inlined: in a function of its
// own the loop's 13 live values fit the registers, where inlined into a kernel's gather they spill
// (25 instructions per read instead of 14 in the depthwise filter gradient, measured).
template <RowInputs kInputs>
__attribute__((noinline)) void AddFourLevelReads(const int8_t* levels, int32_t level_step, const int8_t* x,
                                                 int32_t x_step, int32_t count, int32_t zero_point, int32_t* sums) {
  const uint32_t zero_points = (static_cast<uint32_t>(zero_point) & 0xFFFFu) * 0x10001u;  // in both halves
  FourSums four{sums[0], sums[1], sums[2], sums[3]};
  const int8_t* const end = levels + count * level_step;
  for (; levels != end; levels += level_step, x += x_step) {
    uint32_t level_word;
    memcpy(&level_word, levels, 4);
    const uint32_t levels_even = EvenBytes(level_word), levels_odd = OddBytes(level_word);
    uint32_t inputs_even, inputs_odd;
    if constexpr (kInputs == RowInputs::kPerChannel) {
      uint32_t x_word;
      memcpy(&x_word, x, 4);
      inputs_even = __ssub16(EvenBytes(x_word), zero_points);
      inputs_odd = __ssub16(OddBytes(x_word), zero_points);
    } else {
      const uint32_t centered = static_cast<uint32_t>(*x - zero_point) & 0xFFFFu;
      inputs_even = inputs_odd = centered | (centered << 16);
    }
    four.AddProducts(levels_even, levels_odd, inputs_even, inputs_odd);
  }
  four.Store(sums);
}

}  // namespace tinytrain_cmsis_nn

#endif  // TINYTRAIN_KERNELS_CMSIS_NN_COMMON_HALFWORD_MACS_H_

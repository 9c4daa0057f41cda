/* Internal to kernels/cmsis_nn: the int8 x int16 inner loops of its int8-gradient kernels, on the DSP
 * extension's SXTB16, halfword MACs (SMLABB, SMLATB, SMLABT, SMLATT) and dual MAC (SMLAD), and, where the
 * core has Helium (MVE, the Cortex-M55), on its vector MACs (AddScaledRows). Integer sums are exact, so
 * these loops give the reference's (kernels/core) sums in any order. */
#ifndef TINYTRAIN_KERNELS_CMSIS_NN_COMMON_HALFWORD_MACS_H_
#define TINYTRAIN_KERNELS_CMSIS_NN_COMMON_HALFWORD_MACS_H_

#include <stdint.h>
#include <string.h>

// The cmsis-nn kernel set's targets (Cortex-M4, M7, M55) all have the DSP extension.
#if !defined(__ARM_FEATURE_DSP)
#error "kernels/cmsis_nn needs the DSP extension (SXTB16 and the halfword MACs)"
#endif
#include <arm_acle.h>

// Helium's integer instructions: the macro CMSIS-NN's kernels test, set by the same rule here for the files
// that include no CMSIS-NN header.
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && !defined(ARM_MATH_MVEI)
#define ARM_MATH_MVEI 1
#endif
#if defined(ARM_MATH_MVEI)
#include <arm_mve.h>
#endif

namespace tinytrain_cmsis_nn {

#if defined(ARM_MATH_MVEI)
// The int32 lanes of a Helium vector: AddScaledRows' channels per vector.
constexpr int32_t kLanes = 4;

// Where AddScaledRows finds row i's factor k: at factors[(i / 2) * pair_step + (i % 2) * odd_row + k * step].
// Steps, not a function of i: GCC then walks one pointer over them (from i it recomputed each address).
struct FactorSteps {
  int32_t pair_step;  // from rows 2j, 2j + 1 to rows 2j + 2, 2j + 3
  int32_t odd_row;    // from row 2j to row 2j + 1
  int32_t step;       // from factor k to factor k + 1 of a row
};

// For i < count: the int8 values at row + i * stride, kLanes consecutive channels (the lanes on in `lanes`
// when kPredicated: the others load 0 and read no memory, a row's last channels), widened to int32, times
// row i's factor k (FactorSteps), added to sums[k], k < kFactors: per row one VLDRB and kFactors VMLA
// (vector by scalar), kLanes products each, where the DSP extension's halfword MACs take one instruction a
// product. The sums stay in registers (GCC stored them on every row when the loop worked on sums itself).
template <int32_t kFactors, bool kPredicated, typename Factor>
__attribute__((always_inline)) inline void AddScaledRowsOf(const int8_t* row, int32_t stride, int32_t count,
                                                           mve_pred16_t lanes, const Factor* factors,
                                                           FactorSteps steps, int32x4_t* sums) {
  int32x4_t acc[kFactors];
#pragma GCC unroll 4
  for (int32_t k = 0; k < kFactors; ++k) acc[k] = sums[k];
  const int32_t step = steps.step, odd_row = steps.odd_row, pair_step = steps.pair_step;
  auto add = [&](const int8_t* at, const Factor* factor) {
    int32x4_t values;
    if constexpr (kPredicated) {
      values = vldrbq_z_s32(at, lanes);
    } else {
      values = vldrbq_s32(at);
    }
#pragma GCC unroll 4
    for (int32_t k = 0; k < kFactors; ++k) acc[k] = vmlaq_n_s32(acc[k], values, factor[k * step]);
  };
  const int8_t* const end = row + count / 2 * 2 * stride;
  for (; row != end; row += 2 * stride, factors += pair_step) {
    add(row, factors);
    add(row + stride, factors + odd_row);
  }
  if (count % 2 != 0) add(row, factors);
#pragma GCC unroll 4
  for (int32_t k = 0; k < kFactors; ++k) sums[k] = acc[k];
}

// AddScaledRowsOf for channels [0, channels) of the rows (at most kLanes): a block of fewer than kLanes
// channels predicated, a whole one not (a predicated load costs a VPST, and GCC rewrites the predicate
// on every row).
template <int32_t kFactors, typename Factor>
__attribute__((always_inline)) inline void AddScaledRows(const int8_t* row, int32_t stride, int32_t count,
                                                         int32_t channels, const Factor* factors, FactorSteps steps,
                                                         int32x4_t* sums) {
  if (channels >= kLanes) {
    AddScaledRowsOf<kFactors, false>(row, stride, count, 0, factors, steps, sums);
  } else {
    AddScaledRowsOf<kFactors, true>(row, stride, count, vctp32q(static_cast<uint32_t>(channels)), factors, steps, sums);
  }
}
#endif

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

// Sums of four factors (pixels, filters) for two channels, as AddPairedRows adds them: sums[q] is
// channel c's sum for factor q, sums[4 + q] channel c + 1's.
constexpr int32_t kPairedFactors = 4;

#if defined(ARM_MATH_MVEI)
// AddPairedRows on Helium: kLanes columns at a time, one vector of sums per factor (AddScaledRows), the
// factors read as the halfwords they are. The columns' sums go between sums' layout and the vectors by a
// gather and a scatter per block of columns, not per row.
__attribute__((noinline)) inline void AddPairedRows(const int8_t* row, int32_t stride, int32_t rows, int32_t columns,
                                                    const uint32_t* factors, int32_t* sums) {
  // Row i's factor q: the low (i even) or high (i odd) half of factors[(i / 2) * kPairedFactors + q].
  const int16_t* const halves = reinterpret_cast<const int16_t*>(factors);
  constexpr FactorSteps kHalves{2 * kPairedFactors, 1, 2};
  const uint32x4_t column_offsets = vidupq_n_u32(0, kPairedFactors);  // column j's sums, in words
  for (int32_t c = 0; c < columns; c += kLanes) {
    const mve_pred16_t lanes = vctp32q(static_cast<uint32_t>(columns - c));  // for the sums' gather and scatter
    int32x4_t vectors[kPairedFactors];
#pragma GCC unroll 4
    for (int32_t q = 0; q < kPairedFactors; ++q) {
      vectors[q] = vldrwq_gather_shifted_offset_z_s32(sums + c * kPairedFactors + q, column_offsets, lanes);
    }
    AddScaledRows<kPairedFactors>(row + c, stride, rows, columns - c, halves, kHalves, vectors);
#pragma GCC unroll 4
    for (int32_t q = 0; q < kPairedFactors; ++q) {
      vstrwq_scatter_shifted_offset_p_s32(sums + c * kPairedFactors + q, column_offsets, vectors[q], lanes);
    }
  }
}
#else
// row + 2 * stride in one instruction (ADD with a shifted register), which GCC does not emit here on
// its own: it keeps 2 * stride in a register of its own and spills loop state (AddPairedRows: 24
// instructions per row pair instead of 21).
inline const int8_t* AfterTwoRows(const int8_t* row, int32_t stride) {
  __asm__("add %0, %0, %1, lsl #1" : "+r"(row) : "r"(stride));
  return row;
}

// Adds, for each of `rows` rows (int8 values at row + i * stride) and each factor q < 4, value[i][c]
// times factor q of row i to sums[q] and value[i][c + 1] times it to sums[4 + q] (kChannels 2; with
// kChannels 1 channel c alone, sums[4..7] then hold nothing of use). The factors come in row pairs:
// factors[4 * k + q] holds row 2k's factor q in its low half and row 2k + 1's in its high half (0 when
// rows is odd and 2k + 1 is past the end, whose value is then not read). A row pair's two values of a
// channel become one halfword pair (SXTB16), so SMLAD adds both rows' products at once: 8 dual MACs
// per row pair for 16 products, on 2 loads of values; 21 instructions a row pair (objdump).
template <int32_t kChannels>
__attribute__((always_inline)) inline void AddPairedRowsOf(const int8_t* row, int32_t stride, int32_t rows,
                                                           const uint32_t* factors, int32_t* sums) {
  static_assert(kChannels == 1 || kChannels == 2, "one or two channels");
  int32_t c0 = sums[0], c1 = sums[1], c2 = sums[2], c3 = sums[3];
  int32_t d0 = sums[4], d1 = sums[5], d2 = sums[6], d3 = sums[7];
  // A row's values of channels c and c + 1 (byte 0 and 1; with kChannels 1, byte 0 alone).
  auto values = [](const int8_t* at) -> uint32_t {
    if constexpr (kChannels == 2) {
      uint16_t two;
      memcpy(&two, at, 2);
      return two;
    }
    return static_cast<uint8_t>(*at);
  };
  auto add = [&](uint32_t both, const uint32_t* four) {  // both: row 2k's values in bytes 0-1, 2k+1's in 2-3
    const uint32_t first = EvenBytes(both);  // channel c of both rows
    c0 = __smlad(first, four[0], c0);
    c1 = __smlad(first, four[1], c1);
    c2 = __smlad(first, four[2], c2);
    c3 = __smlad(first, four[3], c3);
    if constexpr (kChannels == 2) {
      const uint32_t second = OddBytes(both);  // channel c + 1 of both rows
      d0 = __smlad(second, four[0], d0);
      d1 = __smlad(second, four[1], d1);
      d2 = __smlad(second, four[2], d2);
      d3 = __smlad(second, four[3], d3);
    }
  };
  const uint32_t* const end = factors + (rows / 2) * kPairedFactors;
  for (; factors != end; factors += kPairedFactors) {
    const uint32_t both = values(row) | (values(row + stride) << 16);
    row = AfterTwoRows(row, stride);
    add(both, factors);
  }
  if (rows % 2 != 0) add(values(row), end);  // (`end`, not `factors`: GCC then keeps no copy of it)
  sums[0] = c0, sums[1] = c1, sums[2] = c2, sums[3] = c3;
  sums[4] = d0, sums[5] = d1, sums[6] = d2, sums[7] = d3;
}

// AddPairedRowsOf for `columns` columns of the rows from `row` on, two at a time (a last lone one
// alone): column c's sums at sums + c * kPairedFactors. Not inlined: alone, the loop's values fit the
// registers (see AddFourLevelReads), and one call per chunk of rows, rather than per column pair,
// saves about 30 instructions of entry and exit a pair.
__attribute__((noinline)) inline void AddPairedRows(const int8_t* row, int32_t stride, int32_t rows, int32_t columns,
                                                    const uint32_t* factors, int32_t* sums) {
  int32_t c = 0;
  for (; c + 2 <= columns; c += 2) AddPairedRowsOf<2>(row + c, stride, rows, factors, sums + c * kPairedFactors);
  if (c < columns) AddPairedRowsOf<1>(row + c, stride, rows, factors, sums + c * kPairedFactors);
}
#endif

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

#if defined(ARM_MATH_MVEI)
// Adds level * (x - zero point) for four channels over `count` reads along a row to sums[0..3], levels and
// inputs advancing by level_step and x_step, on Helium: per read one VLDRB of the four levels widened to
// int32 and a VMLA by the centred input (kShared), or a VLDRB of the four inputs, a VSUB of the zero point,
// a VMUL and a VADD (kPerChannel: Helium has no integer multiply-accumulate of two vectors lane by lane),
// where the DSP version takes SXTB16 splits and a halfword MAC per channel.
template <RowInputs kInputs>
__attribute__((noinline)) void AddFourLevelReads(const int8_t* levels, int32_t level_step, const int8_t* x,
                                                 int32_t x_step, int32_t count, int32_t zero_point, int32_t* sums) {
  int32x4_t four = vldrwq_s32(sums);
  const int8_t* const end = levels + count * level_step;
  for (; levels != end; levels += level_step, x += x_step) {
    const int32x4_t level = vldrbq_s32(levels);
    if constexpr (kInputs == RowInputs::kPerChannel) {
      four = vaddq_s32(four, vmulq_s32(level, vsubq_n_s32(vldrbq_s32(x), zero_point)));
    } else {
      four = vmlaq_n_s32(four, level, *x - zero_point);
    }
  }
  vstrwq_s32(sums, four);
}
#else
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

#endif

}  // namespace tinytrain_cmsis_nn

#endif  // TINYTRAIN_KERNELS_CMSIS_NN_COMMON_HALFWORD_MACS_H_

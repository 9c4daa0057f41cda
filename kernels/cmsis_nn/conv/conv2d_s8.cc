// tt_conv2d_s8's kernel for Cortex-M (the cmsis-nn kernel set of tinytrain_tflm.firmware.device): CMSIS-NN's s8
// convolution, one call per output row (or per image), with the model's per-channel multipliers and shifts (see
// ../common/conv_rows.h for why per row and why the results equal the portable core's). Without Helium, a 1x1
// stride-1 call goes to PointwiseConv instead: CMSIS-NN's DSP matrix product sums every filter row again on each
// call for the input offset, which a tiled stage's per-tile calls and the per-row calls of an overlapped output
// pay many times; PointwiseConv adds the offset to the pixels' halfwords and sums nothing twice. Its integer
// sums are exact and it requantizes with CMSIS-NN's own arm_nn_requantize, so its outputs are the CMSIS-NN
// path's, and the portable core's.
#include <string.h>

#include "../../core/common/conv_forward.h"
#include "../../core/tt_functions.h"
#include "../common/conv_rows.h"
#include "../common/halfword_macs.h"
#include "arm_nnfunctions.h"
#include "arm_nnsupportfunctions.h"

namespace cm = tinytrain_cmsis_nn;

#if !defined(ARM_MATH_MVEI)  // DSP-extension code: with Helium, CMSIS-NN's MVE paths are kept
namespace {

// Bytes 1 and 3 sign-extended into the halves, each plus its half of `offsets` (SXTAB16 with the rotation, which
// GCC does not fold on its own).
inline uint32_t OddBytesPlus(uint32_t offsets, uint32_t bytes) {
  uint32_t halves;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(halves) : "r"(offsets), "r"(bytes));
  return halves;
}

// The word at `at`, `at` then past it. The empty asm keeps each chunk's pointer step: GCC would merge four chunks'
// steps into one and address the other pixel and filter at depth + 4, + 8 and + 12, offsets it keeps on the stack.
inline uint32_t LoadAndStep(const int8_t*& at) {
  uint32_t word;
  memcpy(&word, at, 4);
  at += 4;
  __asm__("" : "+r"(at));
  return word;
}

// Four channels of each of kPixels pixels (plus the input offset) times the same four channels of each of kFilters
// filter rows, added to sums[p * kFilters + f]; x and w advance past the four, and pixel p + 1 and filter f + 1 lie
// `depth` bytes after p and f (then next = depth - 4 after the advanced pointers). The offset goes into the pixels'
// 16-bit halves (SXTAB16; |x + offset| <= 255), so the sums need no filter-row sum times the offset, which
// CMSIS-NN's DSP matrix product computes again on every call.
template <int32_t kPixels, int32_t kFilters>
__attribute__((always_inline)) inline void AddFourDepths(const int8_t*& x, const int8_t*& w, int32_t next,
                                                         uint32_t offsets, int32_t (&sums)[kPixels * kFilters]) {
  uint32_t word = LoadAndStep(w);
  const uint32_t w0_even = cm::EvenBytes(word), w0_odd = cm::OddBytes(word);
  uint32_t x_even[kPixels], x_odd[kPixels];
  word = LoadAndStep(x);
#pragma GCC unroll 2
  for (int32_t p = 0; p < kPixels; ++p) {
    if (p > 0) memcpy(&word, x + next, 4);
    x_even[p] = __sxtab16(offsets, word);
    x_odd[p] = OddBytesPlus(offsets, word);
    sums[p * kFilters] = __smlad(x_even[p], w0_even, sums[p * kFilters]);
    sums[p * kFilters] = __smlad(x_odd[p], w0_odd, sums[p * kFilters]);
  }
  if constexpr (kFilters == 2) {
    memcpy(&word, w + next, 4);
    const uint32_t w1_even = cm::EvenBytes(word), w1_odd = cm::OddBytes(word);
#pragma GCC unroll 2
    for (int32_t p = 0; p < kPixels; ++p) {
      sums[p * kFilters + 1] = __smlad(x_even[p], w1_even, sums[p * kFilters + 1]);
      sums[p * kFilters + 1] = __smlad(x_odd[p], w1_odd, sums[p * kFilters + 1]);
    }
  }
}

// Adds the sum over `depth` channels of (x + offset) * w to sums[p * kFilters + f] for kPixels pixels from x and
// kFilters filter rows from w, `depth` bytes apart (offsets: the input offset in both halves).
template <int32_t kPixels, int32_t kFilters>
__attribute__((always_inline)) inline void AddDepths(const int8_t* x, const int8_t* w, int32_t depth, uint32_t offsets,
                                                     int32_t input_offset, int32_t (&sums)[kPixels * kFilters]) {
  const int8_t* const blocks_end = x + (depth & ~15);
  while (x != blocks_end) {  // 16 channels an iteration: the loop's own instructions amortized
    AddFourDepths<kPixels, kFilters>(x, w, depth - 4, offsets, sums);
    AddFourDepths<kPixels, kFilters>(x, w, depth - 4, offsets, sums);
    AddFourDepths<kPixels, kFilters>(x, w, depth - 4, offsets, sums);
    AddFourDepths<kPixels, kFilters>(x, w, depth - 4, offsets, sums);
  }
  for (int32_t c = depth & ~15; c + 4 <= depth; c += 4) AddFourDepths<kPixels, kFilters>(x, w, depth - 4, offsets, sums);
  for (int32_t c = depth & ~3; c < depth; ++c, ++x, ++w) {
#pragma GCC unroll 2
    for (int32_t p = 0; p < kPixels; ++p) {
#pragma GCC unroll 2
      for (int32_t f = 0; f < kFilters; ++f) sums[p * kFilters + f] += (x[p * depth] + input_offset) * w[f * depth];
    }
  }
}

// The outputs of kFilters filters (from w, `depth` bytes apart) for `pixels` pixels of `depth` channels, to
// out[p * filters + f]: two pixels at a time, the bias plus AddDepths, requantized as CMSIS-NN's
// (arm_nn_requantize), offset and clamped.
template <int32_t kFilters>
__attribute__((always_inline)) inline void PointwiseFilters(const tt_conv_params& params, const int8_t* input,
                                                            int32_t pixels, int32_t depth, const int8_t* w,
                                                            const int32_t* bias, const int32_t* multiplier,
                                                            const int32_t* shift, int32_t filters, int8_t* out) {
  const int32_t input_offset = params.input_offset;
  const uint32_t offsets = (static_cast<uint32_t>(input_offset) & 0xFFFFu) * 0x10001u;  // in both halves
  // Copied out of the arguments: the int8 stores below could alias them, and would reload them per output.
  int32_t start[kFilters], mult[kFilters], exponent[kFilters];
#pragma GCC unroll 2
  for (int32_t f = 0; f < kFilters; ++f) {
    start[f] = bias != nullptr ? bias[f] : 0;
    mult[f] = multiplier[f];
    exponent[f] = shift[f];
  }
  const int32_t output_offset = params.output_offset, low = params.activation_min, high = params.activation_max;
  const auto emit = [&](const int32_t* sums, int8_t* to) {
#pragma GCC unroll 2
    for (int32_t f = 0; f < kFilters; ++f) {
      int32_t value = arm_nn_requantize(sums[f], mult[f], exponent[f]) + output_offset;
      value = value < low ? low : value;
      value = value > high ? high : value;
      to[f] = static_cast<int8_t>(value);
    }
  };
  int32_t p = 0;
  for (; p + 2 <= pixels; p += 2) {
    int32_t sums[2 * kFilters];
#pragma GCC unroll 4
    for (int32_t i = 0; i < 2 * kFilters; ++i) sums[i] = start[i % kFilters];
    AddDepths<2, kFilters>(input + p * depth, w, depth, offsets, input_offset, sums);
    emit(sums, out + p * filters);
    emit(sums + kFilters, out + (p + 1) * filters);
  }
  if (p < pixels) {
    int32_t sums[kFilters];
#pragma GCC unroll 2
    for (int32_t i = 0; i < kFilters; ++i) sums[i] = start[i];
    AddDepths<1, kFilters>(input + p * depth, w, depth, offsets, input_offset, sums);
    emit(sums, out + p * filters);
  }
}

// A 1x1, stride-1, unpadded convolution over `pixels` pixels of `depth` channels: two filters by two pixels at a
// time, then the odd pixel and filter. Not inlined, and without GCC's first scheduling pass, which hoists the next
// channels' loads and so spills the sums: that way the channel loop's values fit the registers (83 instructions
// per 64 products, objdump), the outer loops' state being reloaded once per pixel pair.
__attribute__((noinline, optimize("no-schedule-insns"))) void PointwiseConv(
    const tt_conv_params& params, const int8_t* input, int32_t pixels, int32_t depth, const int8_t* filter,
    const int32_t* bias, const tt_requantization& requant, int32_t filters, int8_t* output) {
  int32_t f = 0;
  for (; f + 2 <= filters; f += 2) {
    PointwiseFilters<2>(params, input, pixels, depth, filter + f * depth, bias == nullptr ? nullptr : bias + f,
                        requant.multiplier + f, requant.shift + f, filters, output + f);
  }
  if (f < filters) {
    PointwiseFilters<1>(params, input, pixels, depth, filter + f * depth, bias == nullptr ? nullptr : bias + f,
                        requant.multiplier + f, requant.shift + f, filters, output + f);
  }
}

}  // namespace
#endif

tt_status tinytrain_core::Conv2dS8(const tt_context* ctx, const tt_conv_params& params, const tt_dims& input_dims,
                                   const int8_t* input, const tt_dims& filter_dims, const int8_t* filter,
                                   const int32_t* bias, const tt_requantization& requant, const tt_dims& output_dims,
                                   int8_t* output) {
  const cm::RowOperands op = cm::MakeRowOperands(ctx, requant, filter_dims, output_dims);
  return cm::ForEachRow(params, input_dims, input, filter_dims.h, output_dims, output,
                        [&](const cm::ConvRow& row, const int8_t* x, int8_t* y) {
                          const cmsis_nn_conv_params conv = cm::RowParams<cmsis_nn_conv_params>(params, row);
                          const cmsis_nn_dims rows = cm::RowInputDims(input_dims, row);
                          const cmsis_nn_dims outputs = cm::RowOutputDims(output_dims, row);
                          if (!cm::PointwiseRow(conv, filter_dims)) {
                            return arm_convolve_s8(&op.context, &conv, &op.quant, &rows, x, &op.filter, filter,
                                                   &op.bias, bias, nullptr, &outputs, y);
                          }
#if !defined(ARM_MATH_MVEI)
                          if (conv.stride.w == 1 && conv.stride.h == 1) {
                            PointwiseConv(params, x, rows.h * rows.w, rows.c, filter, bias, requant, outputs.c, y);
                            return ARM_CMSIS_NN_SUCCESS;
                          }
#endif
                          return arm_convolve_wrapper_s8(&op.context, &conv, &op.quant, &rows, x, &op.filter,
                                                         filter, &op.bias, bias, &outputs, y);
                        });
}

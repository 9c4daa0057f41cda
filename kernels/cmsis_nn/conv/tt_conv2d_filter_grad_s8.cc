// tt_conv2d_filter_grad_s8 for Cortex-M (the cmsis-nn kernel set of tinytrain_tflm.firmware.device):
// the reference's float32 arithmetic, operation for operation, in loops shaped for the M-profile.
//
// Bit-identical to kernels/core by construction. For a float32 gradient the reference sums, per
// filter-gradient element (f, ky, kx, c), g[n, oy, ox, f] * (x[n, iy, ix, c] - zero point) over the
// reads of tap (ky, kx) in (n, oy, ox) order from 0.0f, then multiplies by the input scale; for an
// int8 one, the same sum of levels in int32, exact (core/common/s8_grad_sums.h), then both scales.
// This version adds the same products in the same order for a block of input channels at once: the gradient element is read
// once per read for the whole block (the reference read it for each channel), the block's sums
// stay in registers, and the block's inputs at one position are one contiguous run.
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "../../core/common/conv_grad_loops.h"
#include "../../core/common/layer_grad_kernels.h"
#include "../../core/tt_functions.h"
#include "../common/channel_blocks.h"
#include "../common/channel_planes.h"
#include "../common/halfword_macs.h"

namespace core = tinytrain_core;
namespace cm = tinytrain_cmsis_nn;

namespace {

// Pixels whose level pairs a pointwise int8 filter gradient gathers on the stack: 1 KB.
constexpr int32_t kPairedPixels = 256;

// The int8 filter gradient of a pointwise convolution: gw[f][c] = sum over pixels p of
// level[p][f] * (x[p][c] - zero point), a matrix product summed as sum(level * x) - zero point *
// sum(level), exactly. Filters f, f + 2 (then f + 1, f + 3) times four input channels take the halfword
// MACs of AddFourChannels: one word load gives four filters' levels, SXTB16 two of them as factors. With
// Helium, four filters times four input channels take AddScaledRows' vector MACs instead. Not inlined:
// the Helium version is small enough to be, and the caller's float32 gather then compiles worse (12% more
// instructions, measured).
template <typename S, typename Sink>
__attribute__((noinline)) void PointwiseS8Conv2dFilterGrad(const S& s, const core::S8GradReader& grad, const int8_t* input, Sink& shared_sink) {
  Sink sink = shared_sink.LocalCopy();  // GradSink: its state in registers
  const int32_t pixels = s.grad_output.n * s.grad_output.h * s.grad_output.w;
  const int32_t out_channels = s.grad_output.c;
  const int32_t in_channels = s.result.c;
  const int32_t filters = s.result.n;
  const int32_t zero_point = s.quant.zero_point;
  const float unit = grad.scale * s.quant.scale;
  auto store = [&](int32_t f, int32_t c, int32_t sum, int32_t level_sum) {
    sink.Put(f * in_channels + c, static_cast<float>(sum - zero_point * level_sum) * unit);
  };
  auto level_sum = [&](int32_t f) {
    int32_t sum = 0;
    for (int32_t p = 0; p < pixels; ++p) sum += grad.data[p * out_channels + f];
    return sum;
  };
  if (pixels == 1) {
    // One pixel (a fully connected layer at batch 1): each element is a single product, stored as
    // it is computed, with no blocks to gather (they cost more than the product).
    for (int32_t f = 0; f < filters; ++f) {
      const int32_t level = grad.data[f];
      for (int32_t c = 0; c < in_channels; ++c) store(f, c, level * input[c], level);
    }
    shared_sink.Resume(sink);
    return;
  }
#if defined(ARM_MATH_MVEI)
  // Helium: filters f..f + kFilters - 1 (4, then single ones) times kLanes input channels (the last
  // block's lanes predicated), one vector of sums per filter, each pixel's levels the VMLAs' scalars.
  auto filter_block = [&](auto width, int32_t f) {
    constexpr int32_t kFilters = decltype(width)::value;
    int32_t level_sums[kFilters];
    for (int32_t k = 0; k < kFilters; ++k) level_sums[k] = level_sum(f + k);
    const int8_t* const levels = grad.data + f;  // pixel p's level of filter f + k at levels[p * out_channels + k]
    const cm::FactorSteps steps{2 * out_channels, out_channels, 1};
    for (int32_t c = 0; c < in_channels; c += cm::kLanes) {
      const int32_t channels = in_channels - c < cm::kLanes ? in_channels - c : cm::kLanes;
      int32x4_t vectors[kFilters];
      for (int32_t k = 0; k < kFilters; ++k) vectors[k] = vdupq_n_s32(0);
      cm::AddScaledRows<kFilters>(input + c, in_channels, pixels, channels, levels, steps, vectors);
      for (int32_t k = 0; k < kFilters; ++k) {
        int32_t sums[cm::kLanes];
        vst1q_s32(sums, vectors[k]);
        for (int32_t j = 0; j < channels; ++j) store(f + k, c + j, sums[j], level_sums[k]);
      }
    }
  };
  int32_t f = 0;
  for (; f + 4 <= filters; f += 4) filter_block(cm::BlockWidth<4>{}, f);
  for (; f < filters; ++f) filter_block(cm::BlockWidth<1>{}, f);
#else
  // Filter f's sum over pixels of level[p][f] * x[p][c], for one input channel c.
  auto channel_sum = [&](int32_t f, int32_t c) {
    int32_t sum = 0;
    for (int32_t p = 0; p < pixels; ++p) sum += grad.data[p * out_channels + f] * input[p * in_channels + c];
    return sum;
  };
  int32_t f = 0;
  for (; f + 4 <= filters; f += 4) {
    const int32_t level_sums[4] = {level_sum(f), level_sum(f + 1), level_sum(f + 2), level_sum(f + 3)};
    // Filters f + kOdd (the low halves) and f + kOdd + 2 (the high ones).
    auto two_filters = [&](auto odd_filters) {
      constexpr int32_t kOdd = decltype(odd_filters)::value;
      const int8_t* levels = grad.data + f;
      auto level_pair = [&](int32_t p) {
        uint32_t four;
        memcpy(&four, levels + p * out_channels, 4);
        if constexpr (kOdd == 1) return cm::OddBytes(four);
        return cm::EvenBytes(four);
      };
      // Up to kPairedPixels pixels, the level pairs are gathered once for every block of input
      // channels into a contiguous run (the loop then keeps its pointers in registers).
      uint32_t pairs[kPairedPixels];
      const bool paired = pixels <= kPairedPixels;
      if (paired) {
        for (int32_t p = 0; p < pixels; ++p) pairs[p] = level_pair(p);
      }
      int32_t c = 0;
      for (; c + 4 <= in_channels; c += 4) {
        cm::FourChannelSums sums;
        if (paired) {
          cm::AddFourChannels(input + c, in_channels, pixels, [&](int32_t p) { return pairs[p]; }, sums);
        } else {
          cm::AddFourChannels(input + c, in_channels, pixels, level_pair, sums);
        }
        const int32_t low[4] = {sums.c0, sums.c1, sums.c2, sums.c3};
        const int32_t high[4] = {sums.d0, sums.d1, sums.d2, sums.d3};
        for (int32_t j = 0; j < 4; ++j) {
          store(f + kOdd, c + j, low[j], level_sums[kOdd]);
          store(f + kOdd + 2, c + j, high[j], level_sums[kOdd + 2]);
        }
      }
      for (; c < in_channels; ++c) {
        store(f + kOdd, c, channel_sum(f + kOdd, c), level_sums[kOdd]);
        store(f + kOdd + 2, c, channel_sum(f + kOdd + 2, c), level_sums[kOdd + 2]);
      }
    };
    two_filters(std::integral_constant<int32_t, 0>{});
    two_filters(std::integral_constant<int32_t, 1>{});
  }
  for (; f < filters; ++f) {
    const int32_t levels = level_sum(f);
    for (int32_t c = 0; c < in_channels; ++c) store(f, c, channel_sum(f, c), levels);
  }
#endif
  shared_sink.Resume(sink);
}

// An int8 filter gradient with fewer than 4 input channels (a network's first conv), where a block of
// input channels would hold one: per tap and input channel, blocks of 4 filters (then single ones),
// whose levels are one word of a gradient row, each row's run of reads walked with two pointers and
// each element stored at its index. The same exact int32 sums as the reference.
template <typename S, typename Sink>
void FilterBlockedS8Conv2dFilterGrad(const S& s, const core::S8GradReader& grad, const int8_t* input, Sink& sink) {
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params, s.operand, s.result, s.grad_output);
  const int32_t zero_point = s.quant.zero_point;
  const float unit = grad.scale * s.quant.scale;
  const tt_dims& grad_filter = s.result;
  const tt_dims& out = s.grad_output;
  const int32_t input_step = geometry.cols.stride * s.operand.c;  // from one read of a row to the next
  for (int32_t ky = 0; ky < grad_filter.h; ++ky) {
    for (int32_t kx = 0; kx < grad_filter.w; ++kx) {
      for (int32_t c = 0; c < grad_filter.c; ++c) {
        // body(levels, inputs, count) for every row of the tap's reads, from filter f on.
        const auto for_each_row = [&](int32_t f, auto&& body) {
          cm::ForEachTapReadRow(geometry, out, s.operand, ky, kx,
                                [&](int32_t grad_offset, int32_t input_offset, int32_t count) {
                                  body(grad.data + grad_offset + f, input + input_offset + c, count);
                                });
        };
        const auto store = [&](int32_t f, int32_t sum) {
          sink.Put(core::Offset(grad_filter, f, ky, kx, c), static_cast<float>(sum) * unit);
        };
        int32_t f = 0;
        for (; f + 4 <= grad_filter.n; f += 4) {
          int32_t sums[4] = {0, 0, 0, 0};
          for_each_row(f, [&](const int8_t* levels, const int8_t* x, int32_t count) {
            cm::AddFourLevelReads<cm::RowInputs::kShared>(levels, out.c, x, input_step, count, zero_point, sums);
          });
          for (int32_t j = 0; j < 4; ++j) store(f + j, sums[j]);
        }
        for (; f < grad_filter.n; ++f) {
          int32_t sum = 0;
          for_each_row(f, [&](const int8_t* levels, const int8_t* x, int32_t count) {
            for (int32_t i = 0; i < count; ++i, levels += out.c, x += input_step) sum += *levels * (*x - zero_point);
          });
          store(f, sum);
        }
      }
    }
  }
}

// The stack buffers of TapPlanesS8Conv2dFilterGrad: the gradient's levels as halfword pairs (1 KB),
// one tap's inputs (1 KB) and the filter gradient's sums (1 KB). Larger layers take
// FilterBlockedS8Conv2dFilterGrad.
constexpr int32_t kLevelPairWords = 256;
constexpr int32_t kTapHalfwords = 512;
constexpr int32_t kTapPlaneSums = 256;

// Filters whose sums AddFourFilterDots keeps in registers.
constexpr int32_t kDotFilters = 4;

// sums[f] += the sum over pixel pairs q < pairs of the SMLAD of inputs' pair q and the level pair at
// levels + q * step + 2 * f, f < 4: per pair of pixels, one word of inputs and four of levels (one per
// filter) for 8 products. Not inlined: alone, its sums and pointers fit the registers.
__attribute__((noinline)) void AddFourFilterDots(const int16_t* inputs, const int16_t* levels, int32_t pairs,
                                                 int32_t step, int32_t* sums) {
  int32_t s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];
  const int16_t* const end = inputs + 2 * pairs;
  for (; inputs != end; inputs += 2, levels += step) {
    const uint32_t pair = cm::HalfwordPair(inputs);
    s0 = __smlad(pair, cm::HalfwordPair(levels), s0);
    s1 = __smlad(pair, cm::HalfwordPair(levels + 2), s1);
    s2 = __smlad(pair, cm::HalfwordPair(levels + 4), s2);
    s3 = __smlad(pair, cm::HalfwordPair(levels + 6), s3);
  }
  sums[0] = s0, sums[1] = s1, sums[2] = s2, sums[3] = s3;
}

// The filters TapPlanesS8Conv2dFilterGrad sums, a whole number of AddFourFilterDots blocks.
template <typename S>
int32_t DotFilters(const S& s) {
  return (s.result.n + kDotFilters - 1) / kDotFilters * kDotFilters;
}

// Whether TapPlanesS8Conv2dFilterGrad's buffers hold the layer.
template <typename S>
bool TakesTapPlanes(const S& s) {
  const int32_t pairs = (s.grad_output.n * s.grad_output.h * s.grad_output.w + 1) / 2;
  return pairs * DotFilters(s) <= kLevelPairWords && 2 * pairs <= kTapHalfwords &&
         DotFilters(s) * s.result.h * s.result.w * s.result.c <= kTapPlaneSums;
}

// An int8 filter gradient with fewer than 4 input channels (a network's first conv) as dot products
// over the output pixels of every image: filter element (f, ky, kx, c) sums level[p][f] times the
// centered input tap (ky, kx) of pixel p reads in channel c (0 where it reads padding). The levels are
// laid out once as pixel pairs, the filters of a pair side by side; each tap's inputs are gathered once
// into a run of halfwords, then AddFourFilterDots sums four filters at a time with SMLAD. The same
// exact int32 sums as the reference, stored in its order.
template <typename S, typename Sink>
void TapPlanesS8Conv2dFilterGrad(const S& s, const core::S8GradReader& grad, const int8_t* input, Sink& shared_sink) {
  Sink sink = shared_sink.LocalCopy();  // GradSink: its state in registers
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params, s.operand, s.result, s.grad_output);
  const tt_dims& out = s.grad_output;
  const tt_dims& in = s.operand;
  const tt_dims& grad_filter = s.result;
  const int32_t pixels = out.n * out.h * out.w;  // every image's: the sums run over them all
  const int32_t pairs = (pixels + 1) / 2;
  const int32_t filters = DotFilters(s);
  const int32_t zero_point = s.quant.zero_point;
  const int32_t elements = filters * grad_filter.h * grad_filter.w * grad_filter.c;
  int16_t levels[2 * kLevelPairWords];
  int16_t taps[kTapHalfwords];
  int32_t sums[kTapPlaneSums];  // element (f, tap) at tap * filters + f: AddFourFilterDots' four side by side
  for (int32_t i = 0; i < elements; ++i) sums[i] = 0;
  // Level (p, f) at levels[(p / 2 * filters + f) * 2 + p % 2]: a pixel pair's levels of a filter are one
  // word. Levels past the pixels or the filters stay 0.
  memset(levels, 0, sizeof(int16_t) * 2 * pairs * filters);
  for (int32_t p = 0; p < pixels; ++p) {
    const int8_t* from = grad.data + p * out.c;
    int16_t* to = levels + p / 2 * 2 * filters + p % 2;
    for (int32_t f = 0; f < grad_filter.n; ++f) to[2 * f] = from[f];
  }
  const int32_t input_step = s.params.stride_w * in.c;  // from one read of a row to the next
  for (int32_t ky = 0; ky < grad_filter.h; ++ky) {
    for (int32_t kx = 0; kx < grad_filter.w; ++kx) {
      for (int32_t c = 0; c < grad_filter.c; ++c) {
        const int32_t tap = (ky * grad_filter.w + kx) * grad_filter.c + c;
        // The centered inputs tap (ky, kx) reads in channel c, pixel by pixel (0 for padding), a run per
        // row; an odd pixel count's last pair has a second input of 0.
        memset(taps, 0, sizeof(int16_t) * 2 * pairs);
        cm::ForEachTapReadRow(geometry, out, in, ky, kx, [&](int32_t grad_offset, int32_t input_offset, int32_t count) {
          const int8_t* x = input + input_offset + c;
          int16_t* to = taps + grad_offset / out.c;
          for (int32_t i = 0; i < count; ++i, x += input_step) to[i] = static_cast<int16_t>(*x - zero_point);
        });
        for (int32_t f = 0; f < filters; f += kDotFilters) {
          AddFourFilterDots(taps, levels + 2 * f, pairs, 2 * filters, sums + tap * filters + f);
        }
      }
    }
  }
  const float unit = grad.scale * s.quant.scale;
  const int32_t per_filter = grad_filter.h * grad_filter.w * grad_filter.c;
  for (int32_t f = 0; f < grad_filter.n; ++f) {
    for (int32_t t = 0; t < per_filter; ++t) sink(static_cast<float>(sums[t * filters + f]) * unit);
  }
  shared_sink.Resume(sink);
}

// core::Conv2dFilterGrad's elements, in its order, a block of input channels at a time.
template <typename S, typename Grad, typename Sink>
void BlockedConv2dFilterGrad(const S& s, const Grad& grad, const int8_t* input, Sink& sink) {
  const int32_t zero_point = s.quant.zero_point;
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params, s.operand, s.result, s.grad_output);
  if constexpr (core::ReadsS8<Grad>::value) {
    // Levels times centered inputs, summed exactly in int32 (the reference may take int64 for more
    // reads than an MCU's layers have: it then runs instead).
    if (core::FilterGradTerms(s) * core::kLargestLevel * core::kLargestCentered > INT32_MAX) {
      core::Conv2dFilterGrad(s, grad, input, sink);
      return;
    }
    if (core::IsPointwiseFilterGrad(s)) {
      PointwiseS8Conv2dFilterGrad(s, grad, input, sink);
      return;
    }
    if (s.result.c < 4 && TakesTapPlanes(s)) {
      TapPlanesS8Conv2dFilterGrad(s, grad, input, sink);
      return;
    }
    if (s.result.c < 4) {
      FilterBlockedS8Conv2dFilterGrad(s, grad, input, sink);
      return;
    }
    const float unit = grad.scale * s.quant.scale;
    cm::GatherFilterGradBlockSums<int32_t>(
        geometry, s.grad_output.n, s.result, [&](int32_t sum) { sink(static_cast<float>(sum) * unit); },
        [&](auto width, int32_t c0, int32_t f, int32_t n, int32_t oy, int32_t ox, int32_t iy, int32_t ix, int32_t* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const int32_t level = grad.data[core::Offset(s.grad_output, n, oy, ox, f)];
          const int8_t* x = input + core::Offset(s.operand, n, iy, ix, c0);
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) sum[j] += level * (x[j] - zero_point);
        });
  } else {
    cm::GatherFilterGradBlocks(
        geometry, s.grad_output.n, s.result, s.quant.scale, sink,
        [&](auto width, int32_t c0, int32_t f, int32_t n, int32_t oy, int32_t ox, int32_t iy, int32_t ix, float* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const float g = grad[core::Offset(s.grad_output, n, oy, ox, f)];
          const int8_t* x = input + core::Offset(s.operand, n, iy, ix, c0);
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) sum[j] += g * static_cast<float>(x[j] - zero_point);
        });
  }
}

}  // namespace

extern "C" tt_status tt_conv2d_filter_grad_s8(const tt_conv_grad_params* params, const tt_quant_params* input_quant,
                                              const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                              const tt_dims* input_dims, const int8_t* input,
                                              const tt_dims* grad_filter_dims, tt_grad_out* grad_filter) {
  return core::RunConv2dFilterGrad(
      params, input_quant, grad_output_dims, grad_output, input_dims, input, grad_filter_dims, grad_filter,
      [](const auto& shape, const auto& grad, const int8_t* inputs, auto& sink) {
        BlockedConv2dFilterGrad(shape, grad, inputs, sink);
      });
}

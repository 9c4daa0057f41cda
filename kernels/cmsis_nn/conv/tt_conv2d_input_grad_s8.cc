// tt_conv2d_input_grad_s8 for Cortex-M (the cmsis-nn kernel set of tinytrain_tflm.firmware.device):
// the reference's arithmetic, operation for operation, in loops shaped for the M-profile.
//
// An int8 gradient: the reference sums, per input-gradient element, rescaled levels r times weights
// in int32 (core/common/s8_grad_sums.h), exactly, so any order gives its bits. A pointwise
// convolution (most of a MobileNet's backward) rescales 4 pixels' levels into int16 once, two output
// channels' to a word, then sums with the DSP extension's dual MAC SMLAD: per pair of output
// channels (filter rows), two input channels of both rows from 2 halfword loads, times the 4
// pixels' level pairs, in 8 SMLAD for 16 products (AddPairedRows). Other
// convolutions rescale a tap's levels per block of input channels and use plain integer MACs.
//
// A float32 gradient: bit-identical to kernels/core by construction. The reference sums, per input-gradient element,
// one inner sum per reading tap in tap order, each inner sum adding (g[co] * scale[co]) * w in
// output-channel order from 0.0f. This version computes the same products and adds them in the
// same order; it only stops redoing work: the scaled gradient g[co] * scale[co] is computed once
// per tap and output channel for a block of input channels (the reference redid it for each), the
// block's sums stay in registers, and a tap's weights for the block are one contiguous run. A
// pointwise convolution (1x1, stride 1, no padding: input pixel p is read by output pixel p alone)
// also takes two pixels at once, so each weight is converted to float once for both.
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "../../core/common/conv_grad_loops.h"
#include "../../core/common/layer_grad_kernels.h"
#include "../../core/common/s8_grad_sums.h"
#include "../../core/tt_functions.h"
#include "../common/channel_blocks.h"
#include "../common/halfword_macs.h"

namespace core = tinytrain_core;
namespace cm = tinytrain_cmsis_nn;

namespace {

// core::Conv2dInputGrad's elements, in its order, a block of input channels at a time.
template <typename S, typename Grad, typename Sink>
void BlockedConv2dInputGrad(const S& s, const Grad& grad, const int8_t* filter, Sink& sink) {
  const core::FilterScales scales(s.quant);
  // Consecutive output channels of one tap are this far apart in the [cout, kh, kw, cin] filter.
  const int32_t channel_stride = s.operand.h * s.operand.w * s.operand.c;
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params, s.result, s.operand, s.grad_output);
  if constexpr (core::ReadsS8<Grad>::value) {
    const core::RescaledLevels rescaled(scales, s.grad_output.c, core::InputGradTerms(s), grad.scale);
    cm::GatherInputGradBlockSums<int32_t>(
        geometry, s.result, [&](int32_t, int32_t sum) { sink(rescaled.Value(sum)); },
        [&](auto width, int32_t c0, int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, int32_t* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const int8_t* levels = grad.data + core::Offset(s.grad_output, n, oy, ox, 0);
          const int8_t* weights = filter + core::Offset(s.operand, 0, ky, kx, c0);
          for (int32_t co = 0; co < s.grad_output.c; ++co, weights += channel_stride) {
            const int32_t level = rescaled(levels[co], co);
#pragma GCC unroll 8
            for (int32_t j = 0; j < kWidth; ++j) sum[j] += level * weights[j];
          }
        });
    return;
  }
  cm::GatherInputGradBlocks(
      geometry, s.result, sink,
      [&](auto width, int32_t c0, int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, float* sum) {
        constexpr int32_t kWidth = decltype(width)::value;
        const int32_t grad_row = core::Offset(s.grad_output, n, oy, ox, 0);
        const int8_t* weights = filter + core::Offset(s.operand, 0, ky, kx, c0);
        float tap[kWidth];
#pragma GCC unroll 8
        for (int32_t j = 0; j < kWidth; ++j) tap[j] = 0.0f;
        for (int32_t co = 0; co < s.grad_output.c; ++co, weights += channel_stride) {
          const float scaled_grad = grad[grad_row + co] * scales[co];
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) tap[j] += scaled_grad * static_cast<float>(weights[j]);
        }
#pragma GCC unroll 8
        for (int32_t j = 0; j < kWidth; ++j) sum[j] += tap[j];
      });
}

// Whether input pixel p is read by output pixel p alone, through the filter's only tap.
template <typename S>
bool IsPointwise(const S& s) {
  return s.operand.h == 1 && s.operand.w == 1 && s.params.stride_h == 1 && s.params.stride_w == 1 &&
         s.params.pad_top == 0 && s.params.pad_left == 0 && s.grad_output.h == s.result.h &&
         s.grad_output.w == s.result.w;
}

// The input gradient of pixels [p, p + kPixels) of a pointwise convolution: BlockedConv2dInputGrad's
// elements, each stored at its index. An element is 0.0f plus its one tap's sum, as the reference adds it.
template <int32_t kPixels, typename S, typename Grad, typename Sink>
void PointwisePixels(const S& s, const Grad& grad, const core::FilterScales& scales, const int8_t* filter, int32_t p,
                     Sink& sink) {
  const int32_t in_channels = s.result.c;
  const int32_t out_channels = s.grad_output.c;
  cm::ForEachChannelBlock(in_channels, [&](auto width, int32_t c0) {
    constexpr int32_t kWidth = decltype(width)::value;
    float tap[kPixels][kWidth];
#pragma GCC unroll 2
    for (int32_t q = 0; q < kPixels; ++q) {
#pragma GCC unroll 8
      for (int32_t j = 0; j < kWidth; ++j) tap[q][j] = 0.0f;
    }
    const int8_t* weights = filter + c0;
    for (int32_t co = 0; co < out_channels; ++co, weights += in_channels) {
      float scaled_grad[kPixels];
#pragma GCC unroll 2
      for (int32_t q = 0; q < kPixels; ++q) scaled_grad[q] = grad[(p + q) * out_channels + co] * scales[co];
#pragma GCC unroll 8
      for (int32_t j = 0; j < kWidth; ++j) {
        const float weight = static_cast<float>(weights[j]);
#pragma GCC unroll 2
        for (int32_t q = 0; q < kPixels; ++q) tap[q][j] += scaled_grad[q] * weight;
      }
    }
#pragma GCC unroll 2
    for (int32_t q = 0; q < kPixels; ++q) {
#pragma GCC unroll 8
      for (int32_t j = 0; j < kWidth; ++j) sink.Put((p + q) * in_channels + c0 + j, 0.0f + tap[q][j]);
    }
  });
}

// BlockedConv2dInputGrad for a pointwise convolution, two pixels at a time.
template <typename S, typename Grad, typename Sink>
void PointwiseConv2dInputGrad(const S& s, const Grad& grad, const int8_t* filter, Sink& sink) {
  const core::FilterScales scales(s.quant);
  const int32_t pixels = s.result.n * s.result.h * s.result.w;
  int32_t p = 0;
  for (; p + 2 <= pixels; p += 2) PointwisePixels<2>(s, grad, scales, filter, p, sink);
  if (p < pixels) PointwisePixels<1>(s, grad, scales, filter, p, sink);
}

// Output channels whose multipliers and rescaled levels a pointwise int8 input gradient keeps on the
// stack: 512 B of multipliers and 1 KB of level pairs of the firmware's 16 KB stack. More output channels
// are rescaled a chunk at a time. Even, so that a chunk's rows pair up.
constexpr int32_t kRescaledChunk = 128;

// Input channels whose sums (kPairedFactors pixels each) a pointwise int8 input gradient keeps on the
// stack (2 KB) while it goes through the output channels a chunk at a time: the levels of a chunk are
// rescaled once per group of this many input channels. Even, so that only a last group has a lone channel.
constexpr int32_t kSummedChannels = 128;

// The int8 input gradient of pixels [p, p + valid), valid <= kPairedFactors, of a pointwise
// convolution, each element stored at its index: Value(sum over co of r(level[p][co], co) * w[co][c]),
// core::Conv2dInputGrad's sums. The sums run over output channels (the filter's rows) in pairs,
// AddPairedRows' dual MACs: per pair of output channels, each pixel's two rescaled levels are one word
// (missing pixels' levels 0, their sums not stored). multipliers[co] is RescaledLevels::Multiplier(co)
// when every output channel fits one chunk; otherwise it is filled here, chunk by chunk.
template <typename S, typename Sink>
void PointwiseS8Pixels(const S& s, const core::S8GradReader& grad, const core::RescaledLevels& rescaled,
                       int32_t* multipliers, const int8_t* filter, int32_t p, int32_t valid, Sink& sink) {
  const int32_t in_channels = s.result.c;
  const int32_t out_channels = s.grad_output.c;
  const bool one_chunk = out_channels <= kRescaledChunk;
  uint32_t factors[kRescaledChunk / 2 * cm::kPairedFactors];
  auto rescale = [&](int32_t first, int32_t count) {
    if (!one_chunk) {
      for (int32_t i = 0; i < count; ++i) multipliers[i] = rescaled.Multiplier(first + i);
    }
    for (int32_t q = 0; q < cm::kPairedFactors; ++q) {
      const int8_t* level = grad.data + (p + q) * out_channels + first;
      uint32_t* pairs = factors + q;
      for (int32_t i = 0; i < count; i += 2, pairs += cm::kPairedFactors) {
        if (q >= valid) {
          *pairs = 0;
          continue;
        }
        const int32_t low = core::RescaledLevels::Rescale(level[i], multipliers[i]);
        const int32_t high = i + 1 < count ? core::RescaledLevels::Rescale(level[i + 1], multipliers[i + 1]) : 0;
        *pairs = static_cast<uint16_t>(low) | (static_cast<uint32_t>(high) << 16);
      }
    }
  };
  if (one_chunk) rescale(0, out_channels);
  // The group's sums: per pair of input channels, the first channel's kPairedFactors pixels, then the second's.
  int32_t sums[kSummedChannels * cm::kPairedFactors];
  for (int32_t group = 0; group < in_channels; group += kSummedChannels) {
    const int32_t width = in_channels - group < kSummedChannels ? in_channels - group : kSummedChannels;
    const int32_t summed = (width + 1) / 2 * 2 * cm::kPairedFactors;
    for (int32_t j = 0; j < summed; ++j) sums[j] = 0;
    for (int32_t first = 0; first < out_channels; first += kRescaledChunk) {
      const int32_t count = out_channels - first < kRescaledChunk ? out_channels - first : kRescaledChunk;
      if (!one_chunk) rescale(first, count);
      const int8_t* rows = filter + first * in_channels + group;
      cm::AddPairedRows(rows, in_channels, count, width, factors, sums);
    }
    for (int32_t j = 0; j < width; ++j) {
      const int32_t* channel = sums + (j / 2) * 2 * cm::kPairedFactors + (j % 2) * cm::kPairedFactors;
      for (int32_t q = 0; q < valid; ++q) sink.Put((p + q) * in_channels + group + j, rescaled.Value(channel[q]));
    }
  }
}

#if !defined(ARM_MATH_MVEI)
// sums[j] += the sum over rows i < count of factors[i] * row_i[c + j], j < 4, where row_i = row + i *
// stride: per row one word of four int8 values, SXTB16 splitting it into channels 0, 2 and 1, 3, and
// one halfword MAC per channel with the row's 16-bit factor. Not inlined: alone, its sums and pointers
// fit the registers.
__attribute__((noinline)) void AddFourColumns(const int8_t* row, int32_t stride, int32_t count, const int32_t* factors,
                                              int32_t* sums) {
  int32_t s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];
  const int32_t* const end = factors + count;
  for (; factors != end; ++factors, row += stride) {
    uint32_t word;
    memcpy(&word, row, 4);
    const uint32_t even = cm::EvenBytes(word), odd = cm::OddBytes(word);
    const uint32_t factor = static_cast<uint32_t>(*factors);
    s0 = __smlabb(even, factor, s0);
    s2 = __smlatb(even, factor, s2);
    s1 = __smlabb(odd, factor, s1);
    s3 = __smlatb(odd, factor, s3);
  }
  sums[0] = s0, sums[1] = s1, sums[2] = s2, sums[3] = s3;
}
#endif

// The int8 input gradient of a pointwise convolution over one pixel (a fully connected layer at batch
// 1), with at most kRescaledChunk output channels: element c is Value(sum over co of r(level[co], co) *
// w[co][c]), the rows' rescaled levels computed once, then four input channels at a time
// (AddFourColumns; with Helium, AddScaledRows, the last block's lanes predicated), where the four-pixel
// path would fill three quarters of its sums with nothing.
template <typename S, typename Sink>
void SinglePixelS8Conv2dInputGrad(const S& s, const core::S8GradReader& grad, const core::RescaledLevels& rescaled,
                                  const int32_t* multipliers, const int8_t* filter, Sink& sink) {
  const int32_t in_channels = s.result.c;
  const int32_t out_channels = s.grad_output.c;
  int32_t factors[kRescaledChunk];
  for (int32_t co = 0; co < out_channels; ++co) factors[co] = core::RescaledLevels::Rescale(grad.data[co], multipliers[co]);
#if defined(ARM_MATH_MVEI)
  constexpr cm::FactorSteps kRowFactors{2, 1, 0};  // row co's one factor: factors[co]
  for (int32_t c = 0; c < in_channels; c += cm::kLanes) {
    const int32_t channels = in_channels - c < cm::kLanes ? in_channels - c : cm::kLanes;
    int32x4_t vector = vdupq_n_s32(0);
    cm::AddScaledRows<1>(filter + c, in_channels, out_channels, channels, factors, kRowFactors, &vector);
    int32_t sums[cm::kLanes];
    vst1q_s32(sums, vector);
    for (int32_t j = 0; j < channels; ++j) sink(rescaled.Value(sums[j]));
  }
#else
  int32_t c = 0;
  for (; c + 4 <= in_channels; c += 4) {
    int32_t sums[4] = {0, 0, 0, 0};
    AddFourColumns(filter + c, in_channels, out_channels, factors, sums);
    for (const int32_t sum : sums) sink(rescaled.Value(sum));
  }
  for (; c < in_channels; ++c) {
    int32_t sum = 0;
    for (int32_t co = 0; co < out_channels; ++co) sum += factors[co] * filter[co * in_channels + c];
    sink(rescaled.Value(sum));
  }
#endif
}

// The int8 input gradient of a pointwise convolution, kPairedFactors pixels at a time.
template <typename S, typename Sink>
void PointwiseS8Conv2dInputGrad(const S& s, const core::S8GradReader& grad, const int8_t* filter, Sink& shared_sink) {
  Sink sink = shared_sink.LocalCopy();  // GradSink: its state in registers
  const int32_t out_channels = s.grad_output.c;
  const core::RescaledLevels rescaled(core::FilterScales(s.quant), out_channels, core::InputGradTerms(s), grad.scale);
  int32_t multipliers[kRescaledChunk];
  for (int32_t co = 0; co < out_channels && co < kRescaledChunk; ++co) multipliers[co] = rescaled.Multiplier(co);
  const int32_t pixels = s.result.n * s.result.h * s.result.w;
  if (pixels == 1 && out_channels <= kRescaledChunk) {
    SinglePixelS8Conv2dInputGrad(s, grad, rescaled, multipliers, filter, sink);
    shared_sink.Resume(sink);
    return;
  }
  for (int32_t p = 0; p < pixels; p += cm::kPairedFactors) {
    const int32_t valid = pixels - p < cm::kPairedFactors ? pixels - p : cm::kPairedFactors;
    PointwiseS8Pixels(s, grad, rescaled, multipliers, filter, p, valid, sink);
  }
  shared_sink.Resume(sink);
}

}  // namespace

extern "C" tt_status tt_conv2d_input_grad_s8(const tt_conv_grad_params* params,
                                             const tt_filter_quant_params* filter_quant,
                                             const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                             const tt_dims* filter_dims, const int8_t* filter,
                                             const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  return core::RunConv2dInputGrad(
      params, filter_quant, grad_output_dims, grad_output, filter_dims, filter, grad_input_dims, grad_input,
      [](const auto& shape, const auto& grad, const int8_t* weights, auto& sink) {
        if (!IsPointwise(shape)) {
          BlockedConv2dInputGrad(shape, grad, weights, sink);
        } else if constexpr (core::ReadsS8<std::decay_t<decltype(grad)>>::value) {
          PointwiseS8Conv2dInputGrad(shape, grad, weights, sink);
        } else {
          PointwiseConv2dInputGrad(shape, grad, weights, sink);
        }
      });
}

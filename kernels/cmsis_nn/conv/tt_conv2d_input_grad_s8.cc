// tt_conv2d_input_grad_s8 for Cortex-M (the cmsis-nn kernel set of tinytrain_tflm.firmware.device):
// the reference's float32 arithmetic, operation for operation, in loops shaped for the M-profile.
//
// Bit-identical to kernels/core by construction. The reference sums, per input-gradient element,
// one inner sum per reading tap in tap order, each inner sum adding (g[co] * scale[co]) * w in
// output-channel order from 0.0f. This version computes the same products and adds them in the
// same order; it only stops redoing work: the scaled gradient g[co] * scale[co] is computed once
// per tap and output channel for a block of input channels (the reference redid it for each), the
// block's sums stay in registers, and a tap's weights for the block are one contiguous run. A
// pointwise convolution (1x1, stride 1, no padding: input pixel p is read by output pixel p alone)
// also takes two pixels at once, so each weight is converted to float once for both.
//
// Integer accumulation (int8 x int8 -> int32 with the DSP extension's dual MACs) cannot give the
// same results: the per-channel filter scales sit inside the sum over output channels.
#include <stdint.h>

#include "../../core/common/conv_grad_loops.h"
#include "../../core/common/layer_grad_kernels.h"
#include "../../core/tt_functions.h"
#include "../common/channel_blocks.h"

namespace core = tinytrain_core;
namespace cm = tinytrain_cmsis_nn;

namespace {

// core::Conv2dInputGrad's elements, in its order, a block of input channels at a time.
template <typename S, typename Grad, typename Sink>
void BlockedConv2dInputGrad(const S& s, const Grad& grad, const int8_t* filter, Sink& sink) {
  const core::FilterScales scales(s.quant);
  // Consecutive output channels of one tap are this far apart in the [cout, kh, kw, cin] filter.
  const int32_t channel_stride = s.operand.h * s.operand.w * s.operand.c;
  cm::GatherInputGradBlocks(
      core::MakeConvGeometry(s.params, s.result, s.operand, s.grad_output), s.result, sink,
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

}  // namespace

extern "C" tt_status tt_conv2d_input_grad_s8(const tt_conv_grad_params* params,
                                             const tt_filter_quant_params* filter_quant,
                                             const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                             const tt_dims* filter_dims, const int8_t* filter,
                                             const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  return core::RunConv2dInputGrad(
      params, filter_quant, grad_output_dims, grad_output, filter_dims, filter, grad_input_dims, grad_input,
      [](const auto& shape, const auto& grad, const int8_t* weights, auto& sink) {
        if (IsPointwise(shape)) {
          PointwiseConv2dInputGrad(shape, grad, weights, sink);
        } else {
          BlockedConv2dInputGrad(shape, grad, weights, sink);
        }
      });
}

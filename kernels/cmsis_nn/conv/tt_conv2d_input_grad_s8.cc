// tt_conv2d_input_grad_s8 for Cortex-M (the cmsis-nn kernel set of tinytrain_tflm.firmware.device):
// the reference's float32 arithmetic, operation for operation, in loops shaped for the M-profile.
//
// Bit-identical to kernels/core by construction. The reference sums, per input-gradient element,
// one inner sum per reading tap in tap order, each inner sum adding (g[co] * scale[co]) * w in
// output-channel order from 0.0f. This version computes the same products and adds them in the
// same order; it only stops redoing work: the scaled gradient g[co] * scale[co] is computed once
// per tap and output channel for a block of input channels (the reference redid it for each), the
// block's sums stay in registers, and a tap's weights for the block are one contiguous run.
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
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params, s.result, s.operand, s.grad_output);
  const core::FilterScales scales(s.quant);
  // Consecutive output channels of one tap are this far apart in the [cout, kh, kw, cin] filter.
  const int32_t channel_stride = s.operand.h * s.operand.w * s.operand.c;
  for (int32_t n = 0; n < s.result.n; ++n) {
    for (int32_t iy = 0; iy < s.result.h; ++iy) {
      for (int32_t ix = 0; ix < s.result.w; ++ix) {
        cm::ForEachChannelBlock(s.result.c, [&](auto width, int32_t c0) {
          constexpr int32_t kWidth = decltype(width)::value;
          float sum[kWidth];
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) sum[j] = 0.0f;
          geometry.rows.ForEachReaderOf(iy, [&](int32_t ky, int32_t oy) {
            geometry.cols.ForEachReaderOf(ix, [&](int32_t kx, int32_t ox) {
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
          });
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) sink(sum[j]);
        });
      }
    }
  }
}

}  // namespace

extern "C" tt_status tt_conv2d_input_grad_s8(const tt_conv_grad_params* params,
                                             const tt_filter_quant_params* filter_quant,
                                             const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                             const tt_dims* filter_dims, const int8_t* filter,
                                             const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  return core::RunConv2dInputGrad(params, filter_quant, grad_output_dims, grad_output, filter_dims, filter,
                                  grad_input_dims, grad_input, [](const auto& shape, const auto& grad, const int8_t* weights,
                                                                  auto& sink) { BlockedConv2dInputGrad(shape, grad, weights, sink); });
}

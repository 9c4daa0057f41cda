// tt_depthwise_conv2d_input_grad_s8 for Cortex-M (the cmsis-nn kernel set of
// tinytrain_tflm.firmware.device): the reference's arithmetic, operation for operation.
//
// Bit-identical to kernels/core by construction. The reference sums, per input-gradient element
// (n, iy, ix, ci), one inner sum per reading tap in tap order, each inner sum adding
// (g[oc] * scale[oc]) * w[oc] over the channel's multiplier output channels oc from 0.0f. An int8
// gradient with multiplier 1 sums levels times weights in int32 instead, exactly, then multiplies
// by the gradient's and the channel's scales. This
// version adds the same products in the same order for a block of input channels at once: the
// tap's geometry is worked out once for the block, and with multiplier 1 (MobileNets) the block's
// gradients, scales and weights are contiguous runs.
#include <stdint.h>

#include "../../core/common/conv_grad_loops.h"
#include "../../core/common/layer_grad_kernels.h"
#include "../../core/tt_functions.h"
#include "../common/channel_blocks.h"

namespace core = tinytrain_core;
namespace cm = tinytrain_cmsis_nn;

namespace {

// core::DepthwiseConv2dInputGrad's elements, in its order, a block of input channels at a time.
// kMultiplier is the depth multiplier when known at compile time (1), else 0: read it from s.
template <int32_t kMultiplier, typename S, typename Grad, typename Sink>
void BlockedDepthwiseConv2dInputGrad(const S& s, const Grad& grad, const int8_t* filter, Sink& sink) {
  const int32_t multiplier = kMultiplier != 0 ? kMultiplier : s.params.depth_multiplier;
  const core::FilterScales scales(s.quant);
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params.conv, s.result, s.operand, s.grad_output);
  if constexpr (kMultiplier == 1 && core::ReadsS8<Grad>::value) {
    cm::GatherInputGradBlockSums<int32_t>(
        geometry, s.result, [&](int32_t c, int32_t sum) { sink(static_cast<float>(sum) * (grad.scale * scales[c])); },
        [&](auto width, int32_t c0, int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, int32_t* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const int8_t* levels = grad.data + core::Offset(s.grad_output, n, oy, ox, c0);
          const int8_t* weights = filter + core::Offset(s.operand, 0, ky, kx, c0);
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) sum[j] += levels[j] * weights[j];
        });
    return;
  }
  cm::GatherInputGradBlocks(
      geometry, s.result, sink,
      [&](auto width, int32_t c0, int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, float* sum) {
        constexpr int32_t kWidth = decltype(width)::value;
        const int32_t grad_row = core::Offset(s.grad_output, n, oy, ox, 0);
        const int8_t* weights = filter + core::Offset(s.operand, 0, ky, kx, 0);
#pragma GCC unroll 8
        for (int32_t j = 0; j < kWidth; ++j) {
          float tap = 0.0f;
          const int32_t first = (c0 + j) * multiplier;
          for (int32_t oc = first; oc < first + multiplier; ++oc) {
            tap += grad[grad_row + oc] * scales[oc] * static_cast<float>(weights[oc]);
          }
          sum[j] += tap;
        }
      });
}

}  // namespace

extern "C" tt_status tt_depthwise_conv2d_input_grad_s8(const tt_depthwise_conv_grad_params* params,
                                                       const tt_filter_quant_params* filter_quant,
                                                       const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                       const tt_dims* filter_dims, const int8_t* filter,
                                                       const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  return core::RunDepthwiseConv2dInputGrad(
      params, filter_quant, grad_output_dims, grad_output, filter_dims, filter, grad_input_dims, grad_input,
      [](const auto& shape, const auto& grad, const int8_t* weights, auto& sink) {
        if (shape.params.depth_multiplier == 1) {
          BlockedDepthwiseConv2dInputGrad<1>(shape, grad, weights, sink);
        } else {
          BlockedDepthwiseConv2dInputGrad<0>(shape, grad, weights, sink);
        }
      });
}

// tt_depthwise_conv2d_filter_grad_s8 for Cortex-M (the cmsis-nn kernel set of
// tinytrain_tflm.firmware.device): the reference's arithmetic, operation for operation.
//
// Bit-identical to kernels/core by construction. The reference sums, per filter-gradient element
// (ky, kx, oc), g[n, oy, ox, oc] * (x[n, iy, ix, oc / multiplier] - zero point) over the reads of
// tap (ky, kx) in (n, oy, ox) order from 0.0f, then multiplies by the input scale; an int8
// gradient's levels are summed so in int32, exactly, then times both scales. This version
// adds the same products in the same order for a block of output channels at once: a read's
// geometry is worked out once for the block, and with multiplier 1 (MobileNets) the block's
// gradients and inputs are contiguous runs. With multiplier 1 and an int8 gradient, four channels'
// levels and inputs are read as one word each and multiplied by halfword MACs, along a row's run of
// reads with no per-read callback.
#include <stdint.h>
#include <string.h>

#include "../../core/common/conv_grad_loops.h"
#include "../../core/common/layer_grad_kernels.h"
#include "../../core/tt_functions.h"
#include "../common/channel_blocks.h"
#include "../common/halfword_macs.h"

namespace core = tinytrain_core;
namespace cm = tinytrain_cmsis_nn;

namespace {

// Multiplier 1, int8 gradient: filter element (ky, kx, c) is the exact int32 sum of
// level[n, oy, ox, c] * (x[n, iy, ix, c] - zero point) over tap (ky, kx)'s reads inside the input,
// times grad scale * input scale. Per tap, a block of four channels at a time (then single
// channels), each row's run of reads walked with two pointers. The caller checked that the sums fit
// int32.
template <typename S, typename Sink>
void DepthwiseConv2dFilterGradS8Multiplier1(const S& s, const core::S8GradReader& grad, const int8_t* input,
                                            Sink& sink) {
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params.conv, s.operand, s.result, s.grad_output);
  const tt_dims& out = s.grad_output;
  const tt_dims& in = s.operand;
  const int32_t zero_point = s.quant.zero_point;
  const float unit = grad.scale * s.quant.scale;
  const int32_t input_step = geometry.cols.stride * in.c;  // from one read of a row to the next
  for (int32_t ky = 0; ky < s.result.h; ++ky) {
    for (int32_t kx = 0; kx < s.result.w; ++kx) {
      // body(levels, inputs, count) for every row of the tap's reads, from channel c on.
      const auto for_each_row = [&](int32_t c, auto&& body) {
        cm::ForEachTapReadRow(geometry, out, in, ky, kx, [&](int32_t grad_offset, int32_t input_offset, int32_t count) {
          body(grad.data + grad_offset + c, input + input_offset + c, count);
        });
      };
      int32_t c = 0;
      for (; c + 4 <= s.result.c; c += 4) {
        int32_t sums[4] = {0, 0, 0, 0};
        for_each_row(c, [&](const int8_t* levels, const int8_t* x, int32_t count) {
          cm::AddFourLevelReads<cm::RowInputs::kPerChannel>(levels, out.c, x, input_step, count, zero_point,
                                                            sums);
        });
        for (const int32_t sum : sums) sink(static_cast<float>(sum) * unit);
      }
      for (; c < s.result.c; ++c) {
        int32_t sum = 0;
        for_each_row(c, [&](const int8_t* levels, const int8_t* x, int32_t count) {
          for (int32_t i = 0; i < count; ++i, levels += out.c, x += input_step) sum += *levels * (*x - zero_point);
        });
        sink(static_cast<float>(sum) * unit);
      }
    }
  }
}

// core::DepthwiseConv2dFilterGrad's elements, in its order, a block of output channels at a time.
// kMultiplier is the depth multiplier when known at compile time (1), else 0: read it from s.
template <int32_t kMultiplier, typename S, typename Grad, typename Sink>
void BlockedDepthwiseConv2dFilterGrad(const S& s, const Grad& grad, const int8_t* input, Sink& sink) {
  const int32_t multiplier = kMultiplier != 0 ? kMultiplier : s.params.depth_multiplier;
  const int32_t zero_point = s.quant.zero_point;
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params.conv, s.operand, s.result, s.grad_output);
  if constexpr (core::ReadsS8<Grad>::value) {
    // Exact int32 sums, as in tt_conv2d_filter_grad_s8's version.
    if (core::FilterGradTerms(s) * core::kLargestLevel * core::kLargestCentered > INT32_MAX) {
      core::DepthwiseConv2dFilterGrad(s, grad, input, sink);
      return;
    }
    if (kMultiplier == 1) {
      DepthwiseConv2dFilterGradS8Multiplier1(s, grad, input, sink);
      return;
    }
    const float unit = grad.scale * s.quant.scale;
    cm::GatherFilterGradBlockSums<int32_t>(
        geometry, s.grad_output.n, s.result, [&](int32_t sum) { sink(static_cast<float>(sum) * unit); },
        [&](auto width, int32_t c0, int32_t /*filter row, always 0*/, int32_t n, int32_t oy, int32_t ox, int32_t iy,
            int32_t ix, int32_t* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const int8_t* levels = grad.data + core::Offset(s.grad_output, n, oy, ox, 0);
          const int8_t* x = input + core::Offset(s.operand, n, iy, ix, 0);
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) {
            const int32_t oc = c0 + j;
            sum[j] += levels[oc] * (x[oc / multiplier] - zero_point);
          }
        });
  } else {
    cm::GatherFilterGradBlocks(
        geometry, s.grad_output.n, s.result, s.quant.scale, sink,
        [&](auto width, int32_t c0, int32_t /*filter row, always 0*/, int32_t n, int32_t oy, int32_t ox, int32_t iy,
            int32_t ix, float* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const int32_t grad_row = core::Offset(s.grad_output, n, oy, ox, 0);
          const int8_t* x = input + core::Offset(s.operand, n, iy, ix, 0);
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) {
            const int32_t oc = c0 + j;
            sum[j] += grad[grad_row + oc] * static_cast<float>(x[oc / multiplier] - zero_point);
          }
        });
  }
}

}  // namespace

extern "C" tt_status tt_depthwise_conv2d_filter_grad_s8(const tt_depthwise_conv_grad_params* params,
                                                        const tt_quant_params* input_quant,
                                                        const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                        const tt_dims* input_dims, const int8_t* input,
                                                        const tt_dims* grad_filter_dims, tt_grad_out* grad_filter) {
  return core::RunDepthwiseConv2dFilterGrad(
      params, input_quant, grad_output_dims, grad_output, input_dims, input, grad_filter_dims, grad_filter,
      [](const auto& shape, const auto& grad, const int8_t* inputs, auto& sink) {
        if (shape.params.depth_multiplier == 1) {
          BlockedDepthwiseConv2dFilterGrad<1>(shape, grad, inputs, sink);
        } else {
          BlockedDepthwiseConv2dFilterGrad<0>(shape, grad, inputs, sink);
        }
      });
}

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

#include "../../core/common/conv_grad_loops.h"
#include "../../core/common/layer_grad_kernels.h"
#include "../../core/tt_functions.h"
#include "../common/channel_blocks.h"

namespace core = tinytrain_core;
namespace cm = tinytrain_cmsis_nn;

namespace {

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

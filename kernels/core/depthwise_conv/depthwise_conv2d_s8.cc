// tt_depthwise_conv2d_s8's kernel, core::DepthwiseConv2dS8, in portable loops. kernels/cmsis_nn/depthwise_conv/
// depthwise_conv2d_s8.cc replaces this file in the cmsis-nn kernel set: the one place the kernel is chosen
// (tt_depthwise_conv2d_s8.cc checks the arguments for both).
#include "../common/conv_forward.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

// ctx unused: these loops need no scratch.
tt_status core::DepthwiseConv2dS8(const tt_context*, const tt_conv_params& params, const tt_dims& in,
                                  const int8_t* input, const tt_dims& taps, const int8_t* filter, const int32_t* bias,
                                  const tt_requantization& requant, const tt_dims& output_dims, int8_t* output) {
  const int32_t offset = params.input_offset;
  const int32_t multiplier = params.depth_multiplier;
  core::ConvForward(params, in, taps, bias, requant, output_dims, output,
                    [&](int32_t n, int32_t iy, int32_t ix, int32_t ky, int32_t kx, int32_t oc) {
                      const int32_t x = input[core::Offset(in, n, iy, ix, oc / multiplier)];
                      return filter[core::Offset(taps, 0, ky, kx, oc)] * (x + offset);
                    });
  return TT_SUCCESS;
}

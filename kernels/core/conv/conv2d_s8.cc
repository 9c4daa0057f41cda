// tt_conv2d_s8's kernel, core::Conv2dS8, in portable loops. kernels/cmsis_nn/conv/conv2d_s8.cc replaces this file
// in the cmsis-nn kernel set: the one place the kernel is chosen (tt_conv2d_s8.cc checks the arguments for both).
#include "../common/conv_forward.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

// ctx unused: these loops need no scratch.
tt_status core::Conv2dS8(const tt_context*, const tt_conv_params& params, const tt_dims& in, const int8_t* input,
                         const tt_dims& taps, const int8_t* filter, const int32_t* bias,
                         const tt_requantization& requant, const tt_dims& output_dims, int8_t* output) {
  const int32_t offset = params.input_offset;
  core::ConvForward(params, in, taps, bias, requant, output_dims, output,
                    [&](int32_t n, int32_t iy, int32_t ix, int32_t ky, int32_t kx, int32_t oc) {
                      const int8_t* x = input + core::Offset(in, n, iy, ix, 0);
                      const int8_t* w = filter + core::Offset(taps, oc, ky, kx, 0);
                      int32_t sum = 0;
                      for (int32_t ci = 0; ci < in.c; ++ci) sum += w[ci] * (x[ci] + offset);
                      return sum;
                    });
  return TT_SUCCESS;
}

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

extern "C" tt_status tt_conv2d_s8(const tt_context* ctx, const tt_conv_params* params, const tt_dims* input_dims,
                                  const int8_t* input, const tt_dims* filter_dims, const int8_t* filter,
                                  const int32_t* bias, const tt_requantization* requant, const tt_dims* output_dims,
                                  int8_t* output) {
  if (!core::ValidConv2d(params, input_dims, input, filter_dims, filter, requant, output_dims, output)) {
    return TT_ARG_ERROR;
  }
  return core::Conv2dS8(ctx, *params, *input_dims, input, *filter_dims, filter, bias, *requant, *output_dims, output);
}

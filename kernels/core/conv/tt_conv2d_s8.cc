// tt_conv2d_s8: its argument checks, then core::Conv2dS8 (conv2d_s8.cc: the portable loops, or CMSIS-NN's calls
// in the cmsis-nn kernel set), so every kernel set checks the same way.
#include "../common/conv_forward.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_conv2d_s8(const tt_context* ctx, const tt_conv_params* params, const tt_dims* input_dims,
                                  const int8_t* input, const tt_dims* filter_dims, const int8_t* filter,
                                  const int32_t* bias, const tt_requantization* requant, const tt_dims* output_dims,
                                  int8_t* output) {
  if (!core::ValidConv2d(params, input_dims, input, filter_dims, filter, requant, output_dims, output)) {
    return TT_ARG_ERROR;
  }
  return core::Conv2dS8(ctx, *params, *input_dims, input, *filter_dims, filter, bias, *requant, *output_dims, output);
}

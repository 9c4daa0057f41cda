#include "../common/conv_forward.h"
#include "../tt_functions.h"

extern "C" int32_t tt_conv2d_s8_get_buffer_size(const tt_conv_params* params, const tt_dims* input_dims,
                                                const tt_dims* filter_dims, const tt_dims* output_dims) {
  return tinytrain_core::PortableScratchBytes(params, input_dims, filter_dims, output_dims);
}

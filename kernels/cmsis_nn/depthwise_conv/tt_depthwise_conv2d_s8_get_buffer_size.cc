// tt_depthwise_conv2d_s8_get_buffer_size for Cortex-M: the largest scratch CMSIS-NN asks for one of
// tt_depthwise_conv2d_s8's row calls (../common/conv_rows.h).
#include "../../core/tt_functions.h"
#include "../common/conv_rows.h"
#include "arm_nnfunctions.h"

namespace cm = tinytrain_cmsis_nn;

extern "C" int32_t tt_depthwise_conv2d_s8_get_buffer_size(const tt_conv_params* params, const tt_dims* input_dims,
                                                          const tt_dims* filter_dims, const tt_dims* output_dims) {
  return cm::MaxRowScratch(params, input_dims, filter_dims, output_dims,
                           [&](const cm::ConvRow& row, const cmsis_nn_dims& input, const cmsis_nn_dims& filter,
                               const cmsis_nn_dims& output) {
                             const cmsis_nn_dw_conv_params conv = cm::DepthwiseRowParams(*params, row);
                             return arm_depthwise_conv_wrapper_s8_get_buffer_size(&conv, &input, &filter, &output);
                           });
}

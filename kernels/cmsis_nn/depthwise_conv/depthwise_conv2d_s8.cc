// tt_depthwise_conv2d_s8's kernel for Cortex-M (the cmsis-nn kernel set of tinytrain_tflm.firmware.device):
// arm_depthwise_conv_wrapper_s8, one call per output row (or per image), with the model's per-channel multipliers and
// shifts (see ../common/conv_rows.h for why per row and why the results equal the portable core's).
#include "../../core/common/conv_forward.h"
#include "../../core/tt_functions.h"
#include "../common/conv_rows.h"
#include "arm_nnfunctions.h"

namespace cm = tinytrain_cmsis_nn;

tt_status tinytrain_core::DepthwiseConv2dS8(const tt_context* ctx, const tt_conv_params& params,
                                            const tt_dims& input_dims, const int8_t* input, const tt_dims& filter_dims,
                                            const int8_t* filter, const int32_t* bias,
                                            const tt_requantization& requant, const tt_dims& output_dims,
                                            int8_t* output) {
  const cm::RowOperands op = cm::MakeRowOperands(ctx, requant, filter_dims, output_dims);
  return cm::ForEachRow(params, input_dims, input, filter_dims.h, output_dims, output,
                        [&](const cm::ConvRow& row, const int8_t* x, int8_t* y) {
                          const cmsis_nn_dw_conv_params conv = cm::DepthwiseRowParams(params, row);
                          const cmsis_nn_dims rows = cm::RowInputDims(input_dims, row);
                          const cmsis_nn_dims outputs = cm::RowOutputDims(output_dims, row);
                          return arm_depthwise_conv_wrapper_s8(&op.context, &conv, &op.quant, &rows, x, &op.filter,
                                                               filter, &op.bias, bias, &outputs, y);
                        });
}

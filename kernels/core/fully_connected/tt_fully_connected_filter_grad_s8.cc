#include "../common/conv_grad_loops.h"
#include "../tt_functions.h"

extern "C" tt_status tt_fully_connected_filter_grad_s8(const tt_quant_params* input_quant,
                                                       const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                       const tt_dims* input_dims, const int8_t* input,
                                                       const tt_dims* grad_filter_dims, tt_grad_out* grad_filter) {
  if (!tinytrain_core::IsMatrix(grad_output_dims) || !tinytrain_core::IsMatrix(input_dims) ||
      !tinytrain_core::IsMatrix(grad_filter_dims)) {
    return TT_ARG_ERROR;
  }
  return tt_conv2d_filter_grad_s8(&tinytrain_core::kFullyConnectedAsConv, input_quant, grad_output_dims, grad_output,
                                  input_dims, input, grad_filter_dims, grad_filter);
}

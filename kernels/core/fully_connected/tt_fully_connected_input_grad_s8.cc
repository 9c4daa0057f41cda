#include "../common/conv_grad_loops.h"
#include "../tt_functions.h"

extern "C" tt_status tt_fully_connected_input_grad_s8(const tt_filter_quant_params* filter_quant,
                                                      const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                      const tt_dims* filter_dims, const int8_t* filter,
                                                      const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  if (!tinytrain_core::IsMatrix(grad_output_dims) || !tinytrain_core::IsMatrix(filter_dims) ||
      !tinytrain_core::IsMatrix(grad_input_dims)) {
    return TT_ARG_ERROR;
  }
  return tt_conv2d_input_grad_s8(&tinytrain_core::kFullyConnectedAsConv, filter_quant, grad_output_dims, grad_output,
                                 filter_dims, filter, grad_input_dims, grad_input);
}

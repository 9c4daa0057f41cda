#include "../common/layer_grad_kernels.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_depthwise_conv2d_input_grad_s8(const tt_depthwise_conv_grad_params* params,
                                                       const tt_filter_quant_params* filter_quant,
                                                       const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                       const tt_dims* filter_dims, const int8_t* filter,
                                                       const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  return core::RunDepthwiseConv2dInputGrad(
      params, filter_quant, grad_output_dims, grad_output, filter_dims, filter, grad_input_dims, grad_input,
      [](const auto& shape, const auto& grad, const int8_t* weights, auto& sink) {
        core::DepthwiseConv2dInputGrad(shape, grad, weights, sink);
      });
}

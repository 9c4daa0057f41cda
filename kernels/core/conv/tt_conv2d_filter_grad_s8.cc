#include "../common/layer_grad_kernels.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_conv2d_filter_grad_s8(const tt_conv_grad_params* params, const tt_quant_params* input_quant,
                                              const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                              const tt_dims* input_dims, const int8_t* input,
                                              const tt_dims* grad_filter_dims, tt_grad_out* grad_filter) {
  return core::RunConv2dFilterGrad(params, input_quant, grad_output_dims, grad_output, input_dims, input, grad_filter_dims,
                                   grad_filter, [](const auto& shape, const auto& grad, const int8_t* inputs,
                                                   auto& sink) { core::Conv2dFilterGrad(shape, grad, inputs, sink); });
}

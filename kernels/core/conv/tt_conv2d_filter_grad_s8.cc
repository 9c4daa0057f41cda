#include "../common/conv_grad_loops.h"
#include "../common/grad_io.h"
#include "../common/layer_grad_kernels.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_conv2d_filter_grad_s8(const tt_conv_grad_params* params, const tt_quant_params* input_quant,
                                              const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                              const tt_dims* input_dims, const int8_t* input,
                                              const tt_dims* grad_filter_dims, tt_grad_out* grad_filter) {
  if (!core::ValidConvParams(params) || !core::ValidInputQuant(input_quant) || !core::ValidDims(grad_output_dims) ||
      !core::ValidDims(input_dims) || !core::ValidDims(grad_filter_dims) || input == nullptr ||
      !core::ValidGradIn(grad_output) || !core::ValidGradOut(grad_filter)) {
    return TT_ARG_ERROR;
  }
  const tt_dims& output_shape = *grad_output_dims;
  const tt_dims& input_shape = *input_dims;
  const tt_dims& grad_filter_shape = *grad_filter_dims;
  if (input_shape.n != output_shape.n || grad_filter_shape.n > output_shape.c || grad_filter_shape.c != input_shape.c) {
    return TT_ARG_ERROR;
  }

  const core::LayerGradShape<tt_conv_grad_params, tt_quant_params> shape{*params, *input_quant, output_shape, input_shape,
                                                                         grad_filter_shape};
  core::WithGrads(*grad_output, *grad_filter,
                  [&](auto grad, auto sink) { core::Conv2dFilterGrad(shape, grad, input, sink); });
  return TT_SUCCESS;
}

#include "../common/conv_grad_loops.h"
#include "../common/grad_io.h"
#include "../common/layer_grad_kernels.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_conv2d_input_grad_s8(const tt_conv_grad_params* params,
                                             const tt_filter_quant_params* filter_quant,
                                             const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                             const tt_dims* filter_dims, const int8_t* filter,
                                             const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  if (!core::ValidConvParams(params) || !core::ValidDims(grad_output_dims) || !core::ValidDims(filter_dims) ||
      !core::ValidDims(grad_input_dims) || filter == nullptr || !core::ValidGradIn(grad_output) ||
      !core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const tt_dims& output_shape = *grad_output_dims;
  const tt_dims& filter_shape = *filter_dims;
  const tt_dims& input_shape = *grad_input_dims;
  if (input_shape.n != output_shape.n || filter_shape.n != output_shape.c || filter_shape.c != input_shape.c ||
      !core::ValidFilterQuant(filter_quant, output_shape.c)) {
    return TT_ARG_ERROR;
  }

  const core::LayerGradShape<tt_conv_grad_params, tt_filter_quant_params> shape{
      *params, *filter_quant, output_shape, filter_shape, input_shape};
  core::WithGrads(*grad_output, *grad_input, [&](auto grad, auto sink) { core::Conv2dInputGrad(shape, grad, filter, sink); });
  return TT_SUCCESS;
}

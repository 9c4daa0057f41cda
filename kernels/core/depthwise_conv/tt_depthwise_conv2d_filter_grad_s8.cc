#include "../common/conv_grad_loops.h"
#include "../common/grad_io.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_depthwise_conv2d_filter_grad_s8(const tt_depthwise_conv_grad_params* params,
                                                        const tt_quant_params* input_quant,
                                                        const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                        const tt_dims* input_dims, const int8_t* input,
                                                        const tt_dims* grad_filter_dims, tt_grad_out* grad_filter) {
  if (params == nullptr || !core::ValidConvParams(&params->conv) || params->depth_multiplier < 1 ||
      !core::ValidInputQuant(input_quant) || !core::ValidDims(grad_output_dims) || !core::ValidDims(input_dims) ||
      !core::ValidDims(grad_filter_dims) || input == nullptr || !core::ValidGradIn(grad_output) ||
      !core::ValidGradOut(grad_filter)) {
    return TT_ARG_ERROR;
  }
  const int32_t multiplier = params->depth_multiplier;
  const tt_dims& output_shape = *grad_output_dims;
  const tt_dims& input_shape = *input_dims;
  const tt_dims& grad_filter_shape = *grad_filter_dims;
  // Division, not input channels * multiplier, so no argument can overflow.
  if (input_shape.n != output_shape.n || grad_filter_shape.n != 1 || grad_filter_shape.c > output_shape.c ||
      output_shape.c % multiplier != 0 || output_shape.c / multiplier != input_shape.c) {
    return TT_ARG_ERROR;
  }

  const core::ConvGeometry geometry = core::MakeConvGeometry(params->conv, input_shape, grad_filter_shape, output_shape);
  const int32_t zero_point = input_quant->zero_point;
  core::WithGradReader(*grad_output, [&](auto grad) {
    core::WriteGrad(*grad_filter, [&](auto sink) {
      core::GatherFilterGrad(
          geometry, output_shape.n, grad_filter_shape, input_quant->scale, sink,
          [&](int32_t n, int32_t oy, int32_t ox, int32_t iy, int32_t ix, int32_t /*filter_row, always 0*/, int32_t oc) {
            const int32_t centered_input = input[core::Offset(input_shape, n, iy, ix, oc / multiplier)] - zero_point;
            return grad[core::Offset(output_shape, n, oy, ox, oc)] * static_cast<float>(centered_input);
          });
    });
  });
  return TT_SUCCESS;
}

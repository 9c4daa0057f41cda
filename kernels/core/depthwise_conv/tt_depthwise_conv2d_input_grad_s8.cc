#include "../common/conv_grad_loops.h"
#include "../common/grad_io.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_depthwise_conv2d_input_grad_s8(const tt_depthwise_conv_grad_params* params,
                                                       const tt_filter_quant_params* filter_quant,
                                                       const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                       const tt_dims* filter_dims, const int8_t* filter,
                                                       const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  if (params == nullptr || !core::ValidConvParams(&params->conv) || params->depth_multiplier < 1 ||
      !core::ValidDims(grad_output_dims) || !core::ValidDims(filter_dims) || !core::ValidDims(grad_input_dims) ||
      filter == nullptr || !core::ValidGradIn(grad_output) || !core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const int32_t multiplier = params->depth_multiplier;
  const tt_dims& output_shape = *grad_output_dims;
  const tt_dims& filter_shape = *filter_dims;
  const tt_dims& input_shape = *grad_input_dims;
  // Division, not input channels * multiplier, so no argument can overflow.
  if (input_shape.n != output_shape.n || filter_shape.n != 1 || filter_shape.c != output_shape.c ||
      output_shape.c % multiplier != 0 || output_shape.c / multiplier != input_shape.c ||
      !core::ValidFilterQuant(filter_quant, output_shape.c)) {
    return TT_ARG_ERROR;
  }

  const core::ConvGeometry geometry = core::MakeConvGeometry(params->conv, input_shape, filter_shape, output_shape);
  const core::FilterScales scales(*filter_quant);
  core::WithGradReader(*grad_output, [&](auto grad) {
    core::WriteGrad(*grad_input, [&](auto sink) {
      core::GatherInputGrad(geometry, input_shape, sink,
                            [&](int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, int32_t ci) {
                              const int32_t grad_row = core::Offset(output_shape, n, oy, ox, 0);
                              const int32_t filter_tap = core::Offset(filter_shape, 0, ky, kx, 0);
                              float sum = 0.0f;
                              // The output channels computed from input channel ci.
                              for (int32_t oc = ci * multiplier; oc < (ci + 1) * multiplier; ++oc) {
                                sum += grad[grad_row + oc] * scales[oc] * static_cast<float>(filter[filter_tap + oc]);
                              }
                              return sum;
                            });
    });
  });
  return TT_SUCCESS;
}

// TFLM glue of TT_CONV_2D_INPUT_GRAD and TT_CONV_2D_FILTER_GRAD over
// tt_conv2d_input_grad_s8 and tt_conv2d_filter_grad_s8.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "layer_grad_util.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

// Input gradient: operand = filter [cout, kh, kw, cin], result = grad_input [n, ih, iw, cin].

constexpr const char* kInputGradName = "TT_CONV_2D_INPUT_GRAD";

using InputGradOpData = ConvGradOpData<tt_conv_2d_input_grad_options, tt_filter_quant_params, tt_conv_grad_params>;

void* InitInputGrad(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<InputGradOpData>(context, buffer, length, tt_parse_conv_2d_input_grad);
}

TfLiteStatus PrepareInputGrad(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<InputGradOpData>(context, node, kInputGradName, kLayerGradInputs));
  auto* data = static_cast<InputGradOpData*>(node->user_data);
  TT_ENSURE_OK(PrepareConvParams(context, kInputGradName, data->options, &data->params));
  const LayerGradTensors tensors(context, node);
  TT_ENSURE_OK(CheckShapes(context, kInputGradName, tensors,
                           {{"grad_output", 4, "[n, oh, ow, cout]"},
                            {"filter", 4, "[cout, kh, kw, cin]"},
                            {"grad_input", 4, "[n, ih, iw, cin]"}}));
  data->dims = NhwcDims(tensors);
  const tt_dims& grad_output = data->dims.grad_output;
  const tt_dims& filter = data->dims.operand;
  const tt_dims& grad_input = data->dims.result;
  TT_ENSURE_MSG(context, filter.n == grad_output.c && filter.c == grad_input.c, kInputGradName,
                "filter must be [%d, kh, kw, %d] for grad_output and grad_input, got [%d, %d, %d, %d]",
                static_cast<int>(grad_output.c), static_cast<int>(grad_input.c), static_cast<int>(filter.n),
                static_cast<int>(filter.h), static_cast<int>(filter.w), static_cast<int>(filter.c));
  TT_ENSURE_OK(CheckConvGeometry(context, kInputGradName, data->params, grad_output, grad_input, filter));
  return PrepareFilterQuant(context, kInputGradName, tensors.operand.get(), 0, grad_output.c, &data->quant);
}

TfLiteStatus EvalInputGrad(TfLiteContext* context, TfLiteNode* node) {
  return EvalConvGrad<InputGradOpData>(context, node, kInputGradName, tt_conv2d_input_grad_s8);
}

// Filter gradient: operand = forward input [n, ih, iw, cin], result = grad_filter [c_update, kh, kw, cin].

constexpr const char* kFilterGradName = "TT_CONV_2D_FILTER_GRAD";

using FilterGradOpData = ConvGradOpData<tt_conv_2d_filter_grad_options, tt_quant_params, tt_conv_grad_params>;

void* InitFilterGrad(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<FilterGradOpData>(context, buffer, length, tt_parse_conv_2d_filter_grad);
}

TfLiteStatus PrepareFilterGrad(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<FilterGradOpData>(context, node, kFilterGradName, kLayerGradInputs));
  auto* data = static_cast<FilterGradOpData*>(node->user_data);
  TT_ENSURE_OK(PrepareConvParams(context, kFilterGradName, data->options, &data->params));
  const LayerGradTensors tensors(context, node);
  TT_ENSURE_OK(CheckShapes(context, kFilterGradName, tensors,
                           {{"grad_output", 4, "[n, oh, ow, cout]"},
                            {"input", 4, "[n, ih, iw, cin]"},
                            {"grad_filter", 4, "[c_update, kh, kw, cin]"}}));
  TT_ENSURE_OK(PrepareInputQuant(context, kFilterGradName, tensors.operand.get(), &data->quant));
  data->dims = NhwcDims(tensors);
  const tt_dims& grad_output = data->dims.grad_output;
  const tt_dims& input = data->dims.operand;
  const tt_dims& grad_filter = data->dims.result;
  TT_ENSURE_MSG(context, grad_filter.n <= grad_output.c, kFilterGradName,
                "grad_filter updates %d output channels; it must update 1 to %d (grad_output's channels)",
                static_cast<int>(grad_filter.n), static_cast<int>(grad_output.c));
  TT_ENSURE_MSG(context, grad_filter.c == input.c, kFilterGradName,
                "grad_filter has %d input channels but the input has %d", static_cast<int>(grad_filter.c),
                static_cast<int>(input.c));
  return CheckConvGeometry(context, kFilterGradName, data->params, grad_output, input, grad_filter);
}

TfLiteStatus EvalFilterGrad(TfLiteContext* context, TfLiteNode* node) {
  return EvalConvGrad<FilterGradOpData>(context, node, kFilterGradName, tt_conv2d_filter_grad_s8);
}

}  // namespace

const TFLMRegistration* Register_CONV_2D_INPUT_GRAD() {
  static const TFLMRegistration registration = RegisterOp(InitInputGrad, PrepareInputGrad, EvalInputGrad);
  return &registration;
}

const TFLMRegistration* Register_CONV_2D_FILTER_GRAD() {
  static const TFLMRegistration registration = RegisterOp(InitFilterGrad, PrepareFilterGrad, EvalFilterGrad);
  return &registration;
}

}  // namespace tinytrain

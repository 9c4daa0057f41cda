// TFLM glue of TT_CONV_2D_INPUT_GRAD and TT_CONV_2D_FILTER_GRAD over
// tt_conv2d_input_grad_s8 and tt_conv2d_filter_grad_s8.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "layer_grad_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
// Input gradient: operand = filter [cout, kh, kw, cin], result = grad_input [n, ih, iw, cin].

void* Conv2dInputGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitConvGrad<OpData>(context, buffer, length, tt_parse_conv_2d_input_grad);
}

TfLiteStatus Conv2dInputGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, InputGradInputs(node)));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(CheckConvParams(context, kName, data->params));
  const LayerGradTensors tensors(context, node);
  TT_ENSURE_OK(CheckShapes(context, kName, tensors,
                           {{"grad_output", 4, "[n, oh, ow, cout]"},
                            {"filter", 4, "[cout, kh, kw, cin]"},
                            {"grad_input", 4, "[n, ih, iw, cin]"}}));
  const LayerGradDims dims = DimsOf<NhwcDims>(tensors);
  const tt_dims& grad_output = dims.grad_output;
  const tt_dims& filter = dims.operand;
  const tt_dims& grad_input = dims.result;
  TT_ENSURE_MSG(context, filter.n == grad_output.c && filter.c == grad_input.c, kName,
                "filter must be [%d, kh, kw, %d] for grad_output and grad_input, got [%d, %d, %d, %d]",
                static_cast<int>(grad_output.c), static_cast<int>(grad_input.c), static_cast<int>(filter.n),
                static_cast<int>(filter.h), static_cast<int>(filter.w), static_cast<int>(filter.c));
  TT_ENSURE_OK(CheckConvGeometry(context, kName, data->params, grad_output, grad_input, filter));
  TT_ENSURE_OK(PrepareFusedMask(context, node, kName, grad_input));
  return PrepareFilterQuant(context, kName, tensors.operand.get(), 0, grad_output.c, &data->quant);
}

TfLiteStatus Conv2dInputGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalLayerGrad<Conv2dInputGradOp>(context, node);
}

// Filter gradient: operand = forward input [n, ih, iw, cin], result = grad_filter [c_update, kh, kw, cin].

void* Conv2dFilterGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitConvGrad<OpData>(context, buffer, length, tt_parse_conv_2d_filter_grad);
}

TfLiteStatus Conv2dFilterGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kLayerGradInputs));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(CheckConvParams(context, kName, data->params));
  const LayerGradTensors tensors(context, node);
  TT_ENSURE_OK(CheckShapes(context, kName, tensors,
                           {{"grad_output", 4, "[n, oh, ow, cout]"},
                            {"input", 4, "[n, ih, iw, cin]"},
                            {"grad_filter", 4, "[c_update, kh, kw, cin]"}}));
  TT_ENSURE_OK(PrepareInputQuant(context, kName, tensors.operand.get(), &data->quant));
  const LayerGradDims dims = DimsOf<NhwcDims>(tensors);
  const tt_dims& grad_output = dims.grad_output;
  const tt_dims& input = dims.operand;
  const tt_dims& grad_filter = dims.result;
  TT_ENSURE_MSG(context, grad_filter.n <= grad_output.c, kName,
                "grad_filter updates %d output channels; it must update 1 to %d (grad_output's channels)",
                static_cast<int>(grad_filter.n), static_cast<int>(grad_output.c));
  TT_ENSURE_MSG(context, grad_filter.c == input.c, kName,
                "grad_filter has %d input channels but the input has %d", static_cast<int>(grad_filter.c),
                static_cast<int>(input.c));
  return CheckConvGeometry(context, kName, data->params, grad_output, input, grad_filter);
}

TfLiteStatus Conv2dFilterGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalLayerGrad<Conv2dFilterGradOp>(context, node);
}

const TFLMRegistration* Register_CONV_2D_INPUT_GRAD() {
  return RegisterGeneric<Conv2dInputGradOp>();
}

const TFLMRegistration* Register_CONV_2D_FILTER_GRAD() {
  return RegisterGeneric<Conv2dFilterGradOp>();
}

}  // namespace tinytrain

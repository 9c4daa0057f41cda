// TFLM glue of TT_DEPTHWISE_CONV_2D_INPUT_GRAD and
// TT_DEPTHWISE_CONV_2D_FILTER_GRAD over tt_depthwise_conv2d_input_grad_s8 and
// tt_depthwise_conv2d_filter_grad_s8.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "layer_grad_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

// Conv params plus the depth multiplier, range-checked.
TfLiteStatus CheckDepthwiseParams(TfLiteContext* context, const char* op_name,
                                  const tt_depthwise_conv_grad_params& params) {
  TT_ENSURE_OK(CheckConvParams(context, op_name, params.conv));
  TT_ENSURE_MSG(context, params.depth_multiplier >= 1, op_name, "depth_multiplier must be >= 1, got %d",
                static_cast<int>(params.depth_multiplier));
  return kTfLiteOk;
}

// grad_output's channels must be the input's times the depth multiplier
// (compared by division, which cannot overflow).
TfLiteStatus CheckDepthwiseChannels(TfLiteContext* context, const char* op_name, const tt_dims& grad_output,
                                    const tt_dims& input, int32_t depth_multiplier) {
  TT_ENSURE_MSG(context, grad_output.c % depth_multiplier == 0 && grad_output.c / depth_multiplier == input.c,
                op_name, "grad_output has %d channels but the input has %d with depth_multiplier %d",
                static_cast<int>(grad_output.c), static_cast<int>(input.c), static_cast<int>(depth_multiplier));
  return kTfLiteOk;
}

}  // namespace

// Input gradient: operand = filter [1, kh, kw, cin * m], result = grad_input [n, ih, iw, cin].

void* DepthwiseConv2dInputGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitConvGrad<OpData>(context, buffer, length, tt_parse_depthwise_conv_2d_input_grad);
}

TfLiteStatus DepthwiseConv2dInputGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, InputGradInputs(node)));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(CheckDepthwiseParams(context, kName, data->params));
  const LayerGradTensors tensors(context, node);
  TT_ENSURE_OK(CheckShapes(context, kName, tensors,
                           {{"grad_output", 4, "[n, oh, ow, cin * m]"},
                            {"filter", 4, "[1, kh, kw, cin * m]"},
                            {"grad_input", 4, "[n, ih, iw, cin]"}}));
  const LayerGradDims dims = DimsOf<NhwcDims>(tensors);
  const tt_dims& grad_output = dims.grad_output;
  const tt_dims& filter = dims.operand;
  const tt_dims& grad_input = dims.result;
  TT_ENSURE_OK(CheckDepthwiseChannels(context, kName, grad_output, grad_input, data->params.depth_multiplier));
  TT_ENSURE_MSG(context, filter.n == 1 && filter.c == grad_output.c, kName,
                "filter must be [1, kh, kw, %d] for grad_output, got [%d, %d, %d, %d]",
                static_cast<int>(grad_output.c), static_cast<int>(filter.n), static_cast<int>(filter.h),
                static_cast<int>(filter.w), static_cast<int>(filter.c));
  TT_ENSURE_OK(CheckConvGeometry(context, kName, data->params.conv, grad_output, grad_input, filter));
  TT_ENSURE_OK(PrepareFusedMask(context, node, kName, grad_input));
  return PrepareFilterQuant(context, kName, tensors.operand.get(), 3, grad_output.c, &data->quant);
}

TfLiteStatus DepthwiseConv2dInputGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalLayerGrad<DepthwiseConv2dInputGradOp>(context, node);
}

// Filter gradient: operand = forward input [n, ih, iw, cin], result = grad_filter [1, kh, kw, c_update].

void* DepthwiseConv2dFilterGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitConvGrad<OpData>(context, buffer, length, tt_parse_depthwise_conv_2d_filter_grad);
}

TfLiteStatus DepthwiseConv2dFilterGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kLayerGradInputs));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(CheckDepthwiseParams(context, kName, data->params));
  const LayerGradTensors tensors(context, node);
  TT_ENSURE_OK(CheckShapes(context, kName, tensors,
                           {{"grad_output", 4, "[n, oh, ow, cin * m]"},
                            {"input", 4, "[n, ih, iw, cin]"},
                            {"grad_filter", 4, "[1, kh, kw, c_update]"}}));
  TT_ENSURE_OK(PrepareInputQuant(context, kName, tensors.operand.get(), &data->quant));
  const LayerGradDims dims = DimsOf<NhwcDims>(tensors);
  const tt_dims& grad_output = dims.grad_output;
  const tt_dims& input = dims.operand;
  const tt_dims& grad_filter = dims.result;
  TT_ENSURE_OK(CheckDepthwiseChannels(context, kName, grad_output, input, data->params.depth_multiplier));
  TT_ENSURE_MSG(context, grad_filter.n == 1 && grad_filter.c <= grad_output.c, kName,
                "grad_filter must be [1, kh, kw, c_update] with c_update 1 to %d (grad_output's channels), "
                "got [%d, %d, %d, %d]",
                static_cast<int>(grad_output.c), static_cast<int>(grad_filter.n), static_cast<int>(grad_filter.h),
                static_cast<int>(grad_filter.w), static_cast<int>(grad_filter.c));
  return CheckConvGeometry(context, kName, data->params.conv, grad_output, input, grad_filter);
}

TfLiteStatus DepthwiseConv2dFilterGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalLayerGrad<DepthwiseConv2dFilterGradOp>(context, node);
}

const TFLMRegistration* Register_DEPTHWISE_CONV_2D_INPUT_GRAD() {
  return RegisterGeneric<DepthwiseConv2dInputGradOp>();
}

const TFLMRegistration* Register_DEPTHWISE_CONV_2D_FILTER_GRAD() {
  return RegisterGeneric<DepthwiseConv2dFilterGradOp>();
}

}  // namespace tinytrain

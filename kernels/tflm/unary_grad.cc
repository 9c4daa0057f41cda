// TFLM glue of TT_UNARY_GRAD over tt_unary_grad_s8.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr int kSaved = 2;
constexpr int kUnaryGradInputs = 4;  // grad_output, its scale, saved, control

}  // namespace

void* UnaryGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_unary_grad);
}

TfLiteStatus UnaryGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kUnaryGradInputs));
  auto* data = static_cast<OpData*>(node->user_data);
  const auto& o = data->options;
  TT_ENSURE_MSG(context, TT_UNARY_LOGISTIC <= o.function && o.function <= TT_UNARY_LEAKY_RELU, kName,
                "function must be one of the UNARY_* constants (%d to %d), got %d", TT_UNARY_LOGISTIC,
                TT_UNARY_LEAKY_RELU, static_cast<int>(o.function));

  TT_ENSURE_OK(PrepareElementwiseGradCount(context, node, kName, &data->count));
  TT_TEMP_TENSOR(saved, context, node->inputs->data[kSaved], kName);
  TT_ENSURE_MSG(context, saved.get() != nullptr && saved->type == kTfLiteInt8, kName,
                "saved must be the int8 forward tensor");
  TT_ENSURE_MSG(context, NumElements(saved->dims) == data->count, kName,
                "saved must have grad_output's %d elements, got %d", static_cast<int>(data->count),
                NumElements(saved->dims));
  TT_ENSURE_MSG(context, IsPerTensorQuantized(saved.get()) && saved->params.scale > 0.0f, kName,
                "saved needs per-tensor quantization with a positive scale");
  data->params = tt_unary_params{o.function, o.alpha, QuantParams(saved.get())};
  return kTfLiteOk;
}

TfLiteStatus UnaryGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  const int8_t* saved = EvalInput(context, node, kSaved)->data.int8;
  return EvalGradOp<OpData>(context, node, kName,
                            [saved](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_input) {
                              return data.kernel(&data.params, data.count, saved, grad_output, grad_input);
                            });
}

const TFLMRegistration* Register_UNARY_GRAD() { return RegisterGeneric<UnaryGradOp>(); }

}  // namespace tinytrain

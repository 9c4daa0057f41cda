// TFLM glue of TT_ACTIVATION_MASK and TT_ACTIVATION_GRAD over
// tt_activation_mask_s8 and tt_activation_grad_s8 / _mask.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

// Both ops' options hold the clamp range; the checks are the same.
template <typename Options>
TfLiteStatus PrepareClampRange(TfLiteContext* context, const char* op_name, const Options& options,
                               tt_activation_params* params) {
  TT_ENSURE_MSG(context, -129 <= options.lower_q && options.lower_q < options.upper_q && options.upper_q <= 128,
                op_name, "needs -129 <= lower_q < upper_q <= 128, got lower_q %d and upper_q %d",
                static_cast<int>(options.lower_q), static_cast<int>(options.upper_q));
  *params = tt_activation_params{options.lower_q, options.upper_q};
  return kTfLiteOk;
}

constexpr int kMaskY = 0;       // TT_ACTIVATION_MASK's input
constexpr int kMaskOutput = 0;  // and output
constexpr int kActivation = 2;
constexpr int kActivationGradInputs = 4;  // grad_output, its scale, activation, control

}  // namespace

void* ActivationMaskOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_activation_mask);
}

TfLiteStatus ActivationMaskOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(CheckOpData<OpData>(context, node, kName));
  TT_ENSURE_OK(CheckIoCounts(context, node, kName, 1, 1, 1));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(PrepareClampRange(context, kName, data->options, &data->params));

  TT_TEMP_TENSOR(y, context, node->inputs->data[kMaskY], kName);
  TT_TEMP_TENSOR(mask, context, node->outputs->data[kMaskOutput], kName);
  TT_ENSURE_MSG(context, y.get() != nullptr && y->type == kTfLiteInt8, kName, "y must be an int8 tensor");
  data->count = NumElements(y->dims);
  TT_ENSURE_MSG(context, data->count >= 1, kName, "y is empty");
  const int bytes = TT_ACTIVATION_MASK_BYTES(data->count);
  TT_ENSURE_MSG(context, mask->type == kTfLiteUInt8 && mask->dims->size == 1 && mask->dims->data[0] == bytes,
                kName, "mask must be uint8 [%d] (one bit per element of y)", bytes);
  return kTfLiteOk;
}

TfLiteStatus ActivationMaskOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  const auto* data = static_cast<const OpData*>(node->user_data);
  TT_ENSURE_STATUS(context,
                   data->kernel(&data->params, data->count, EvalInput(context, node, kMaskY)->data.int8,
                                EvalOutput(context, node, kMaskOutput)->data.uint8),
                   kName, "eval");
  return kTfLiteOk;
}


void* ActivationGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_activation_grad);
}

TfLiteStatus ActivationGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kActivationGradInputs));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(PrepareClampRange(context, kName, data->options, &data->params));

  TT_ENSURE_OK(PrepareElementwiseGradCount(context, node, kName, &data->count));
  TT_TEMP_TENSOR(activation, context, node->inputs->data[kActivation], kName);
  TT_ENSURE_MSG(context, activation.get() != nullptr, kName, "activation input is missing");
  data->activation_is_mask = activation->type == kTfLiteUInt8;
  const int activation_count = NumElements(activation->dims);
  if (data->activation_is_mask) {
    const int bytes = TT_ACTIVATION_MASK_BYTES(data->count);
    TT_ENSURE_MSG(context, activation_count == bytes, kName,
                  "a uint8 mask activation must have %d bytes (one bit per gradient element), got %d", bytes,
                  activation_count);
  } else {
    TT_ENSURE_MSG(context, activation->type == kTfLiteInt8, kName,
                  "activation must be the int8 output or its uint8 mask, got %s", TypeName(activation->type));
    TT_ENSURE_MSG(context, activation_count == data->count, kName,
                  "an int8 activation must have grad_output's %d elements, got %d", static_cast<int>(data->count),
                  activation_count);
  }
  return kTfLiteOk;
}

TfLiteStatus ActivationGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* activation = EvalInput(context, node, kActivation);
  return EvalGradOp<OpData>(
      context, node, kName, [activation](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_input) {
        return data.activation_is_mask
                   ? data.kernel.from_mask(data.count, activation->data.uint8, grad_output, grad_input)
                   : data.kernel.from_output(&data.params, data.count, activation->data.int8, grad_output, grad_input);
      });
}

const TFLMRegistration* Register_ACTIVATION_MASK() { return RegisterGeneric<ActivationMaskOp>(); }

const TFLMRegistration* Register_ACTIVATION_GRAD() { return RegisterGeneric<ActivationGradOp>(); }

}  // namespace tinytrain

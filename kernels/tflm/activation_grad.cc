// TFLM glue of TT_ACTIVATION_MASK and TT_ACTIVATION_GRAD over
// tt_activation_mask_s8 and tt_activation_grad_s8 / _mask.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
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

namespace mask {

constexpr const char* kOpName = "TT_ACTIVATION_MASK";
constexpr int kY = 0;
constexpr int kMask = 0;

struct OpData {
  tt_status options_status;
  tt_activation_mask_options options;
  tt_activation_params params;
  int32_t count;  // Elements of y.
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_activation_mask);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(CheckOpData<OpData>(context, node, kOpName));
  TT_ENSURE_OK(CheckIoCounts(context, node, kOpName, 1, 1, 1));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(PrepareClampRange(context, kOpName, data->options, &data->params));

  TT_TEMP_TENSOR(y, context, node->inputs->data[kY], kOpName);
  TT_TEMP_TENSOR(mask, context, node->outputs->data[kMask], kOpName);
  TT_ENSURE_MSG(context, y.get() != nullptr && y->type == kTfLiteInt8, kOpName, "y must be an int8 tensor");
  data->count = NumElements(y->dims);
  TT_ENSURE_MSG(context, data->count >= 1, kOpName, "y is empty");
  const int bytes = TT_ACTIVATION_MASK_BYTES(data->count);
  TT_ENSURE_MSG(context, mask->type == kTfLiteUInt8 && mask->dims->size == 1 && mask->dims->data[0] == bytes,
                kOpName, "mask must be uint8 [%d] (one bit per element of y)", bytes);
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const auto* data = static_cast<const OpData*>(node->user_data);
  TT_ENSURE_STATUS(context,
                   tt_activation_mask_s8(&data->params, data->count, EvalInput(context, node, kY)->data.int8,
                                         EvalOutput(context, node, kMask)->data.uint8),
                   kOpName, "eval");
  return kTfLiteOk;
}

}  // namespace mask

namespace grad {

constexpr const char* kOpName = "TT_ACTIVATION_GRAD";
constexpr int kGradOutput = kGradOpGradInput;  // followed by its scale input
constexpr int kActivation = 2;
constexpr int kInputs = 4;  // grad_output, its scale, activation, control
constexpr int kGradInput = kGradOpGradOutput;

struct OpData {
  tt_status options_status;
  tt_activation_grad_options options;
  tt_activation_params params;
  tt_grad_type grad_type;  // Representation of both gradients.
  int32_t count;           // Elements of each gradient.
  bool activation_is_mask;  // uint8 mask from TT_ACTIVATION_MASK rather than the int8 output.
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_activation_grad);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kOpName, kInputs));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(PrepareClampRange(context, kOpName, data->options, &data->params));

  TT_TEMP_TENSOR(grad_output, context, node->inputs->data[kGradOutput], kOpName);
  TT_TEMP_TENSOR(activation, context, node->inputs->data[kActivation], kOpName);
  TT_TEMP_TENSOR(grad_input, context, node->outputs->data[kGradInput], kOpName);
  data->count = NumElements(grad_output->dims);
  TT_ENSURE_MSG(context, data->count >= 1, kOpName, "grad_output is empty");
  TT_ENSURE_MSG(context, NumElements(grad_input->dims) == data->count, kOpName,
                "grad_input has %d elements, grad_output %d", NumElements(grad_input->dims),
                static_cast<int>(data->count));
  TT_ENSURE_MSG(context, activation.get() != nullptr, kOpName, "activation input is missing");
  data->activation_is_mask = activation->type == kTfLiteUInt8;
  const int activation_count = NumElements(activation->dims);
  if (data->activation_is_mask) {
    const int bytes = TT_ACTIVATION_MASK_BYTES(data->count);
    TT_ENSURE_MSG(context, activation_count == bytes, kOpName,
                  "a uint8 mask activation must have %d bytes (one bit per gradient element), got %d", bytes,
                  activation_count);
  } else {
    TT_ENSURE_MSG(context, activation->type == kTfLiteInt8, kOpName,
                  "activation must be the int8 output or its uint8 mask, got %s", TypeName(activation->type));
    TT_ENSURE_MSG(context, activation_count == data->count, kOpName,
                  "an int8 activation must have grad_output's %d elements, got %d", static_cast<int>(data->count),
                  activation_count);
  }
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* activation = EvalInput(context, node, kActivation);
  return EvalGradOp<OpData>(
      context, node, kOpName, [activation](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_input) {
        return data.activation_is_mask
                   ? tt_activation_grad_mask(data.count, activation->data.uint8, grad_output, grad_input)
                   : tt_activation_grad_s8(&data.params, data.count, activation->data.int8, grad_output, grad_input);
      });
}

}  // namespace grad
}  // namespace

const TFLMRegistration* Register_ACTIVATION_MASK() {
  static const TFLMRegistration registration = RegisterOp(mask::Init, mask::Prepare, mask::Eval);
  return &registration;
}

const TFLMRegistration* Register_ACTIVATION_GRAD() {
  static const TFLMRegistration registration = RegisterOp(grad::Init, grad::Prepare, grad::Eval);
  return &registration;
}

}  // namespace tinytrain

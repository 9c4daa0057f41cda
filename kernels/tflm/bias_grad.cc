// TFLM glue of TT_BIAS_GRAD over tt_bias_grad.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr const char* kOpName = "TT_BIAS_GRAD";
constexpr int kGradOutput = kGradOpGradInput;  // followed by its scale input
constexpr int kInputs = 3;                      // grad_output, its scale, control
constexpr int kGradBias = kGradOpGradOutput;

struct OpData {
  tt_status options_status;
  tt_bias_grad_options options;
  tt_grad_type grad_type;  // Representation of every gradient operand.
  tt_dims grad_dims;       // Shape of grad_output in NHWC.
  int32_t channels_to_update;
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_bias_grad);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kOpName, kInputs));
  auto* data = static_cast<OpData*>(node->user_data);

  TT_TEMP_TENSOR(grad_output, context, node->inputs->data[kGradOutput], kOpName);
  TT_TEMP_TENSOR(grad_bias, context, node->outputs->data[kGradBias], kOpName);
  const int rank = grad_output->dims->size;
  TT_ENSURE_MSG(context, rank >= 1 && rank <= 4, kOpName, "grad_output must have rank 1 to 4, got %d", rank);
  data->grad_dims = DimsNHWC(grad_output->dims);
  TT_ENSURE_MSG(context, grad_bias->dims->size == 1, kOpName, "grad_bias must be 1-D");
  data->channels_to_update = grad_bias->dims->data[0];
  TT_ENSURE_MSG(context, data->channels_to_update >= 1 && data->channels_to_update <= data->grad_dims.c, kOpName,
                "grad_bias has %d channels; it must have 1 to %d (grad_output's last dimension)",
                static_cast<int>(data->channels_to_update), static_cast<int>(data->grad_dims.c));
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalGradOp<OpData>(context, node, kOpName,
                            [](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_bias) {
                              return tt_bias_grad(&data.grad_dims, grad_output, data.channels_to_update, grad_bias);
                            });
}

}  // namespace

const TFLMRegistration* Register_BIAS_GRAD() {
  static const TFLMRegistration registration = RegisterOp(Init, Prepare, Eval);
  return &registration;
}

}  // namespace tinytrain

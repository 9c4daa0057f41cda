// TFLM glue of TT_BIAS_GRAD over tt_bias_grad.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr int kGradOutput = kGradOpGradInput;  // followed by its scale input
constexpr int kInputs = 3;                      // grad_output, its scale, control
constexpr int kGradBias = kGradOpGradOutput;

}  // namespace

void* BiasGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_bias_grad);
}

TfLiteStatus BiasGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kInputs));
  auto* data = static_cast<OpData*>(node->user_data);

  TT_TEMP_TENSOR(grad_output, context, node->inputs->data[kGradOutput], kName);
  TT_TEMP_TENSOR(grad_bias, context, node->outputs->data[kGradBias], kName);
  const int rank = grad_output->dims->size;
  TT_ENSURE_MSG(context, rank >= 1 && rank <= 4, kName, "grad_output must have rank 1 to 4, got %d", rank);
  data->grad_dims = DimsNHWC(grad_output->dims);
  TT_ENSURE_MSG(context, grad_bias->dims->size == 1, kName, "grad_bias must be 1-D");
  data->channels_to_update = grad_bias->dims->data[0];
  TT_ENSURE_MSG(context, data->channels_to_update >= 1 && data->channels_to_update <= data->grad_dims.c, kName,
                "grad_bias has %d channels; it must have 1 to %d (grad_output's last dimension)",
                static_cast<int>(data->channels_to_update), static_cast<int>(data->grad_dims.c));
  return kTfLiteOk;
}

TfLiteStatus BiasGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalGradOp<OpData>(context, node, kName,
                            [](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_bias) {
                              return data.kernel(&data.grad_dims, grad_output, data.channels_to_update, grad_bias);
                            });
}

const TFLMRegistration* Register_BIAS_GRAD() { return RegisterGeneric<BiasGradOp>(); }

}  // namespace tinytrain

// TFLM glue of TT_GRAD_ADD over tt_grad_add.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr int kA = 0;  // followed by its scale input
constexpr int kB = 2;  // followed by its scale input
constexpr int kControl = 4;
constexpr int kSum = 0;

}  // namespace

void* GradAddOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_grad_add);
}

TfLiteStatus GradAddOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(CheckOpData<OpData>(context, node, kName));
  TT_ENSURE_OK(CheckIoCounts(context, node, kName, 5, 1, 2));
  auto* data = static_cast<OpData*>(node->user_data);
  tt_grad_type b_type;
  TT_ENSURE_OK(PrepareGradInput(context, node, kName, kA, &data->grad_type));
  TT_ENSURE_OK(PrepareGradInput(context, node, kName, kB, &b_type));
  TT_ENSURE_MSG(context, b_type == data->grad_type, kName, "a and b must both be float32 or both int8");
  TT_ENSURE_OK(PrepareControl(context, node, kName, kControl));
  TT_ENSURE_OK(PrepareGradOutput(context, node, kName, kSum, data->grad_type));

  TT_TEMP_TENSOR(a, context, node->inputs->data[kA], kName);
  TT_TEMP_TENSOR(b, context, node->inputs->data[kB], kName);
  TT_TEMP_TENSOR(sum, context, node->outputs->data[kSum], kName);
  data->count = NumElements(a->dims);
  TT_ENSURE_MSG(context, data->count >= 1, kName, "a is empty");
  TT_ENSURE_MSG(context, NumElements(b->dims) == data->count && NumElements(sum->dims) == data->count, kName,
                "a, b and sum must have equal element counts, got %d, %d and %d", static_cast<int>(data->count),
                NumElements(b->dims), NumElements(sum->dims));
  return kTfLiteOk;
}

TfLiteStatus GradAddOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  if (!ControlBitSet(context, node, kControl, TT_CONTROL_BACKWARD)) return kTfLiteOk;
  const auto* data = static_cast<const OpData*>(node->user_data);
  tt_grad_out sum = EvalGradOutput(context, node, kSum, data->grad_type);
  const tt_grad_in a = EvalGradInputToWrite(context, node, kA, sum);
  const tt_grad_in b = EvalGradInputToWrite(context, node, kB, sum);
  TT_ENSURE_STATUS(context, data->kernel(data->count, &a, &b, &sum), kName, "eval");
  return kTfLiteOk;
}

const TFLMRegistration* Register_GRAD_ADD() { return RegisterGeneric<GradAddOp>(); }

}  // namespace tinytrain

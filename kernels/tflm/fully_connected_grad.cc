// TFLM glue of TT_FULLY_CONNECTED_INPUT_GRAD and
// TT_FULLY_CONNECTED_FILTER_GRAD over tt_fully_connected_input_grad_s8 and
// tt_fully_connected_filter_grad_s8.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "layer_grad_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

// The options have no fields: parsing checks the blob, nothing is kept.
template <typename OpData, typename Options>
void* InitFullyConnectedGrad(TfLiteContext* context, const char* buffer, size_t length,
                             tt_status (*parse)(const uint8_t*, size_t, Options*)) {
  return InitKeeping<OpData>(context, buffer, length, parse, [](const Options&, OpData&) {});
}

// The forward input of FULLY_CONNECTED may have any rank: TFLite flattens it
// to [n, in], n being grad_output's rows.
TfLiteStatus CheckFlattenedInput(TfLiteContext* context, const char* op_name, const TfLiteTensor* tensor,
                                 const char* name, int rows, int columns) {
  // 64-bit: a wrong shape must not overflow into a matching count.
  TT_ENSURE_MSG(context, NumElements(tensor->dims) == static_cast<int64_t>(rows) * columns, op_name,
                "%s has %d elements; it must have %d rows of %d", name, NumElements(tensor->dims), rows, columns);
  return kTfLiteOk;
}

}  // namespace

// Input gradient: operand = filter [out, in], result = grad_input (n * in elements).

void* FullyConnectedInputGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitFullyConnectedGrad<OpData>(context, buffer, length, tt_parse_fully_connected_input_grad);
}

TfLiteStatus FullyConnectedInputGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kLayerGradInputs));
  auto* data = static_cast<OpData*>(node->user_data);
  const LayerGradTensors tensors(context, node);
  TT_ENSURE_OK(CheckShapes(
      context, kName, tensors,
      {{"grad_output", 2, "[n, out]"}, {"filter", 2, "[out, in]"}, {"grad_input", kAnyRank, "(n * in elements)"}}));
  const int batch = tensors.grad_output->dims->data[0];
  const int outputs = tensors.grad_output->dims->data[1];
  const int inputs = tensors.operand->dims->data[1];
  TT_ENSURE_MSG(context, tensors.operand->dims->data[0] == outputs, kName,
                "filter has %d rows but grad_output has %d columns", tensors.operand->dims->data[0], outputs);
  TT_ENSURE_OK(CheckFlattenedInput(context, kName, tensors.result.get(), "grad_input", batch, inputs));
  return PrepareFilterQuant(context, kName, tensors.operand.get(), 0, outputs, &data->quant);
}

TfLiteStatus FullyConnectedInputGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalLayerGrad<FullyConnectedInputGradOp>(context, node);
}

// Filter gradient: operand = forward input (n * in elements), result = grad_filter [c_update, in].

void* FullyConnectedFilterGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitFullyConnectedGrad<OpData>(context, buffer, length, tt_parse_fully_connected_filter_grad);
}

TfLiteStatus FullyConnectedFilterGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kLayerGradInputs));
  auto* data = static_cast<OpData*>(node->user_data);
  const LayerGradTensors tensors(context, node);
  TT_ENSURE_OK(CheckShapes(
      context, kName, tensors,
      {{"grad_output", 2, "[n, out]"}, {"input", kAnyRank, "(n * in elements)"}, {"grad_filter", 2, "[c_update, in]"}}));
  TT_ENSURE_OK(PrepareInputQuant(context, kName, tensors.operand.get(), &data->quant));
  const int batch = tensors.grad_output->dims->data[0];
  const int outputs = tensors.grad_output->dims->data[1];
  const int channels_to_update = tensors.result->dims->data[0];
  const int inputs = tensors.result->dims->data[1];
  TT_ENSURE_MSG(context, channels_to_update <= outputs, kName,
                "grad_filter updates %d rows; it must update 1 to %d (grad_output's columns)", channels_to_update,
                outputs);
  TT_ENSURE_OK(CheckFlattenedInput(context, kName, tensors.operand.get(), "input", batch, inputs));
  return kTfLiteOk;
}

TfLiteStatus FullyConnectedFilterGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalLayerGrad<FullyConnectedFilterGradOp>(context, node);
}

const TFLMRegistration* Register_FULLY_CONNECTED_INPUT_GRAD() {
  return RegisterGeneric<FullyConnectedInputGradOp>();
}

const TFLMRegistration* Register_FULLY_CONNECTED_FILTER_GRAD() {
  return RegisterGeneric<FullyConnectedFilterGradOp>();
}

}  // namespace tinytrain

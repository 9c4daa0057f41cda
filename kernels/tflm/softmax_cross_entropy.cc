// TFLM glue of TT_SOFTMAX_CROSS_ENTROPY over tt_softmax_cross_entropy_*_s8.
#include "softmax_cross_entropy.h"

#include <math.h>

#include "tinytrain_ops.h"

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"

namespace tinytrain {
namespace {

constexpr const char* kOpName = SoftmaxCrossEntropyOp::kName;

}  // namespace

void* SoftmaxCrossEntropyOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<SoftmaxCrossEntropyOpData>(context, buffer, length, tt_parse_softmax_cross_entropy);
}

TfLiteStatus SoftmaxCrossEntropyOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(CheckOpData<SoftmaxCrossEntropyOpData>(context, node, kOpName));
  auto* data = static_cast<SoftmaxCrossEntropyOpData*>(node->user_data);
  TT_ENSURE_MSG(context, node->inputs->size == 2 || node->inputs->size == 3, kOpName,
                "expects 2 or 3 inputs (logits, labels[, control]), got %d", node->inputs->size);
  data->has_control = node->inputs->size == 3;
  if (data->has_control) TT_ENSURE_OK(PrepareControl(context, node, kOpName, kSoftmaxCrossEntropyControl));
  TT_ENSURE_MSG(context, node->outputs->size == 2 || node->outputs->size == 3, kOpName,
                "expects 2 or 3 outputs (loss, grad_logits[, grad_scale]), got %d",
                node->outputs->size);

  TT_TEMP_TENSOR(logits, context, node->inputs->data[kSoftmaxCrossEntropyLogits], kOpName);
  TT_TEMP_TENSOR(labels, context, node->inputs->data[kSoftmaxCrossEntropyLabels], kOpName);
  TT_TEMP_TENSOR(loss, context, node->outputs->data[kSoftmaxCrossEntropyLoss], kOpName);
  TT_TEMP_TENSOR(grad, context, node->outputs->data[kSoftmaxCrossEntropyGrad], kOpName);
  TT_ENSURE_MSG(context, logits.get() && labels.get() && loss.get() && grad.get(), kOpName,
                "missing input or output tensor");

  TT_ENSURE_MSG(context, logits->type == kTfLiteInt8, kOpName, "logits must be int8, got %s",
                TypeName(logits->type));
  TT_ENSURE_MSG(context, logits->dims->size == 2, kOpName,
                "logits must be 2-D [batch, classes], got rank %d", logits->dims->size);
  TT_ENSURE_MSG(context, IsPerTensorQuantized(logits.get()) && logits->params.scale > 0.0f, kOpName,
                "logits need per-tensor quantization with a positive scale");
  const int batch = logits->dims->data[0];
  const int classes = logits->dims->data[1];
  TT_ENSURE_MSG(context, batch >= 1 && classes >= 2, kOpName,
                "logits shape [%d, %d] needs batch >= 1 and classes >= 2", batch, classes);
  TT_ENSURE_MSG(context, data->options.num_classes == classes, kOpName,
                "options say %d classes but logits have %d", static_cast<int>(data->options.num_classes),
                classes);
  const float smoothing = data->options.label_smoothing;
  TT_ENSURE_MSG(context, smoothing >= 0.0f && smoothing < 1.0f, kOpName,
                "label_smoothing must be in [0, 1), got %f", static_cast<double>(smoothing));

  TT_ENSURE_MSG(context, labels->type == kTfLiteInt32, kOpName, "labels must be int32, got %s",
                TypeName(labels->type));
  TT_ENSURE_MSG(context, labels->dims->size == 1 && labels->dims->data[0] == batch, kOpName,
                "labels must have shape [%d]", batch);

  TT_ENSURE_MSG(context, loss->type == kTfLiteFloat32 && NumElements(loss->dims) == 1, kOpName,
                "loss output must be a single float32");
  TT_ENSURE_MSG(context, grad->dims->size == 2 && grad->dims->data[0] == batch &&
                             grad->dims->data[1] == classes,
                kOpName, "grad_logits must have the logits' shape [%d, %d]", batch, classes);
  data->quantized_grad = grad->type == kTfLiteInt8;
  if (data->quantized_grad) {
    TT_ENSURE_MSG(context, node->outputs->size == 3, kOpName,
                  "an int8 grad_logits needs a third output for its float32 scale");
    TT_TEMP_TENSOR(grad_scale, context, node->outputs->data[kSoftmaxCrossEntropyGradScale], kOpName);
    TT_ENSURE_MSG(context, grad_scale.get() && grad_scale->type == kTfLiteFloat32 &&
                               NumElements(grad_scale->dims) == 1,
                  kOpName, "grad_scale output must be a single float32");
  } else {
    TT_ENSURE_MSG(context, grad->type == kTfLiteFloat32, kOpName,
                  "grad_logits must be float32 or int8, got %s", TypeName(grad->type));
    TT_ENSURE_MSG(context, node->outputs->size == 2, kOpName,
                  "a float32 grad_logits takes no grad_scale output");
  }

  data->params.label_smoothing = smoothing;
  data->logits_quant = QuantParams(logits.get());
  data->logits_dims = tt_dims{batch, 1, 1, classes};
  return kTfLiteOk;
}

TfLiteStatus SoftmaxCrossEntropyOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  const auto* data = static_cast<const SoftmaxCrossEntropyOpData*>(node->user_data);
  TfLiteEvalTensor* loss = EvalOutput(context, node, kSoftmaxCrossEntropyLoss);
  if (data->has_control && !ControlBitSet(context, node, kSoftmaxCrossEntropyControl, TT_CONTROL_BACKWARD)) {
    // A predict-only invoke: the label may be anything, so no loss is computed. The output says so
    // (NaN) instead of keeping whatever the arena held there.
    loss->data.f[0] = NAN;
    return kTfLiteOk;
  }
  const TfLiteEvalTensor* logits = EvalInput(context, node, kSoftmaxCrossEntropyLogits);
  const TfLiteEvalTensor* labels = EvalInput(context, node, kSoftmaxCrossEntropyLabels);
  TfLiteEvalTensor* grad = EvalOutput(context, node, kSoftmaxCrossEntropyGrad);

  tt_status status;
  if (data->quantized_grad) {
    TfLiteEvalTensor* grad_scale = EvalOutput(context, node, kSoftmaxCrossEntropyGradScale);
    status = data->kernel.int8_grad(&data->params, &data->logits_quant, &data->logits_dims, logits->data.int8,
                                    labels->data.i32, loss->data.f, grad->data.int8, grad_scale->data.f);
  } else {
    status = data->kernel.float_grad(&data->params, &data->logits_quant, &data->logits_dims, logits->data.int8,
                                     labels->data.i32, loss->data.f, grad->data.f);
  }
  if (status == TT_LABEL_OUT_OF_RANGE) {
    // Labels are run-time data: the one check that cannot move to Prepare.
    const int32_t bad = tt_first_label_out_of_range(labels->data.i32, data->logits_dims.n,
                                                    data->logits_dims.c);
    TT_ENSURE_MSG(context, false, kOpName, "label %d (sample %d) is out of range [0, %d)",
                  static_cast<int>(labels->data.i32[bad]), static_cast<int>(bad),
                  static_cast<int>(data->logits_dims.c));
  }
  TT_ENSURE_STATUS(context, status, kOpName, "eval");
  return kTfLiteOk;
}

const TFLMRegistration* Register_SOFTMAX_CROSS_ENTROPY() { return RegisterGeneric<SoftmaxCrossEntropyOp>(); }

}  // namespace tinytrain

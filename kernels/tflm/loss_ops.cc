// TFLM glue of TT_BINARY_CROSS_ENTROPY and TT_MEAN_SQUARED_ERROR over
// tt_binary_cross_entropy_s8 and tt_mean_squared_error_s8. Both take
// (prediction, target[, control]) and write (loss, gradient[, its scale]),
// as TT_SOFTMAX_CROSS_ENTROPY does; neither has a generated variant.
#include <math.h>

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr int kPrediction = 0;  // int8 logits or output
constexpr int kTarget = 1;      // int32 labels or int8 target
constexpr int kControl = 2;     // optional
constexpr int kLoss = 0;
constexpr int kGrad = 1;  // followed by its scale output when int8

// What both losses keep: the prediction's quantization, the element count, the
// gradient's representation and whether a control input gates the op.
struct LossOpData {
  tt_quant_params prediction_quant;
  int32_t count;
  tt_grad_type grad_type;
  bool has_control;
};

// The checks both losses make; the op's own (target, shape) follow.
template <typename OpData>
TfLiteStatus PrepareLoss(TfLiteContext* context, TfLiteNode* node, const char* op_name, LossOpData* loss_data) {
  TT_ENSURE_OK(CheckOpData<OpData>(context, node, op_name));
  TT_ENSURE_MSG(context, node->inputs->size == 2 || node->inputs->size == 3, op_name,
                "expects 2 or 3 inputs (prediction, target[, control]), got %d", node->inputs->size);
  loss_data->has_control = node->inputs->size == 3;
  if (loss_data->has_control) TT_ENSURE_OK(PrepareControl(context, node, op_name, kControl));
  TT_ENSURE_MSG(context, node->outputs->size == 2 || node->outputs->size == 3, op_name,
                "expects 2 or 3 outputs (loss, gradient[, its scale]), got %d", node->outputs->size);
  TT_TEMP_TENSOR(prediction, context, node->inputs->data[kPrediction], op_name);
  TT_TEMP_TENSOR(loss, context, node->outputs->data[kLoss], op_name);
  TT_TEMP_TENSOR(grad, context, node->outputs->data[kGrad], op_name);
  TT_ENSURE_MSG(context, prediction.get() != nullptr && prediction->type == kTfLiteInt8, op_name,
                "the prediction (input 0) must be int8");
  TT_ENSURE_MSG(context, IsPerTensorQuantized(prediction.get()) && prediction->params.scale > 0.0f, op_name,
                "the prediction needs per-tensor quantization with a positive scale");
  TT_ENSURE_MSG(context, loss.get() != nullptr && loss->type == kTfLiteFloat32 && NumElements(loss->dims) == 1,
                op_name, "loss output must be a single float32");
  TT_ENSURE_MSG(context, grad.get() != nullptr && (grad->type == kTfLiteFloat32 || grad->type == kTfLiteInt8),
                op_name, "the gradient output must be float32 or int8");
  loss_data->grad_type = grad->type == kTfLiteInt8 ? TT_GRAD_S8 : TT_GRAD_F32;
  TT_ENSURE_OK(PrepareGradOutput(context, node, op_name, kGrad, loss_data->grad_type));
  loss_data->count = NumElements(prediction->dims);
  TT_ENSURE_MSG(context, loss_data->count >= 1 && NumElements(grad->dims) == loss_data->count, op_name,
                "the gradient must have the prediction's %d elements, got %d", static_cast<int>(loss_data->count),
                NumElements(grad->dims));
  loss_data->prediction_quant = QuantParams(prediction.get());
  return kTfLiteOk;
}

// Eval of both: NaN loss on a predict-only invoke (the target may be anything), else `core`.
template <typename Core>
TfLiteStatus EvalLoss(TfLiteContext* context, TfLiteNode* node, const char* op_name, const LossOpData& loss_data,
                      Core core) {
  float* loss = EvalOutput(context, node, kLoss)->data.f;
  if (loss_data.has_control && !ControlBitSet(context, node, kControl, TT_CONTROL_BACKWARD)) {
    loss[0] = NAN;
    return kTfLiteOk;
  }
  tt_grad_out grad = EvalGradOutput(context, node, kGrad, loss_data.grad_type);
  const tt_status status = core(EvalInput(context, node, kPrediction)->data.int8, EvalInput(context, node, kTarget),
                                loss, &grad);
  TT_ENSURE_STATUS(context, status, op_name, "eval");
  return kTfLiteOk;
}

struct BinaryCrossEntropyOp {
  using Kernel = decltype(&tt_binary_cross_entropy_s8);
  struct OpData {
    tt_status options_status;
    tt_binary_cross_entropy_options options;
    LossOpData loss;  // count is the batch: one logit per sample
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_BINARY_CROSS_ENTROPY";
  static constexpr Kernel kGeneric = tt_binary_cross_entropy_s8;
  static constexpr ResetFunction kReset = nullptr;

  static void* Init(TfLiteContext* context, const char* buffer, size_t length) {
    return InitWithOptions<OpData>(context, buffer, length, tt_parse_binary_cross_entropy);
  }

  static TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
    auto* data = static_cast<OpData*>(node->user_data);
    TT_ENSURE_OK(PrepareLoss<OpData>(context, node, kName, &data->loss));
    TT_TEMP_TENSOR(logits, context, node->inputs->data[kPrediction], kName);
    TT_TEMP_TENSOR(labels, context, node->inputs->data[kTarget], kName);
    const int batch = logits->dims->data[0];
    TT_ENSURE_MSG(context, logits->dims->size == 2 && logits->dims->data[1] == 1, kName,
                  "logits must be [batch, 1] (one logit per sample)");
    TT_ENSURE_MSG(context, labels.get() != nullptr && labels->type == kTfLiteInt32 && labels->dims->size == 1 &&
                               labels->dims->data[0] == batch,
                  kName, "labels must be int32 [%d]", batch);
    return kTfLiteOk;
  }

  static TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
    const auto& data = *static_cast<const OpData*>(node->user_data);
    return EvalLoss(context, node, kName, data.loss,
                    [&](const int8_t* logits, const TfLiteEvalTensor* labels, float* loss, tt_grad_out* grad) {
                      const tt_status status = data.kernel(&data.loss.prediction_quant, data.loss.count, logits,
                                                           labels->data.i32, loss, grad);
                      if (status == TT_LABEL_OUT_OF_RANGE) {
                        const int32_t bad = tt_first_label_out_of_range(labels->data.i32, data.loss.count, 2);
                        context->ReportError(context, "%s: label %d (sample %d) is neither 0 nor 1", kName,
                                             static_cast<int>(labels->data.i32[bad]), static_cast<int>(bad));
                      }
                      return status;
                    });
  }
};

struct MeanSquaredErrorOp {
  using Kernel = decltype(&tt_mean_squared_error_s8);
  struct OpData {
    tt_status options_status;
    tt_mean_squared_error_options options;
    LossOpData loss;
    tt_quant_params target_quant;
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_MEAN_SQUARED_ERROR";
  static constexpr Kernel kGeneric = tt_mean_squared_error_s8;
  static constexpr ResetFunction kReset = nullptr;

  static void* Init(TfLiteContext* context, const char* buffer, size_t length) {
    return InitWithOptions<OpData>(context, buffer, length, tt_parse_mean_squared_error);
  }

  static TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
    auto* data = static_cast<OpData*>(node->user_data);
    TT_ENSURE_OK(PrepareLoss<OpData>(context, node, kName, &data->loss));
    TT_TEMP_TENSOR(target, context, node->inputs->data[kTarget], kName);
    TT_ENSURE_MSG(context, target.get() != nullptr && target->type == kTfLiteInt8, kName, "target must be int8");
    TT_ENSURE_MSG(context, NumElements(target->dims) == data->loss.count, kName,
                  "target must have the output's %d elements, got %d", static_cast<int>(data->loss.count),
                  NumElements(target->dims));
    TT_ENSURE_MSG(context, IsPerTensorQuantized(target.get()) && target->params.scale > 0.0f, kName,
                  "target needs per-tensor quantization with a positive scale");
    data->target_quant = QuantParams(target.get());
    return kTfLiteOk;
  }

  static TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
    const auto& data = *static_cast<const OpData*>(node->user_data);
    return EvalLoss(context, node, kName, data.loss,
                    [&](const int8_t* output, const TfLiteEvalTensor* target, float* loss, tt_grad_out* grad) {
                      return data.kernel(&data.loss.prediction_quant, &data.target_quant, data.loss.count, output,
                                         target->data.int8, loss, grad);
                    });
  }
};

}  // namespace

const TFLMRegistration* Register_BINARY_CROSS_ENTROPY() { return RegisterGeneric<BinaryCrossEntropyOp>(); }

const TFLMRegistration* Register_MEAN_SQUARED_ERROR() { return RegisterGeneric<MeanSquaredErrorOp>(); }

}  // namespace tinytrain

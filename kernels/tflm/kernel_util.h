// Helpers every tinytrain op's glue shares: checks that report through the
// context, a scoped temporary TfLiteTensor for Prepare, and conversions from
// TFLM tensors to the core's plain structs.
#ifndef TINYTRAIN_KERNELS_TFLM_KERNEL_UTIL_H_
#define TINYTRAIN_KERNELS_TFLM_KERNEL_UTIL_H_

#include "../core/tt_types.h"
#include "tflm_api.h"

// Reports a printf-style message naming the op and fails the calling
// Init/Prepare/Eval when `cond` is false. TFLM's TF_LITE_ENSURE macros are not
// part of the host ABI, and these also name the op in every message.
#define TT_ENSURE_MSG(context, cond, op_name, format, ...)                       \
  do {                                                                          \
    if (!(cond)) {                                                              \
      (context)->ReportError((context), "%s: " format, (op_name), ##__VA_ARGS__); \
      return kTfLiteError;                                                      \
    }                                                                           \
  } while (0)

// Fails with the core's message unless `status` is TT_SUCCESS.
#define TT_ENSURE_STATUS(context, status, op_name, what)                           \
  do {                                                                             \
    const tt_status tt_status_value_ = (status);                                   \
    TT_ENSURE_MSG(context, tt_status_value_ == TT_SUCCESS, op_name, "%s: %s", what, \
                  tt_status_message(tt_status_value_));                           \
  } while (0)

namespace tinytrain {

// A node input or output as a TfLiteTensor for the length of one Prepare.
// TFLM requires every temp tensor back before Prepare returns, on success and
// on failure alike; the destructor guarantees it.
class TempTensor {
 public:
  TempTensor(TfLiteContext* context, int tensor_index)
      : context_(context),
        tensor_(tensor_index < 0
                    ? nullptr
                    : tflite::GetMicroContext(context)->AllocateTempTfLiteTensor(tensor_index)) {}
  ~TempTensor() {
    if (tensor_ != nullptr) tflite::GetMicroContext(context_)->DeallocateTempTfLiteTensor(tensor_);
  }
  TempTensor(const TempTensor&) = delete;
  TempTensor& operator=(const TempTensor&) = delete;

  const TfLiteTensor* get() const { return tensor_; }
  const TfLiteTensor* operator->() const { return tensor_; }

 private:
  TfLiteContext* context_;
  TfLiteTensor* tensor_;
};

inline TfLiteEvalTensor* EvalInput(const TfLiteContext* context, const TfLiteNode* node, int i) {
  return context->GetEvalTensor(context, node->inputs->data[i]);
}

inline TfLiteEvalTensor* EvalOutput(const TfLiteContext* context, const TfLiteNode* node, int i) {
  return context->GetEvalTensor(context, node->outputs->data[i]);
}

// Human-readable names for the types the kernels meet, for error messages.
inline const char* TypeName(TfLiteType type) {
  switch (type) {
    case kTfLiteFloat32: return "float32";
    case kTfLiteInt32: return "int32";
    case kTfLiteInt8: return "int8";
    default: return "an unsupported type";
  }
}

inline int NumElements(const TfLiteIntArray* dims) {
  int count = 1;
  for (int i = 0; i < dims->size; ++i) count *= dims->data[i];
  return count;
}

// True when the tensor carries one scale and zero point (not per-channel).
inline bool IsPerTensorQuantized(const TfLiteTensor* tensor) {
  if (tensor->quantization.type != kTfLiteAffineQuantization) return false;
  const auto* affine = static_cast<const TfLiteAffineQuantization*>(tensor->quantization.params);
  return affine != nullptr && affine->scale != nullptr && affine->scale->size == 1;
}

inline tt_quant_params QuantParams(const TfLiteTensor* tensor) {
  return tt_quant_params{tensor->params.scale, tensor->params.zero_point};
}

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_KERNEL_UTIL_H_

// TT_SOFTMAX_CROSS_ENTROPY: mean softmax cross-entropy of int8 logits against
// int32 labels, with the gradient w.r.t. the logits in float32 or int8.
#ifndef TINYTRAIN_KERNELS_TFLM_SOFTMAX_CROSS_ENTROPY_H_
#define TINYTRAIN_KERNELS_TFLM_SOFTMAX_CROSS_ENTROPY_H_

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "tflm_api.h"

namespace tinytrain {

constexpr int kSoftmaxCrossEntropyLogits = 0;     // int8 [batch, classes]
constexpr int kSoftmaxCrossEntropyLabels = 1;     // int32 [batch]
constexpr int kSoftmaxCrossEntropyControl = 2;    // optional int32 [1]
constexpr int kSoftmaxCrossEntropyLoss = 0;       // float32 [1]
constexpr int kSoftmaxCrossEntropyGrad = 1;       // float32 or int8 [batch, classes]
constexpr int kSoftmaxCrossEntropyGradScale = 2;  // float32 [1], int8 gradient only

// The core function per gradient representation; Prepare sets the one the node writes.
struct SoftmaxCrossEntropyKernel {
  decltype(&tt_softmax_cross_entropy_s8) float_grad;
  decltype(&tt_softmax_cross_entropy_qgrad_s8) int8_grad;
};

struct SoftmaxCrossEntropyOpData {
  tt_status options_status;                   // Result of parsing the options in Init.
  tt_softmax_cross_entropy_options options;   // As written by the compiler.
  tt_softmax_cross_entropy_params params;     // Validated in Prepare.
  tt_quant_params logits_quant;               // Per-tensor, scale > 0.
  tt_dims logits_dims;                        // n = batch, c = classes.
  bool quantized_grad;                        // int8 gradient plus a scale output.
  bool has_control;                           // Skips unless the control asks for backward.
  SoftmaxCrossEntropyKernel kernel;           // Generic or generated (specializable_ops.h).
};

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_SOFTMAX_CROSS_ENTROPY_H_

// Types of the kernel test cases. generate_references.py fills arrays of them (references.h);
// kernel_test.cc runs each case and checks its outputs. One struct per calling convention of
// the core API (tt_functions.h), with every input and the expected outputs.
#ifndef TINYTRAIN_TESTS_CORTEX_M_CASE_TYPES_H_
#define TINYTRAIN_TESTS_CORTEX_M_CASE_TYPES_H_

#include <stdint.h>

#include "fleet/tt_fleet_update.h"
#include "tt_functions.h"

// A gradient a kernel reads, in the representation the case tests.
struct GradOperand {
  tt_grad_type type;
  const float* f32;   // TT_GRAD_F32
  const int8_t* s8;   // TT_GRAD_S8: real value = scale * s8[i]
  float scale;
};

// What a gradient output must hold: real values and an absolute bound per element.
// F32 output: |got[i] - values[i]| <= tolerance[i].
// S8 output: |scale * q[i] - values[i]| <= scale / 2 + tolerance[i] (rounding to the int8 step on
// top of the float error), and the scale within max(tolerance) / 127 of max|values| / 127.
// With s8_levels set, the kernel copies int8 levels without requantizing: q must equal them and
// the scale must equal s8_scale exactly.
struct ExpectedGrad {
  tt_grad_type type;
  int32_t count;
  const float* values;
  const float* tolerance;
  const int8_t* s8_levels;
  float s8_scale;
};

enum class LayerGradKernel {
  kConvInput,
  kConvFilter,
  kDepthwiseInput,
  kDepthwiseFilter,
  kFullyConnectedInput,
  kFullyConnectedFilter,
};

// tt_{conv2d,depthwise_conv2d,fully_connected}_{input,filter}_grad_s8.
struct LayerGradCase {
  const char* name;
  LayerGradKernel kernel;
  tt_depthwise_conv_grad_params geometry;  // .conv only for conv, unused for fully connected
  tt_dims grad_output_dims;
  GradOperand grad_output;
  tt_dims operand_dims;                    // the filter (input gradients) or forward input (filter gradients)
  const int8_t* operand;
  tt_filter_quant_params filter_quant;     // input gradients
  tt_quant_params input_quant;             // filter gradients
  tt_dims result_dims;
  ExpectedGrad expected;
};

// tt_conv2d_s8 (depthwise == false) or tt_depthwise_conv2d_s8; the output must match exactly.
struct ForwardConvCase {
  const char* name;
  bool depthwise;
  tt_conv_params params;
  tt_dims input_dims;
  const int8_t* input;
  tt_dims filter_dims;
  const int8_t* filter;
  const int32_t* bias;  // nullptr: no bias
  const int32_t* multiplier;
  const int32_t* shift;
  tt_dims output_dims;
  const int8_t* expected;
};

// tt_bias_grad.
struct BiasGradCase {
  const char* name;
  tt_dims grad_dims;
  GradOperand grad_output;
  int32_t channels_to_update;
  ExpectedGrad expected;
};

enum class PoolKernel { kAverage, kMax, kMean };

// tt_avg_pool2d_grad, tt_max_pool2d_grad_s8, tt_mean_grad (params and grad_output_dims unused).
struct PoolGradCase {
  const char* name;
  PoolKernel kernel;
  tt_pool_params params;
  tt_dims grad_output_dims;
  GradOperand grad_output;
  tt_dims input_dims;
  const int8_t* input;  // max pooling only
  ExpectedGrad expected;
};

enum class ActivationKernel { kMask, kGradFromOutput, kGradFromMask };

// tt_activation_mask_s8, tt_activation_grad_s8, tt_activation_grad_mask.
struct ActivationCase {
  const char* name;
  ActivationKernel kernel;
  tt_activation_params params;
  int32_t count;
  const int8_t* y;
  const uint8_t* mask;           // input of kGradFromMask
  GradOperand grad_output;
  const uint8_t* expected_mask;  // kMask: TT_ACTIVATION_MASK_BYTES(count) bytes
  ExpectedGrad expected;         // the gradient kernels
};

// tt_softmax_cross_entropy_s8 (float gradient) and _qgrad_s8 (int8 gradient).
struct LossCase {
  const char* name;
  bool quantized_grad;
  tt_softmax_cross_entropy_params params;
  tt_quant_params logits_quant;
  tt_dims logits_dims;
  const int8_t* logits;
  const int32_t* labels;
  tt_status status;  // TT_LABEL_OUT_OF_RANGE cases check that nothing is written
  float loss;
  float loss_tolerance;
  ExpectedGrad expected;
};

// tt_grad_add.
struct GradAddCase {
  const char* name;
  int32_t count;
  GradOperand a;
  GradOperand b;
  ExpectedGrad expected;
};

// tt_binary_cross_entropy_s8 (labels set, target null) and tt_mean_squared_error_s8 (target set).
struct ElementLossCase {
  const char* name;
  tt_quant_params quant;         // of the prediction (logits or output)
  tt_quant_params target_quant;  // mean squared error only
  int32_t count;                 // batch (binary cross-entropy) or elements (mean squared error)
  const int8_t* prediction;
  const int32_t* labels;
  const int8_t* target;
  float loss;
  float loss_tolerance;
  ExpectedGrad expected;
};

// tt_unary_grad_s8.
struct UnaryGradCase {
  const char* name;
  tt_unary_params params;
  int32_t count;
  const int8_t* saved;
  GradOperand grad_output;
  ExpectedGrad expected;
};

// tt_mul_grad_s8.
struct MulGradCase {
  const char* name;
  tt_quant_params other_quant;
  tt_dims grad_output_dims;
  GradOperand grad_output;
  tt_dims other_dims;
  const int8_t* other;
  tt_dims grad_input_dims;
  ExpectedGrad expected;
};

// One tt_sgd_update_s8 (s32 == false) or tt_sgd_update_s32 step; every output exact.
struct SgdCase {
  const char* name;
  bool s32;
  tt_sgd_params params;
  uint32_t rng_state;
  uint32_t expected_rng_state;
  int32_t num_scales;
  const float* scales;
  tt_sgd_dims dims;
  GradOperand grad;
  const float* momentum;           // initial momentum, or nullptr without momentum
  const float* expected_momentum;
  int32_t parameter_count;         // outer * channels * inner
  const int8_t* parameter_s8;
  const int8_t* expected_s8;
  const int32_t* parameter_s32;
  const int32_t* expected_s32;
};

// tt_crc32, which checks every options blob on the device.
struct CrcCase {
  const char* name;
  const uint8_t* data;
  int32_t length;
  uint32_t crc;
};

// tt_grad_top_level; the result must match exactly.
struct TopLevelCase {
  const char* name;
  const int8_t* levels;
  int32_t count;
  int32_t top_level;
};

// The fleet update API on one trained tensor: tt_fleet_update_write of the initial values must give
// `upload` byte for byte; tt_fleet_update_apply of `blob` must return `status` and leave `expected`
// (the initial values when it rejects the blob).
struct FleetCase {
  const char* name;
  tt_fleet_type type;
  uint32_t tensor, outer, channels, channels_trained, inner, num_scales;
  const float* scales;
  int32_t parameter_count;  // outer * channels * inner
  const int8_t* initial_s8;
  const int32_t* initial_s32;
  const uint8_t* upload;
  int32_t upload_length;
  uint32_t round, num_samples;  // of the upload and of the blob
  const uint8_t* blob;
  int32_t blob_length;
  tt_status status;
  const int8_t* expected_s8;
  const int32_t* expected_s32;
};

#endif  // TINYTRAIN_TESTS_CORTEX_M_CASE_TYPES_H_

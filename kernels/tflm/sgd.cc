// TFLM glue of TT_SGD over tt_sgd_update_s8 / _s32.
#include <float.h>

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr const char* kOpName = SgdOp::kName;
using OpData = SgdOp::OpData;
constexpr int kParameter = 0;
constexpr int kGrad = 1;  // followed by its scale input
constexpr int kMomentum = 3;
constexpr int kControl = 4;
constexpr int kLearningRate = 5;
constexpr int kAccumulator = 6;

// Checks what Init kept of the options (params and seed).
TfLiteStatus PrepareOptions(TfLiteContext* context, const OpData* data) {
  const tt_sgd_params& o = data->params;
  // Written so that NaN fails too.
  TT_ENSURE_MSG(context, o.learning_rate > 0.0f && o.learning_rate <= FLT_MAX, kOpName,
                "learning_rate must be > 0, got %g", static_cast<double>(o.learning_rate));
  TT_ENSURE_MSG(context, o.momentum >= 0.0f && o.momentum < 1.0f, kOpName, "momentum must be in [0, 1), got %g",
                static_cast<double>(o.momentum));
  TT_ENSURE_MSG(context, o.qas == 0 || o.qas == 1, kOpName, "qas must be 0 or 1, got %d", static_cast<int>(o.qas));
  TT_ENSURE_MSG(context,
                o.rounding == TT_ROUND_TRUNCATE || o.rounding == TT_ROUND_NEAREST || o.rounding == TT_ROUND_STOCHASTIC,
                kOpName, "rounding must be ROUND_TRUNCATE (%d), ROUND_NEAREST (%d) or ROUND_STOCHASTIC (%d), got %d",
                TT_ROUND_TRUNCATE, TT_ROUND_NEAREST, TT_ROUND_STOCHASTIC, static_cast<int>(o.rounding));
  TT_ENSURE_MSG(context, data->seed != 0, kOpName, "seed must be nonzero (xorshift32 stays at 0)");
  return kTfLiteOk;
}

// Whether a and b have one rank and equal sizes on every dimension but `except` (-1: on all).
bool SameShapeExcept(const TfLiteIntArray* a, const TfLiteIntArray* b, int except) {
  if (a->size != b->size) return false;
  for (int i = 0; i < a->size; ++i) {
    if (i != except && a->data[i] != b->data[i]) return false;
  }
  return true;
}

int Product(const TfLiteIntArray* dims, int begin, int end) {
  int product = 1;
  for (int i = begin; i < end; ++i) product *= dims->data[i];
  return product;
}

}  // namespace

void* SgdOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  // Only params and the seed are kept: the options' other fields are params.
  return InitKeeping<OpData>(context, buffer, length, tt_parse_sgd, [](const tt_sgd_options& o, OpData& data) {
    data.params = tt_sgd_params{o.learning_rate, o.momentum, o.qas, o.rounding};
    data.seed = static_cast<uint32_t>(o.seed);
    data.rng_state = data.seed;
  });
}

void SgdOp::Reset(TfLiteContext*, void* buffer) {
  auto* data = static_cast<OpData*>(buffer);
  data->rng_state = data->seed;
  data->accumulated = 0;  // TFLM zeroes the accumulator variables too
}

TfLiteStatus SgdOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(CheckOpData<OpData>(context, node, kOpName));
  TT_ENSURE_OK(CheckIoCounts(context, node, kOpName, 7, 0, 0));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(PrepareOptions(context, data));
  TT_ENSURE_OK(PrepareGradInput(context, node, kOpName, kGrad, &data->grad_type));
  TT_ENSURE_OK(PrepareControl(context, node, kOpName, kControl));

  TT_TEMP_TENSOR(learning_rate, context, node->inputs->data[kLearningRate], kOpName);
  TT_ENSURE_MSG(context,
                learning_rate.get() != nullptr && learning_rate->is_variable && learning_rate->type == kTfLiteFloat32 &&
                    NumElements(learning_rate->dims) == 1,
                kOpName, "the learning-rate input must be a float32 [1] variable tensor");

  TT_TEMP_TENSOR(parameter, context, node->inputs->data[kParameter], kOpName);
  TT_ENSURE_MSG(context, parameter.get() != nullptr && parameter->is_variable, kOpName,
                "parameter must be a variable tensor");
  TT_ENSURE_MSG(context, parameter->type == kTfLiteInt8 || parameter->type == kTfLiteInt32, kOpName,
                "parameter must be int8 or int32, got %s", TypeName(parameter->type));
  data->parameter_is_int8 = parameter->type == kTfLiteInt8;
  const auto* quantization = static_cast<const TfLiteAffineQuantization*>(parameter->quantization.params);
  TT_ENSURE_MSG(context,
                parameter->quantization.type == kTfLiteAffineQuantization && quantization != nullptr &&
                    quantization->scale != nullptr && quantization->scale->size >= 1,
                kOpName, "parameter must be affine quantized");
  const TfLiteIntArray* parameter_dims = parameter->dims;
  const int rank = parameter_dims->size;
  const int axis = quantization->quantized_dimension;
  TT_ENSURE_MSG(context, rank >= 1 && axis >= 0 && axis < rank, kOpName,
                "quantized_dimension %d is outside the parameter's %d dimensions", axis, rank);
  const int channels = parameter_dims->data[axis];
  const int num_scales = quantization->scale->size;
  TT_ENSURE_MSG(context, num_scales == 1 || num_scales == channels, kOpName,
                "parameter has %d scales; it needs 1 or %d (its size along quantized_dimension %d)", num_scales,
                channels, axis);

  TT_TEMP_TENSOR(grad, context, node->inputs->data[kGrad], kOpName);
  // A grad of higher rank than an int32 [channels] bias is the layer's output gradient, which the
  // update sums per channel (a fused bias gradient): it must end in the bias's channels.
  const TfLiteIntArray* grad_dims = grad->dims;
  const bool sums_channels = !data->parameter_is_int8 && rank == 1 && grad_dims->size > 1;
  data->summed_rows = 0;
  if (sums_channels) {
    TT_ENSURE_MSG(context, grad_dims->size <= 4 && grad_dims->data[grad_dims->size - 1] == channels, kOpName,
                  "a bias's grad of rank %d must be its layer's output gradient: rank 2 to 4, last dimension %d",
                  grad_dims->size, channels);
    data->summed_rows = Product(grad_dims, 0, grad_dims->size - 1);
    grad_dims = parameter_dims;  // the bias gradient it stands for: every channel
  }
  const int channels_to_update = SameShapeExcept(grad_dims, parameter_dims, axis) ? grad_dims->data[axis] : 0;
  TT_ENSURE_MSG(context, channels_to_update >= 1 && channels_to_update <= channels, kOpName,
                "grad must have the parameter's shape except along quantized_dimension %d, where it needs 1 to %d "
                "entries",
                axis, channels);
  data->dims = tt_sgd_dims{Product(parameter_dims, 0, axis), channels, channels_to_update,
                           Product(parameter_dims, axis + 1, rank)};

  TT_TEMP_TENSOR(momentum, context, node->inputs->data[kMomentum], kOpName);
  if (data->params.momentum > 0.0f) {
    TT_ENSURE_MSG(context,
                  momentum.get() != nullptr && momentum->type == kTfLiteFloat32 && momentum->is_variable &&
                      SameShapeExcept(momentum->dims, grad_dims, -1),
                  kOpName, "momentum %g needs a float32 variable momentum input of grad's shape",
                  static_cast<double>(data->params.momentum));
  } else {
    TT_ENSURE_MSG(context, momentum.get() == nullptr, kOpName, "the momentum input must be -1 when momentum is 0");
  }

  TT_TEMP_TENSOR(accumulator, context, node->inputs->data[kAccumulator], kOpName);
  TT_ENSURE_MSG(context,
                accumulator.get() == nullptr || (accumulator->type == kTfLiteFloat32 && accumulator->is_variable &&
                                                 SameShapeExcept(accumulator->dims, grad_dims, -1)),
                kOpName, "the accumulator input must be -1 or a float32 variable of grad's shape");
  TT_ENSURE_MSG(context, accumulator.get() == nullptr || !sums_channels, kOpName,
                "a bias updated from its layer's output gradient takes no accumulator (the accumulator input must be "
                "-1)");

  // TFLM points a tensor's scales into the model flatbuffer (flatbuffer_utils.cc, little-endian
  // targets), which outlives the interpreter: keep the pointer, copy nothing.
  data->scales = quantization->scale->data;
  data->num_scales = num_scales;
  for (int c = 0; c < (num_scales == 1 ? 1 : channels_to_update); ++c) {
    TT_ENSURE_MSG(context, data->scales[c] > 0.0f, kOpName, "parameter scales must be > 0");
  }
  return kTfLiteOk;
}

TfLiteStatus SgdOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  const bool update = ControlBitSet(context, node, kControl, TT_CONTROL_UPDATE);
  const bool accumulate = ControlBitSet(context, node, kControl, TT_CONTROL_ACCUMULATE);
  if (!update && !accumulate) return kTfLiteOk;
  auto* data = static_cast<OpData*>(node->user_data);
  // -1 (no accumulator) has no eval tensor to ask for.
  TfLiteEvalTensor* accumulator = node->inputs->data[kAccumulator] >= 0 ? EvalInput(context, node, kAccumulator) : nullptr;
  TT_ENSURE_MSG(context, accumulator != nullptr || !accumulate || update, kOpName,
                "CONTROL_ACCUMULATE needs an accumulator (compile with gradient accumulation)");
  if (!update) {
    const tt_grad_in grad = EvalGradInput(context, node, kGrad, data->grad_type);
    TT_ENSURE_STATUS(context, tt_sgd_accumulate(&data->dims, &grad, accumulator->data.f), kOpName, "accumulate");
    ++data->accumulated;
    return kTfLiteOk;
  }
  // 0, a variable's value after AllocateTensors and Reset, selects the compiled learning rate.
  const float override_rate = EvalInput(context, node, kLearningRate)->data.f[0];
  TT_ENSURE_MSG(context, override_rate == 0.0f || (override_rate > 0.0f && override_rate <= FLT_MAX), kOpName,
                "the learning-rate input must be > 0, or 0 for the compiled %g; got %g",
                static_cast<double>(data->params.learning_rate), static_cast<double>(override_rate));
  tt_sgd_params params = data->params;
  if (override_rate != 0.0f) params.learning_rate = override_rate;
  const tt_grad_in grad = EvalGradInput(context, node, kGrad, data->grad_type);
  float* momentum = data->params.momentum > 0.0f ? EvalInput(context, node, kMomentum)->data.f : nullptr;
  TfLiteEvalTensor* parameter = EvalInput(context, node, kParameter);
  tt_sgd_accumulator sum{accumulator != nullptr ? accumulator->data.f : nullptr, data->accumulated};
  tt_sgd_accumulator* batch = accumulator != nullptr ? &sum : nullptr;
  if (data->summed_rows > 0) {
    const tt_dims grad_dims{1, 1, data->summed_rows, data->dims.channels};
    TT_ENSURE_STATUS(context,
                     tt_sgd_update_channel_sums_s32(&data->rng_state, &params, data->num_scales, data->scales, &grad_dims,
                                                    &grad, momentum, parameter->data.i32),
                     kOpName, "eval");
    return kTfLiteOk;
  }
  const tt_status status =
      data->parameter_is_int8
          ? data->kernel.int8(&data->rng_state, &params, data->num_scales, data->scales, &data->dims, &grad,
                             momentum, batch, parameter->data.int8)
          : data->kernel.int32(&data->rng_state, &params, data->num_scales, data->scales, &data->dims, &grad,
                              momentum, batch, parameter->data.i32);
  TT_ENSURE_STATUS(context, status, kOpName, "eval");
  data->accumulated = 0;
  return kTfLiteOk;
}

const TFLMRegistration* Register_SGD() { return RegisterGeneric<SgdOp>(); }

}  // namespace tinytrain

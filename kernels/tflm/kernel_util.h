// Helpers every tinytrain op's glue shares: checks that report through the
// context, a scoped temporary TfLiteTensor for Prepare, conversions from TFLM
// tensors to the core's plain structs, the registration, and the Prepare and
// Eval steps common to the single-gradient backward ops.
#ifndef TINYTRAIN_KERNELS_TFLM_KERNEL_UTIL_H_
#define TINYTRAIN_KERNELS_TFLM_KERNEL_UTIL_H_

#include <stddef.h>
#include <stdint.h>

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
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

// Fails the calling function when a helper returning TfLiteStatus failed (it has reported why).
#define TT_ENSURE_OK(expression)                       \
  do {                                                 \
    if ((expression) != kTfLiteOk) return kTfLiteError; \
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

// Declares `name`, the temp TfLiteTensor of tensor `index`, and fails the
// calling Prepare when TFLM cannot allocate it (the arena is too small):
// a temp tensor is never dereferenced unchecked. An omitted optional tensor
// (index -1) gives a null `name` for the caller to handle.
#define TT_TEMP_TENSOR(name, context, index, op_name)                                         \
  const int name##_index_ = (index);                                                          \
  TempTensor name(context, name##_index_);                                                    \
  TT_ENSURE_MSG(context, name.get() != nullptr || name##_index_ < 0, op_name,                 \
                "arena too small: no room for temporary tensor %d in Prepare", name##_index_)

inline TfLiteEvalTensor* EvalInput(const TfLiteContext* context, const TfLiteNode* node, int i) {
  return context->GetEvalTensor(context, node->inputs->data[i]);
}

inline TfLiteEvalTensor* EvalOutput(const TfLiteContext* context, const TfLiteNode* node, int i) {
  return context->GetEvalTensor(context, node->outputs->data[i]);
}

// True when the tensor's data is in the model (flash on a device). The same
// test as TFLite's IsConstantTensor, whose header the host build does not have.
inline bool IsConstantTensor(const TfLiteTensor* tensor) { return tensor->allocation_type == kTfLiteMmapRo; }

// Human-readable names for the types the kernels meet, for error messages.
inline const char* TypeName(TfLiteType type) {
  switch (type) {
    case kTfLiteFloat32: return "float32";
    case kTfLiteInt32: return "int32";
    case kTfLiteUInt8: return "uint8";
    case kTfLiteInt8: return "int8";
    default: return "an unsupported type";
  }
}

// Element count of a tensor whose dims CheckNodeTensors accepted (so it fits int).
inline int NumElements(const TfLiteIntArray* dims) {
  int count = 1;
  for (int i = 0; i < dims->size; ++i) count *= dims->data[i];
  return count;
}

// Bytes of one element of the types the tinytrain ops take, 0 for any other.
inline int64_t TypeBytes(TfLiteType type) {
  switch (type) {
    case kTfLiteFloat32:
    case kTfLiteInt32: return 4;
    case kTfLiteUInt8:
    case kTfLiteInt8: return 1;
    default: return 0;
  }
}

// Element count in 64 bits, or -1 when a dimension is below 1 or the count
// passes INT32_MAX. TFLM counts elements in int: a shape whose product wraps
// gets an allocation of the wrapped size while a kernel loops over the dims.
inline int64_t CheckedElementCount(const TfLiteIntArray* dims) {
  if (dims == nullptr || dims->size < 0) return -1;
  int64_t count = 1;
  for (int i = 0; i < dims->size; ++i) {
    if (dims->data[i] < 1) return -1;
    count *= dims->data[i];  // at most INT32_MAX * INT32_MAX after the check below: no int64 overflow
    if (count > INT32_MAX) return -1;
  }
  return count;
}

// One node operand: present (an input may be omitted, -1), of a type the ops take, with dims whose element
// count fits int and a byte size that matches them.
inline TfLiteStatus CheckOperand(TfLiteContext* context, const char* op_name, const char* kind, int position,
                                 int tensor_index, bool may_be_omitted) {
  TT_ENSURE_MSG(context, may_be_omitted || tensor_index >= 0, op_name, "%s %d is missing (tensor index %d)", kind,
                position, tensor_index);
  if (tensor_index < 0) return kTfLiteOk;  // an omitted optional input: each op decides whether it may be
  TT_TEMP_TENSOR(tensor, context, tensor_index, op_name);
  const int64_t type_bytes = TypeBytes(tensor->type);
  TT_ENSURE_MSG(context, type_bytes > 0, op_name, "%s %d has type %d, which no tinytrain op takes", kind, position,
                static_cast<int>(tensor->type));
  const int64_t count = CheckedElementCount(tensor->dims);
  TT_ENSURE_MSG(context, count > 0, op_name,
                "%s %d has a dimension below 1 or more than %d elements", kind, position, INT32_MAX);
  TT_ENSURE_MSG(context, static_cast<uint64_t>(count * type_bytes) == static_cast<uint64_t>(tensor->bytes), op_name,
                "%s %d holds %lu bytes, its shape needs %ld", kind, position, static_cast<unsigned long>(tensor->bytes),
                static_cast<long>(count * type_bytes));
  return kTfLiteOk;
}

// Every input and output of the node checked with CheckOperand: no kernel
// then meets a null tensor or a size its dims do not match.
inline TfLiteStatus CheckNodeTensors(TfLiteContext* context, const TfLiteNode* node, const char* op_name) {
  TT_ENSURE_MSG(context, node->inputs != nullptr && node->outputs != nullptr, op_name, "node has no operand lists");
  for (int i = 0; i < node->inputs->size; ++i) {
    TT_ENSURE_OK(CheckOperand(context, op_name, "input", i, node->inputs->data[i], true));
  }
  for (int i = 0; i < node->outputs->size; ++i) {
    TT_ENSURE_OK(CheckOperand(context, op_name, "output", i, node->outputs->data[i], false));
  }
  return kTfLiteOk;
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

// NHWC view of a shape: the last dimension is c, the first n (rank >= 2), the
// ones between h then w. Ranks above 4 are rejected in Prepare before use.
inline tt_dims DimsNHWC(const TfLiteIntArray* dims) {
  const int rank = dims->size;
  tt_dims out{1, 1, 1, rank > 0 ? dims->data[rank - 1] : 1};
  if (rank >= 2) out.n = dims->data[0];
  if (rank >= 3) out.h = dims->data[1];
  if (rank == 4) out.w = dims->data[2];
  return out;
}

// The registration every Register_<NAME>() returns, built as TFLM's
// tflite::micro::RegisterOp builds it but calling no TFLM symbol (the host
// build links no TFLM library). No op frees anything: free is null.
// builtin_code and custom_name stay 0 and null because the resolver fills
// them when it adds the op (AddCustom, or register_host.cc's copy of it).
inline constexpr TFLMRegistration RegisterOp(void* (*init)(TfLiteContext* context, const char* buffer, size_t length),
                                             TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node),
                                             TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node),
                                             void (*reset)(TfLiteContext* context, void* buffer) = nullptr) {
#if defined(TINYTRAIN_LEGACY_TFLM_REGISTRATION)
  // Legacy TFLM's MicroInterpreter::Reset() calls every op's free with its
  // user data before zeroing the variables: that is where reset must run.
  return TFLMRegistration{init, /*free=*/reset, prepare, invoke, /*profiling_string=*/nullptr,
                          /*builtin_code=*/0, /*custom_name=*/nullptr, /*version=*/0,
                          /*registration_external=*/nullptr};
#else
  return TFLMRegistration{init, /*free=*/nullptr, prepare, invoke, reset, /*builtin_code=*/0, /*custom_name=*/nullptr};
#endif
}

// Init of every op: persistent OpData with the options parsed once, of which
// keep(options, data) copies what the op needs. Init cannot report, so the
// parse status is kept for CheckOpData in Prepare, and what keep copies is
// checked there. OpData needs a member `tt_status options_status`.
template <typename OpData, typename Options, typename Keep>
void* InitKeeping(TfLiteContext* context, const char* buffer, size_t length,
                  tt_status (*parse)(const uint8_t*, size_t, Options*), Keep keep) {
  auto* data = static_cast<OpData*>(context->AllocatePersistentBuffer(context, sizeof(OpData)));
  if (data == nullptr) return nullptr;
  Options options{};
  data->options_status = parse(reinterpret_cast<const uint8_t*>(buffer), length, &options);
  keep(options, *data);
  return data;
}

// InitKeeping of the whole options, into a member `Options options`.
template <typename OpData, typename Options>
void* InitWithOptions(TfLiteContext* context, const char* buffer, size_t length,
                      tt_status (*parse)(const uint8_t*, size_t, Options*)) {
  return InitKeeping<OpData>(context, buffer, length, parse,
                             [](const Options& options, OpData& data) { data.options = options; });
}

// First check of every Prepare: the op data exists, its options parsed and every operand passes CheckNodeTensors.
template <typename OpData>
TfLiteStatus CheckOpData(TfLiteContext* context, const TfLiteNode* node, const char* op_name) {
  TT_ENSURE_MSG(context, node->user_data != nullptr, op_name, "arena too small for op data");
  TT_ENSURE_STATUS(context, static_cast<const OpData*>(node->user_data)->options_status, op_name, "custom options");
  return CheckNodeTensors(context, node, op_name);
}

inline TfLiteStatus CheckIoCounts(TfLiteContext* context, const TfLiteNode* node, const char* op_name, int inputs,
                                  int min_outputs, int max_outputs) {
  TT_ENSURE_MSG(context, node->inputs->size == inputs, op_name, "expects %d inputs, got %d", inputs, node->inputs->size);
  TT_ENSURE_MSG(context, node->outputs->size >= min_outputs && node->outputs->size <= max_outputs, op_name,
                "expects %d to %d outputs, got %d", min_outputs, max_outputs, node->outputs->size);
  return kTfLiteOk;
}

// Gradient operands. A gradient input is a (data, scale) pair of node inputs,
// the scale input being -1 for float32; a gradient output is its data output,
// followed by a scale output only when it is int8.
//
// An int8 gradient's scale tensor is float32 [1], or float32 [3] holding the
// scale then its tt_grad_history: a variable tensor, so the history outlives
// the invoke, for a writer that scales from the last step (tt_grad_out).
constexpr int kScaleElements = 1;
constexpr int kScaleWithHistoryElements = kScaleElements + sizeof(tt_grad_history) / sizeof(float);
static_assert(sizeof(tt_grad_history) % sizeof(float) == 0, "tt_grad_history is made of floats");

inline bool IsGradScale(const TfLiteTensor* scale) {
  if (scale == nullptr || scale->type != kTfLiteFloat32) return false;
  const int elements = NumElements(scale->dims);
  return elements == kScaleElements || (elements == kScaleWithHistoryElements && scale->is_variable);
}

inline TfLiteStatus PrepareGradInput(TfLiteContext* context, const TfLiteNode* node, const char* op_name,
                                     int data_input, tt_grad_type* type) {
  TT_TEMP_TENSOR(grad, context, node->inputs->data[data_input], op_name);
  TT_ENSURE_MSG(context, grad.get() != nullptr, op_name, "gradient input %d is missing", data_input);
  const int scale_index = node->inputs->data[data_input + 1];
  if (grad->type == kTfLiteFloat32) {
    TT_ENSURE_MSG(context, scale_index < 0, op_name, "float32 gradient input %d takes no scale (input %d must be -1)",
                  data_input, data_input + 1);
    *type = TT_GRAD_F32;
    return kTfLiteOk;
  }
  TT_ENSURE_MSG(context, grad->type == kTfLiteInt8, op_name, "gradient input %d must be float32 or int8, got %s",
                data_input, TypeName(grad->type));
  TT_TEMP_TENSOR(scale, context, scale_index, op_name);
  TT_ENSURE_MSG(context, IsGradScale(scale.get()), op_name,
                "int8 gradient input %d needs a float32 [1] scale, or a variable [3] with its history, as input %d",
                data_input, data_input + 1);
  *type = TT_GRAD_S8;
  return kTfLiteOk;
}

inline TfLiteStatus PrepareGradOutput(TfLiteContext* context, const TfLiteNode* node, const char* op_name,
                                      int data_output, tt_grad_type type) {
  TT_TEMP_TENSOR(grad, context, node->outputs->data[data_output], op_name);
  const TfLiteType expected = type == TT_GRAD_S8 ? kTfLiteInt8 : kTfLiteFloat32;
  TT_ENSURE_MSG(context, grad.get() != nullptr && grad->type == expected, op_name,
                "gradient output %d must be %s like the input gradient", data_output, TypeName(expected));
  const int outputs = data_output + (type == TT_GRAD_S8 ? 2 : 1);
  TT_ENSURE_MSG(context, node->outputs->size == outputs, op_name,
                "a %s gradient output %d needs %d outputs in all, got %d", TypeName(expected), data_output, outputs,
                node->outputs->size);
  if (type == TT_GRAD_S8) {
    TT_TEMP_TENSOR(scale, context, node->outputs->data[data_output + 1], op_name);
    TT_ENSURE_MSG(context, IsGradScale(scale.get()), op_name,
                  "the scale of int8 gradient output %d must be float32 [1], or a variable [3] with its history",
                  data_output);
  }
  return kTfLiteOk;
}

inline TfLiteStatus PrepareControl(TfLiteContext* context, const TfLiteNode* node, const char* op_name,
                                   int control_input) {
  TT_TEMP_TENSOR(control, context, node->inputs->data[control_input], op_name);
  TT_ENSURE_MSG(context, control.get() != nullptr && control->type == kTfLiteInt32 && NumElements(control->dims) == 1,
                op_name, "control input %d must be int32 [1]", control_input);
  return kTfLiteOk;
}

inline tt_grad_in EvalGradInput(const TfLiteContext* context, const TfLiteNode* node, int data_input,
                                tt_grad_type type) {
  const float scale = type == TT_GRAD_S8 ? EvalInput(context, node, data_input + 1)->data.f[0] : 1.0f;
  return tt_grad_in{type, EvalInput(context, node, data_input)->data.data, scale, 0};
}

inline tt_grad_out EvalGradOutput(const TfLiteContext* context, const TfLiteNode* node, int data_output,
                                  tt_grad_type type) {
  void* data = EvalOutput(context, node, data_output)->data.data;
  if (type != TT_GRAD_S8) return tt_grad_out{type, data, nullptr, nullptr};
  const TfLiteEvalTensor* scale = EvalOutput(context, node, data_output + 1);
  // Prepare checked the layout (IsGradScale): the history follows the scale.
  tt_grad_history* history = NumElements(scale->dims) == kScaleWithHistoryElements
                                 ? reinterpret_cast<tt_grad_history*>(scale->data.f + kScaleElements)
                                 : nullptr;
  return tt_grad_out{type, data, scale->data.f, history};
}

// EvalGradInput for an op that writes `written` from this gradient: when `written` keeps a history,
// an int8 input's top level is measured, the reference of its delayed scaling (tt_grad_in). A pass
// over int8 levels, far cheaper than the second pass of a writer whose prediction it would throw off.
inline tt_grad_in EvalGradInputToWrite(const TfLiteContext* context, const TfLiteNode* node, int data_input,
                                       const tt_grad_out& written) {
  tt_grad_in gradient = EvalGradInput(context, node, data_input, written.type);
  if (written.type == TT_GRAD_S8 && written.history != nullptr) {
    const TfLiteEvalTensor* levels = EvalInput(context, node, data_input);
    gradient.top_level = tt_grad_top_level(NumElements(levels->dims), levels->data.int8);
  }
  return gradient;
}

// Whether this invoke asked for `bit` (TT_CONTROL_BACKWARD or TT_CONTROL_UPDATE).
inline bool ControlBitSet(const TfLiteContext* context, const TfLiteNode* node, int control_input, int32_t bit) {
  return (EvalInput(context, node, control_input)->data.i32[0] & bit) != 0;
}

// A single-gradient backward op passes one gradient back through one forward
// op. Its operands:
//   inputs  (gradient, its scale, [the op's own inputs,] control): one
//           gradient input at 0 (its scale at 1) and the control input last;
//   outputs (gradient[, its scale]): one gradient output at 0.
// Its OpData has `tt_status options_status`, `Options options` (see
// InitWithOptions) and `tt_grad_type grad_type`, the representation of both
// gradients, which PrepareGradOp sets and EvalGradOp reads.
constexpr int kGradOpGradInput = 0;
constexpr int kGradOpGradOutput = 0;

// First step of the Prepare of a single-gradient backward op with `inputs`
// inputs in all: its options parsed, then the counts and types of the
// gradient operands and the control input. The op's own checks follow it.
template <typename OpData>
TfLiteStatus PrepareGradOp(TfLiteContext* context, TfLiteNode* node, const char* op_name, int inputs) {
  TT_ENSURE_OK(CheckOpData<OpData>(context, node, op_name));
  TT_ENSURE_OK(CheckIoCounts(context, node, op_name, inputs, 1, 2));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_OK(PrepareGradInput(context, node, op_name, kGradOpGradInput, &data->grad_type));
  TT_ENSURE_OK(PrepareControl(context, node, op_name, inputs - 1));
  return PrepareGradOutput(context, node, op_name, kGradOpGradOutput, data->grad_type);
}

// Eval of a single-gradient backward op (after PrepareGradOp): nothing unless
// this invoke runs backward, else core(data, gradient input, gradient output)
// runs the core function, whose status is reported.
template <typename OpData, typename Core>
TfLiteStatus EvalGradOp(TfLiteContext* context, TfLiteNode* node, const char* op_name, Core core) {
  // Prepare checked the input count, so the control input is the last one.
  if (!ControlBitSet(context, node, node->inputs->size - 1, TT_CONTROL_BACKWARD)) return kTfLiteOk;
  const auto& data = *static_cast<const OpData*>(node->user_data);
  tt_grad_out gradient_out = EvalGradOutput(context, node, kGradOpGradOutput, data.grad_type);
  const tt_grad_in gradient_in = EvalGradInputToWrite(context, node, kGradOpGradInput, gradient_out);
  TT_ENSURE_STATUS(context, core(data, &gradient_in, &gradient_out), op_name, "eval");
  return kTfLiteOk;
}

// For an elementwise backward op (after PrepareGradOp): both gradients hold the
// same `count` >= 1 elements, which the op's other operands are checked against.
inline TfLiteStatus PrepareElementwiseGradCount(TfLiteContext* context, TfLiteNode* node, const char* op_name,
                                                int32_t* count) {
  TT_TEMP_TENSOR(grad_output, context, node->inputs->data[kGradOpGradInput], op_name);
  TT_TEMP_TENSOR(grad_input, context, node->outputs->data[kGradOpGradOutput], op_name);
  *count = NumElements(grad_output->dims);
  TT_ENSURE_MSG(context, *count >= 1, op_name, "grad_output is empty");
  TT_ENSURE_MSG(context, NumElements(grad_input->dims) == *count, op_name, "grad_input has %d elements, grad_output %d",
                NumElements(grad_input->dims), static_cast<int>(*count));
  return kTfLiteOk;
}

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_KERNEL_UTIL_H_

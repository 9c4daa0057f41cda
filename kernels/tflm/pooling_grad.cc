// TFLM glue of TT_AVERAGE_POOL_2D_GRAD, TT_MAX_POOL_2D_GRAD and TT_MEAN_GRAD
// over tt_avg_pool2d_grad, tt_max_pool2d_grad_s8 and tt_mean_grad.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

// All three are single-gradient backward ops (kernel_util.h).
constexpr int kGradOutput = kGradOpGradInput;  // followed by its scale input
constexpr int kGradInput = kGradOpGradOutput;

// One axis of TFLite pooling: every window must overlap the input, or its
// average would divide by zero.
TfLiteStatus CheckWindowsOverlapInput(TfLiteContext* context, const char* op_name, const char* axis, int outputs,
                                      int inputs, int filter, int stride, int pad) {
  // In 64 bits: a stride near INT32_MAX must fail the check, not wrap past it.
  const int64_t last_window_start = static_cast<int64_t>(outputs - 1) * stride - pad;
  TT_ENSURE_MSG(context, pad < filter && last_window_start < inputs, op_name,
                "%d output %s with filter %d, stride %d and pad %d have windows outside the %d input %s", outputs, axis,
                filter, stride, pad, inputs, axis);
  return kTfLiteOk;
}

// Prepare of both pooling ops: `inputs` inputs (grad_output, scale, [input,] control).
template <typename Op>
TfLiteStatus PreparePoolGrad(TfLiteContext* context, TfLiteNode* node, int inputs) {
  using OpData = typename Op::OpData;
  const char* op_name = Op::kName;
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, op_name, inputs));
  auto* data = static_cast<OpData*>(node->user_data);

  const auto& o = data->options;
  TT_ENSURE_MSG(context, o.filter_h >= 1 && o.filter_w >= 1 && o.stride_h >= 1 && o.stride_w >= 1, op_name,
                "filter and stride must be >= 1, got filter %dx%d and stride %dx%d", static_cast<int>(o.filter_h),
                static_cast<int>(o.filter_w), static_cast<int>(o.stride_h), static_cast<int>(o.stride_w));
  TT_ENSURE_MSG(context, o.pad_top >= 0 && o.pad_left >= 0, op_name,
                "pads must be >= 0, got pad_top %d and pad_left %d", static_cast<int>(o.pad_top),
                static_cast<int>(o.pad_left));
  data->params = tt_pool_params{o.filter_h, o.filter_w, o.stride_h, o.stride_w, o.pad_top, o.pad_left};

  TT_TEMP_TENSOR(grad_output, context, node->inputs->data[kGradOutput], op_name);
  TT_TEMP_TENSOR(grad_input, context, node->outputs->data[kGradInput], op_name);
  TT_ENSURE_MSG(context, grad_output->dims->size == 4 && grad_input->dims->size == 4, op_name,
                "grad_output and grad_input must be 4-D (NHWC)");
  const tt_dims out = DimsNHWC(grad_output->dims);
  const tt_dims in = DimsNHWC(grad_input->dims);
  TT_ENSURE_MSG(context, NumElements(grad_output->dims) >= 1 && NumElements(grad_input->dims) >= 1, op_name,
                "grad_output and grad_input must not be empty");
  TT_ENSURE_MSG(context, out.n == in.n && out.c == in.c, op_name,
                "grad_output [%d, %d, %d, %d] and grad_input [%d, %d, %d, %d] differ in batch or channels",
                static_cast<int>(out.n), static_cast<int>(out.h), static_cast<int>(out.w), static_cast<int>(out.c),
                static_cast<int>(in.n), static_cast<int>(in.h), static_cast<int>(in.w), static_cast<int>(in.c));
  TT_ENSURE_OK(CheckWindowsOverlapInput(context, op_name, "rows", out.h, in.h, o.filter_h, o.stride_h, o.pad_top));
  TT_ENSURE_OK(CheckWindowsOverlapInput(context, op_name, "columns", out.w, in.w, o.filter_w, o.stride_w, o.pad_left));
  data->grad_output_dims = out;
  data->grad_input_dims = in;
  return kTfLiteOk;
}

constexpr int kAveragePoolInputs = 3;  // grad_output, its scale, control
constexpr int kMaxPoolInput = 2;
constexpr int kMaxPoolInputs = 4;  // grad_output, its scale, input, control
constexpr int kMeanInputs = 3;     // grad_output, its scale, control

}  // namespace

void* AveragePool2dGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_average_pool_2d_grad);
}

TfLiteStatus AveragePool2dGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  return PreparePoolGrad<AveragePool2dGradOp>(context, node, kAveragePoolInputs);
}

TfLiteStatus AveragePool2dGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalGradOp<OpData>(context, node, kName,
                            [](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_input) {
                              return data.kernel(&data.params, &data.grad_output_dims, grad_output,
                                                 &data.grad_input_dims, grad_input);
                            });
}

void* MaxPool2dGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_max_pool_2d_grad);
}

TfLiteStatus MaxPool2dGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PreparePoolGrad<MaxPool2dGradOp>(context, node, kMaxPoolInputs));
  TT_TEMP_TENSOR(input, context, node->inputs->data[kMaxPoolInput], kName);
  TT_TEMP_TENSOR(grad_input, context, node->outputs->data[kGradInput], kName);
  bool same_shape = input.get() != nullptr && input->dims->size == grad_input->dims->size;
  for (int i = 0; same_shape && i < input->dims->size; ++i) {
    same_shape = input->dims->data[i] == grad_input->dims->data[i];
  }
  TT_ENSURE_MSG(context, same_shape && input->type == kTfLiteInt8, kName,
                "input must be the int8 forward input, of grad_input's shape");
  return kTfLiteOk;
}

TfLiteStatus MaxPool2dGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  const int8_t* input = EvalInput(context, node, kMaxPoolInput)->data.int8;
  return EvalGradOp<OpData>(context, node, kName,
                            [input](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_input) {
                              return data.kernel(&data.params, &data.grad_output_dims, grad_output,
                                                 &data.grad_input_dims, input, grad_input);
                            });
}

void* MeanGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_mean_grad);
}

TfLiteStatus MeanGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kMeanInputs));
  auto* data = static_cast<OpData*>(node->user_data);

  TT_TEMP_TENSOR(grad_output, context, node->inputs->data[kGradOutput], kName);
  TT_TEMP_TENSOR(grad_input, context, node->outputs->data[kGradInput], kName);
  TT_ENSURE_MSG(context, grad_input->dims->size == 4 && NumElements(grad_input->dims) >= 1, kName,
                "grad_input must be 4-D (NHWC) and not empty");
  const tt_dims in = DimsNHWC(grad_input->dims);
  const tt_dims out = DimsNHWC(grad_output->dims);  // [n, c] and [n, 1, 1, c] alike
  const int rank = grad_output->dims->size;
  TT_ENSURE_MSG(context, (rank == 2 || rank == 4) && out.h == 1 && out.w == 1 && out.n == in.n && out.c == in.c,
                kName, "grad_output must be [%d, %d] or [%d, 1, 1, %d] for grad_input [%d, %d, %d, %d]",
                static_cast<int>(in.n), static_cast<int>(in.c), static_cast<int>(in.n), static_cast<int>(in.c),
                static_cast<int>(in.n), static_cast<int>(in.h), static_cast<int>(in.w), static_cast<int>(in.c));
  data->grad_input_dims = in;
  return kTfLiteOk;
}

TfLiteStatus MeanGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  return EvalGradOp<OpData>(context, node, kName,
                            [](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_input) {
                              return data.kernel(&data.grad_input_dims, grad_output, grad_input);
                            });
}

const TFLMRegistration* Register_AVERAGE_POOL_2D_GRAD() { return RegisterGeneric<AveragePool2dGradOp>(); }

const TFLMRegistration* Register_MAX_POOL_2D_GRAD() { return RegisterGeneric<MaxPool2dGradOp>(); }

const TFLMRegistration* Register_MEAN_GRAD() { return RegisterGeneric<MeanGradOp>(); }

}  // namespace tinytrain

// TFLM glue of TT_MUL_GRAD over tt_mul_grad_s8.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "specializable_ops.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr int kGradOutput = kGradOpGradInput;  // followed by its scale input
constexpr int kOther = 2;
constexpr int kMulGradInputs = 4;  // grad_output, its scale, other, control
constexpr int kGradInput = kGradOpGradOutput;

bool BroadcastsTo(const tt_dims& from, const tt_dims& to) {
  const auto fits = [](int32_t f, int32_t t) { return f == t || f == 1; };
  return fits(from.n, to.n) && fits(from.h, to.h) && fits(from.w, to.w) && fits(from.c, to.c);
}

}  // namespace

void* MulGradOp::Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_mul_grad);
}

TfLiteStatus MulGradOp::Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(PrepareGradOp<OpData>(context, node, kName, kMulGradInputs));
  auto* data = static_cast<OpData*>(node->user_data);

  TT_TEMP_TENSOR(grad_output, context, node->inputs->data[kGradOutput], kName);
  TT_TEMP_TENSOR(other, context, node->inputs->data[kOther], kName);
  TT_TEMP_TENSOR(grad_input, context, node->outputs->data[kGradInput], kName);
  TT_ENSURE_MSG(context, other.get() != nullptr && other->type == kTfLiteInt8, kName,
                "other must be the int8 other operand");
  TT_ENSURE_MSG(context, IsPerTensorQuantized(other.get()) && other->params.scale > 0.0f, kName,
                "other needs per-tensor quantization with a positive scale");
  TT_ENSURE_MSG(context, grad_output->dims->size <= 4 && other->dims->size <= 4 && grad_input->dims->size <= 4, kName,
                "grad_output, other and grad_input must have rank <= 4, got %d, %d and %d",
                grad_output->dims->size, other->dims->size, grad_input->dims->size);
  TT_ENSURE_MSG(context, NumElements(grad_output->dims) >= 1, kName, "grad_output is empty");
  // Both operands broadcast to y's shape; the kernel compares NHWC views, so the ranks must agree.
  const int rank = grad_output->dims->size;
  TT_ENSURE_MSG(context, other->dims->size == rank && grad_input->dims->size == rank, kName,
                "other and grad_input must have grad_output's rank %d, got %d and %d", rank, other->dims->size,
                grad_input->dims->size);
  data->grad_output_dims = DimsNHWC(grad_output->dims);
  data->other_dims = DimsNHWC(other->dims);
  data->grad_input_dims = DimsNHWC(grad_input->dims);
  TT_ENSURE_MSG(context,
                BroadcastsTo(data->other_dims, data->grad_output_dims) &&
                    BroadcastsTo(data->grad_input_dims, data->grad_output_dims),
                kName, "each dimension of other and grad_input must be grad_output's or 1");
  data->other_quant = QuantParams(other.get());
  return kTfLiteOk;
}

TfLiteStatus MulGradOp::Eval(TfLiteContext* context, TfLiteNode* node) {
  const int8_t* other = EvalInput(context, node, kOther)->data.int8;
  return EvalGradOp<OpData>(context, node, kName,
                            [other](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* grad_input) {
                              return data.kernel(&data.other_quant, &data.grad_output_dims, grad_output,
                                                 &data.other_dims, other, &data.grad_input_dims, grad_input);
                            });
}

const TFLMRegistration* Register_MUL_GRAD() { return RegisterGeneric<MulGradOp>(); }

}  // namespace tinytrain

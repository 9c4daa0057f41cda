// TFLM glue of TT_CONV_2D and TT_DEPTHWISE_CONV_2D over tt_conv2d_s8 and
// tt_depthwise_conv2d_s8: TFLite's int8 convolutions with the per-channel
// requantization read from a constant input, so nothing per channel is
// allocated in the arena (TFLM's own kernels keep 8 bytes per output channel).
// The scratch the core asks for (CMSIS-NN's, in the cmsis-nn kernel set; none
// in the portable core) is requested in Prepare and fetched in Eval.
#include <math.h>

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "layer_grad_util.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr int kInput = 0;
constexpr int kFilter = 1;
constexpr int kBias = 2;
constexpr int kRequantization = 3;
constexpr int kOutput = 0;
constexpr int32_t kPaddingSame = 0;  // TFLite's Padding enum
constexpr int32_t kPaddingValid = 1;

// Only what Eval cannot read from its tensors. These ops repeat per tile in a tiled stage, and each pays
// for its OpData: the options are parsed from the node in Prepare rather than kept, and Eval takes the
// shapes from its eval tensors' dims rather than from a copy: 52 bytes per op, about half what keeping them costs.
struct OpData {
  tt_conv_params params;
  int scratch_index;  // the arena scratch buffer of the core's *_get_buffer_size bytes; -1 when 0
  int32_t scratch_bytes;
};

void* Init(TfLiteContext* context, const char*, size_t) { return context->AllocatePersistentBuffer(context, sizeof(OpData)); }

// The pad TFLite puts before one axis, after checking the output size is the one `padding` gives.
TfLiteStatus ResolvePad(TfLiteContext* context, const char* op_name, const char* axis, int32_t padding, int in, int out,
                        int kernel, int stride, int dilation, int32_t* pad) {
  int64_t effective_kernel = 0;
  TT_ENSURE_OK(EffectiveKernel(context, op_name, axis, kernel, dilation, &effective_kernel));
  const int expected = TfliteOutputSize(padding == kPaddingSame, in, effective_kernel, stride);
  TT_ENSURE_MSG(context, out == expected, op_name,
                "%s: output %d but %s padding gives %d for input %d, kernel %d, stride %d, dilation %d", axis, out,
                padding == kPaddingSame ? "SAME" : "VALID", expected, in, kernel, stride, dilation);
  *pad = TflitePadBefore(in, out, effective_kernel, stride);
  return kTfLiteOk;
}

// The clamp of a fused activation on the int8 output, as TFLite's kernels compute it in Prepare.
TfLiteStatus ActivationRange(TfLiteContext* context, const char* op_name, int32_t activation,
                             const TfLiteTensor* output, int32_t* low, int32_t* high) {
  const float scale = output->params.scale;
  const int32_t zero_point = output->params.zero_point;
  const auto quantize = [&](float real) { return zero_point + static_cast<int32_t>(roundf(real / scale)); };
  const auto at_least = [](int32_t value) { return value > -128 ? value : -128; };
  const auto at_most = [](int32_t value) { return value < 127 ? value : 127; };
  switch (activation) {
    case 0:  // NONE
      *low = -128, *high = 127;
      return kTfLiteOk;
    case 1:  // RELU
      *low = at_least(quantize(0.0f)), *high = 127;
      return kTfLiteOk;
    case 2:  // RELU_N1_TO_1
      *low = at_least(quantize(-1.0f)), *high = at_most(quantize(1.0f));
      return kTfLiteOk;
    case 3:  // RELU6
      *low = at_least(quantize(0.0f)), *high = at_most(quantize(6.0f));
      return kTfLiteOk;
    default:
      context->ReportError(context, "%s: activation %d is not NONE (0), RELU (1), RELU_N1_TO_1 (2) or RELU6 (3)",
                           op_name, static_cast<int>(activation));
      return kTfLiteError;
  }
}

using ScratchSize = int32_t (*)(const tt_conv_params*, const tt_dims*, const tt_dims*, const tt_dims*);

// Every check of both ops, after their options parsed; `depth_multiplier` is 0 for TT_CONV_2D.
template <typename Options>
TfLiteStatus PrepareConv(TfLiteContext* context, TfLiteNode* node, const char* op_name, const Options& options,
                         int32_t depth_multiplier, ScratchSize scratch_size) {
  TT_ENSURE_MSG(context, node->user_data != nullptr, op_name, "arena too small for op data");
  TT_ENSURE_OK(CheckNodeTensors(context, node, op_name));
  TT_ENSURE_OK(CheckIoCounts(context, node, op_name, 4, 1, 1));
  auto* data = static_cast<OpData*>(node->user_data);
  TT_ENSURE_MSG(context, options.padding == kPaddingSame || options.padding == kPaddingValid, op_name,
                "padding must be SAME (0) or VALID (1), got %d", static_cast<int>(options.padding));
  TT_ENSURE_MSG(context, options.stride_h >= 1 && options.stride_w >= 1, op_name, "strides must be >= 1, got %d, %d",
                static_cast<int>(options.stride_h), static_cast<int>(options.stride_w));
  TT_ENSURE_MSG(context, options.dilation_h >= 1 && options.dilation_w >= 1, op_name,
                "dilations must be >= 1, got %d, %d", static_cast<int>(options.dilation_h),
                static_cast<int>(options.dilation_w));

  TT_TEMP_TENSOR(input, context, node->inputs->data[kInput], op_name);
  TT_TEMP_TENSOR(filter, context, node->inputs->data[kFilter], op_name);
  TT_TEMP_TENSOR(bias, context, node->inputs->data[kBias], op_name);
  TT_TEMP_TENSOR(requant, context, node->inputs->data[kRequantization], op_name);
  TT_TEMP_TENSOR(output, context, node->outputs->data[kOutput], op_name);
  TT_ENSURE_MSG(context, input.get() != nullptr && filter.get() != nullptr && requant.get() != nullptr, op_name,
                "input, filter and requantization must be present");
  TT_ENSURE_MSG(context, input->type == kTfLiteInt8 && filter->type == kTfLiteInt8 && output->type == kTfLiteInt8,
                op_name, "input, filter and output must be int8, got %s, %s, %s", TypeName(input->type),
                TypeName(filter->type), TypeName(output->type));
  TT_ENSURE_MSG(context, IsPerTensorQuantized(input.get()) && IsPerTensorQuantized(output.get()) &&
                             output->params.scale > 0.0f,
                op_name, "input and output need per-tensor quantization with a positive scale");
  TT_ENSURE_MSG(context, input->dims->size == 4 && filter->dims->size == 4 && output->dims->size == 4, op_name,
                "input, filter and output must be 4-D, got ranks %d, %d, %d", input->dims->size, filter->dims->size,
                output->dims->size);
  const tt_dims in = DimsNHWC(input->dims);
  const tt_dims taps = DimsNHWC(filter->dims);
  const tt_dims out = DimsNHWC(output->dims);
  const int channels = out.c;
  TT_ENSURE_MSG(context, in.n == out.n, op_name, "output has batch %d but the input has %d", static_cast<int>(out.n),
                static_cast<int>(in.n));
  if (depth_multiplier == 0) {
    TT_ENSURE_MSG(context, taps.n == out.c && taps.c == in.c, op_name,
                  "filter must be [%d, kh, kw, %d] for the output and input, got [%d, %d, %d, %d]",
                  static_cast<int>(out.c), static_cast<int>(in.c), static_cast<int>(taps.n), static_cast<int>(taps.h),
                  static_cast<int>(taps.w), static_cast<int>(taps.c));
  } else {
    TT_ENSURE_MSG(context, taps.n == 1 && taps.c == out.c && out.c == in.c * depth_multiplier, op_name,
                  "filter [%d, %d, %d, %d] and output channels %d do not match input channels %d times depth_multiplier %d",
                  static_cast<int>(taps.n), static_cast<int>(taps.h), static_cast<int>(taps.w),
                  static_cast<int>(taps.c), static_cast<int>(out.c), static_cast<int>(in.c),
                  static_cast<int>(depth_multiplier));
  }
  if (bias.get() != nullptr) {
    TT_ENSURE_MSG(context, bias->type == kTfLiteInt32 && NumElements(bias->dims) == channels, op_name,
                  "bias must be int32 [%d], got %s with %d elements", channels, TypeName(bias->type),
                  NumElements(bias->dims));
  }
  TT_ENSURE_MSG(context, IsConstantTensor(requant.get()) && requant->type == kTfLiteInt32 &&
                             requant->dims->size == 2 && requant->dims->data[0] == 2 &&
                             requant->dims->data[1] == channels,
                op_name, "requantization must be a constant int32 [2, %d] (multipliers, shifts)", channels);
  const int32_t* multipliers = requant->data.i32;
  for (int c = 0; c < channels; ++c) {
    const int32_t shift = multipliers[channels + c];
    TT_ENSURE_MSG(context, multipliers[c] >= 0 && shift >= -31 && shift <= 30, op_name,
                  "requantization of channel %d: multiplier %d must be >= 0 and shift %d in [-31, 30]", c,
                  static_cast<int>(multipliers[c]), static_cast<int>(shift));
  }

  tt_conv_params& params = data->params;
  params.conv = tt_conv_grad_params{options.stride_h, options.stride_w, options.dilation_h, options.dilation_w, 0, 0};
  params.depth_multiplier = depth_multiplier > 0 ? depth_multiplier : 1;
  TT_ENSURE_OK(ResolvePad(context, op_name, "height", options.padding, in.h, out.h, taps.h, options.stride_h,
                          options.dilation_h, &params.conv.pad_top));
  TT_ENSURE_OK(ResolvePad(context, op_name, "width", options.padding, in.w, out.w, taps.w, options.stride_w,
                          options.dilation_w, &params.conv.pad_left));
  params.input_offset = -input->params.zero_point;
  params.output_offset = output->params.zero_point;
  TT_ENSURE_MSG(context, params.input_offset >= -127 && params.input_offset <= 128 && params.output_offset >= -128 &&
                             params.output_offset <= 127,
                op_name, "int8 zero points must be in [-128, 127], got %d and %d",
                static_cast<int>(-params.input_offset), static_cast<int>(params.output_offset));
  TT_ENSURE_OK(ActivationRange(context, op_name, options.activation, output.get(), &params.activation_min,
                               &params.activation_max));
  data->scratch_bytes = scratch_size(&params, &in, &taps, &out);
  TT_ENSURE_MSG(context, data->scratch_bytes >= 0, op_name, "the kernel rejects this geometry");
  data->scratch_index = -1;
  if (data->scratch_bytes > 0) {
    TT_ENSURE_MSG(context,
                  context->RequestScratchBufferInArena(context, data->scratch_bytes, &data->scratch_index) == kTfLiteOk,
                  op_name, "arena too small for %d bytes of scratch", static_cast<int>(data->scratch_bytes));
  }
  return kTfLiteOk;
}

using Core = tt_status (*)(const tt_context*, const tt_conv_params*, const tt_dims*, const int8_t*, const tt_dims*,
                           const int8_t*, const int32_t*, const tt_requantization*, const tt_dims*, int8_t*);

TfLiteStatus EvalConv(TfLiteContext* context, TfLiteNode* node, const char* op_name, Core core) {
  const auto& data = *static_cast<const OpData*>(node->user_data);
  const TfLiteEvalTensor* input = EvalInput(context, node, kInput);
  const TfLiteEvalTensor* filter = EvalInput(context, node, kFilter);
  const TfLiteEvalTensor* bias = node->inputs->data[kBias] < 0 ? nullptr : EvalInput(context, node, kBias);
  TfLiteEvalTensor* output = EvalOutput(context, node, kOutput);
  const tt_dims input_dims = DimsNHWC(input->dims), filter_dims = DimsNHWC(filter->dims);
  const tt_dims output_dims = DimsNHWC(output->dims);
  const int32_t* requant = EvalInput(context, node, kRequantization)->data.i32;
  const tt_requantization requantization{requant, requant + output_dims.c};
  const tt_context scratch{data.scratch_index < 0 ? nullptr : context->GetScratchBuffer(context, data.scratch_index),
                           data.scratch_bytes};
  TT_ENSURE_STATUS(context,
                   core(&scratch, &data.params, &input_dims, input->data.int8, &filter_dims, filter->data.int8,
                        bias == nullptr ? nullptr : bias->data.i32, &requantization, &output_dims, output->data.int8),
                   op_name, "eval");
  return kTfLiteOk;
}

constexpr const char* kConvName = "TT_CONV_2D";
constexpr const char* kDepthwiseName = "TT_DEPTHWISE_CONV_2D";

template <typename Options>
TfLiteStatus ParseOptions(TfLiteContext* context, const TfLiteNode* node, const char* op_name,
                          tt_status (*parse)(const uint8_t*, size_t, Options*), Options* options) {
  const tt_status status = parse(static_cast<const uint8_t*>(node->custom_initial_data),
                                 static_cast<size_t>(node->custom_initial_data_size), options);
  TT_ENSURE_STATUS(context, status, op_name, "custom options");
  return kTfLiteOk;
}

TfLiteStatus PrepareConv2d(TfLiteContext* context, TfLiteNode* node) {
  tt_conv_2d_options options;
  TT_ENSURE_OK(ParseOptions(context, node, kConvName, tt_parse_conv_2d, &options));
  return PrepareConv(context, node, kConvName, options, 0, tt_conv2d_s8_get_buffer_size);
}
TfLiteStatus EvalConv2d(TfLiteContext* context, TfLiteNode* node) {
  return EvalConv(context, node, kConvName, tt_conv2d_s8);
}

TfLiteStatus PrepareDepthwise(TfLiteContext* context, TfLiteNode* node) {
  tt_depthwise_conv_2d_options options;
  TT_ENSURE_OK(ParseOptions(context, node, kDepthwiseName, tt_parse_depthwise_conv_2d, &options));
  TT_ENSURE_MSG(context, options.depth_multiplier >= 1, kDepthwiseName, "depth_multiplier must be >= 1, got %d",
                static_cast<int>(options.depth_multiplier));
  return PrepareConv(context, node, kDepthwiseName, options, options.depth_multiplier,
                     tt_depthwise_conv2d_s8_get_buffer_size);
}
TfLiteStatus EvalDepthwise(TfLiteContext* context, TfLiteNode* node) {
  return EvalConv(context, node, kDepthwiseName, tt_depthwise_conv2d_s8);
}

}  // namespace

const TFLMRegistration* Register_CONV_2D() {
  static const TFLMRegistration registration = RegisterOp(Init, PrepareConv2d, EvalConv2d);
  return &registration;
}

const TFLMRegistration* Register_DEPTHWISE_CONV_2D() {
  static const TFLMRegistration registration = RegisterOp(Init, PrepareDepthwise, EvalDepthwise);
  return &registration;
}

}  // namespace tinytrain

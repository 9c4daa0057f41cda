// TFLM glue of TT_TILED_STAGE over tt_tiled_stage_s8: a frozen first stage of
// convolutions run patch by patch in one scratch buffer that TFLM plans with
// the tensors (requested in Prepare), instead of a copy of every stage op per
// tile with a node, tensors and kernel data each. A streamed stage (input 0
// omitted, a last input describing the sample) reads its input from the
// firmware's SetStreamedInput source instead of an arena tensor.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr const char* kName = "TT_TILED_STAGE";
constexpr int kInput = 0;
constexpr int kDescription = 1;
constexpr int kFirstWeight = 2;  // then filter, bias, requantization per stage op
constexpr int kOutput = 0;

struct OpData {
  tt_status options_status;
  tt_tiled_stage_options options;
  int scratch_index;  // -1: the stage needs no scratch
  int32_t scratch_bytes;
  tt_dims input;  // the stage input's shape
  bool streamed;  // read from the SetStreamedInput source
};

const StreamedInput* g_streamed_input = nullptr;

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return InitWithOptions<OpData>(context, buffer, length, tt_parse_tiled_stage);
}

// The conv's filter, bias and requantization against its description row, or all three omitted for PAD and ADD.
TfLiteStatus PrepareWeights(TfLiteContext* context, TfLiteNode* node, int k, const int32_t* row, int32_t cin) {
  const int first = kFirstWeight + 3 * k;
  const int32_t kind = row[0], channels = row[5];
  if (kind == TT_STAGE_OP_PAD || kind == TT_STAGE_OP_ADD) {
    TT_ENSURE_MSG(context, node->inputs->data[first] < 0 && node->inputs->data[first + 1] < 0 &&
                               node->inputs->data[first + 2] < 0,
                  kName, "stage op %d is a PAD or ADD: its filter, bias and requantization inputs must be -1", k);
    return kTfLiteOk;
  }
  TT_TEMP_TENSOR(filter, context, node->inputs->data[first], kName);
  TT_TEMP_TENSOR(bias, context, node->inputs->data[first + 1], kName);
  TT_TEMP_TENSOR(requant, context, node->inputs->data[first + 2], kName);
  TT_ENSURE_MSG(context, filter.get() != nullptr && requant.get() != nullptr, kName,
                "stage op %d (a conv) needs its filter and requantization", k);
  const bool depthwise = kind == TT_STAGE_OP_DEPTHWISE;
  const tt_dims taps = DimsNHWC(filter->dims);
  TT_ENSURE_MSG(context, filter->type == kTfLiteInt8 && filter->dims->size == 4 &&
                             taps.n == (depthwise ? 1 : channels) && taps.h == row[6] && taps.w == row[7] &&
                             taps.c == (depthwise ? channels : cin),
                kName, "stage op %d: filter must be int8 [%d, %d, %d, %d], got %s [%d, %d, %d, %d]", k,
                static_cast<int>(depthwise ? 1 : channels), static_cast<int>(row[6]), static_cast<int>(row[7]),
                static_cast<int>(depthwise ? channels : cin), TypeName(filter->type), static_cast<int>(taps.n),
                static_cast<int>(taps.h), static_cast<int>(taps.w), static_cast<int>(taps.c));
  if (bias.get() != nullptr) {
    TT_ENSURE_MSG(context, bias->type == kTfLiteInt32 && NumElements(bias->dims) == channels, kName,
                  "stage op %d: bias must be int32 [%d]", k, static_cast<int>(channels));
  }
  TT_ENSURE_MSG(context, IsConstantTensor(requant.get()) && requant->type == kTfLiteInt32 &&
                             requant->dims->size == 2 && requant->dims->data[0] == 2 &&
                             requant->dims->data[1] == channels,
                kName, "stage op %d: requantization must be a constant int32 [2, %d] (multipliers, shifts)", k,
                static_cast<int>(channels));
  const int32_t* values = requant->data.i32;
  for (int c = 0; c < channels; ++c) {
    TT_ENSURE_MSG(context, values[c] >= 0 && values[channels + c] >= -31 && values[channels + c] <= 30, kName,
                  "stage op %d, channel %d: multiplier %d must be >= 0 and shift %d in [-31, 30]", k, c,
                  static_cast<int>(values[c]), static_cast<int>(values[channels + c]));
  }
  return kTfLiteOk;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(CheckOpData<OpData>(context, node, kName));
  auto* data = static_cast<OpData*>(node->user_data);
  const tt_tiled_stage_options& options = data->options;
  TT_ENSURE_MSG(context, options.num_ops >= 1 && options.num_ops <= TT_STAGE_MAX_OPS, kName,
                "num_ops must be 1 to %d, got %d", TT_STAGE_MAX_OPS, static_cast<int>(options.num_ops));
  data->streamed = node->inputs->size > kInput && node->inputs->data[kInput] < 0;
  const int sample = kFirstWeight + 3 * options.num_ops;  // a streamed stage's sample description
  TT_ENSURE_OK(CheckIoCounts(context, node, kName, sample + (data->streamed ? 1 : 0), 1, 1));
  TT_TEMP_TENSOR(input, context, node->inputs->data[data->streamed ? sample : kInput], kName);
  TT_TEMP_TENSOR(description, context, node->inputs->data[kDescription], kName);
  TT_TEMP_TENSOR(output, context, node->outputs->data[kOutput], kName);
  TT_ENSURE_MSG(context, input.get() != nullptr && description.get() != nullptr, kName,
                "input and description must be present");
  if (data->streamed) {  // a constant int32 [4] holding the sample's shape, quantized as the sample
    TT_ENSURE_MSG(context, IsConstantTensor(input.get()) && input->type == kTfLiteInt32 && input->dims->size == 1 &&
                               input->dims->data[0] == 4 && input->data.i32[0] == 1,
                  kName, "a streamed stage's last input must be a constant int32 [4]: the sample's shape [1, h, w, c]");
    data->input = tt_dims{1, input->data.i32[1], input->data.i32[2], input->data.i32[3]};
  } else {
    TT_ENSURE_MSG(context, input->type == kTfLiteInt8 && input->dims->size == 4 && input->dims->data[0] == 1, kName,
                  "input must be int8 [1, h, w, c]");
    data->input = DimsNHWC(input->dims);
  }
  TT_ENSURE_MSG(context, output->type == kTfLiteInt8 && output->dims->size == 4 && output->dims->data[0] == 1, kName,
                "output must be int8 [1, h, w, c]");
  TT_ENSURE_MSG(context, IsPerTensorQuantized(input.get()) && IsPerTensorQuantized(output.get()), kName,
                "input and output need per-tensor quantization");
  TT_ENSURE_MSG(context, IsConstantTensor(description.get()) && description->type == kTfLiteInt32 &&
                             description->dims->size == 2 && description->dims->data[0] == options.num_ops &&
                             description->dims->data[1] == TT_STAGE_ROW_FIELDS,
                kName, "description must be a constant int32 [%d, %d]", static_cast<int>(options.num_ops),
                TT_STAGE_ROW_FIELDS);
  const tt_dims in = data->input, out = DimsNHWC(output->dims);
  const tt_tiled_stage_params params{description->data.i32, options.num_ops, options.tiles_h, options.tiles_w};
  TT_ENSURE_STATUS(context, tt_tiled_stage_get_buffer_size(&params, &in, &data->scratch_bytes), kName,
                   "description (an op's kind, inputs, shape, geometry or quantization, or a tiling the stage cannot run)");
  int32_t channels[TT_STAGE_MAX_OPS + 1] = {in.c};
  for (int k = 0; k < options.num_ops; ++k) {
    const int32_t* row = params.description + k * TT_STAGE_ROW_FIELDS;
    channels[k + 1] = row[5];
    const int sources = row[0] == TT_STAGE_OP_ADD ? 2 : 1;
    for (int i = 0; i < sources; ++i) {  // the input's zero point as the description applies it
      const int32_t offset = i == 0 ? row[15] : row[19];
      TT_ENSURE_MSG(context, row[1 + i] != -1 || offset == -input->params.zero_point, kName,
                    "stage op %d reads the input (zero point %d) with input offset %d", k,
                    static_cast<int>(input->params.zero_point), static_cast<int>(offset));
    }
    TT_ENSURE_OK(PrepareWeights(context, node, k, row, channels[row[1] + 1]));
  }
  const int32_t* last = params.description + (options.num_ops - 1) * TT_STAGE_ROW_FIELDS;
  TT_ENSURE_MSG(context, out.h == last[3] && out.w == last[4] && out.c == last[5] &&
                             output->params.zero_point == last[16],
                kName, "output must be [1, %d, %d, %d] with zero point %d, as the last stage op writes it",
                static_cast<int>(last[3]), static_cast<int>(last[4]), static_cast<int>(last[5]),
                static_cast<int>(last[16]));
  data->scratch_index = -1;
  if (data->scratch_bytes > 0) {
    TT_ENSURE_MSG(context,
                  context->RequestScratchBufferInArena(context, static_cast<size_t>(data->scratch_bytes),
                                                       &data->scratch_index) == kTfLiteOk,
                  kName, "arena too small for %d bytes of scratch", static_cast<int>(data->scratch_bytes));
  }
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const auto& data = *static_cast<const OpData*>(node->user_data);
  TfLiteEvalTensor* output = EvalOutput(context, node, kOutput);
  const tt_tiled_stage_params params{EvalInput(context, node, kDescription)->data.i32, data.options.num_ops,
                                     data.options.tiles_h, data.options.tiles_w};
  tt_stage_weights weights[TT_STAGE_MAX_OPS];
  for (int k = 0; k < params.num_ops; ++k) {
    const int first = kFirstWeight + 3 * k;
    weights[k] = tt_stage_weights{nullptr, nullptr, {nullptr, nullptr}};
    if (node->inputs->data[first] < 0) continue;
    const int32_t* requant = EvalInput(context, node, first + 2)->data.i32;
    const int32_t channels = params.description[k * TT_STAGE_ROW_FIELDS + 5];
    weights[k].filter = EvalInput(context, node, first)->data.int8;
    weights[k].bias = node->inputs->data[first + 1] < 0 ? nullptr : EvalInput(context, node, first + 1)->data.i32;
    weights[k].requant = tt_requantization{requant, requant + channels};
  }
  int8_t* scratch =
      data.scratch_index < 0 ? nullptr : static_cast<int8_t*>(context->GetScratchBuffer(context, data.scratch_index));
  TT_ENSURE_MSG(context, scratch != nullptr || data.scratch_bytes == 0, kName, "TFLM gave no scratch buffer (index %d)",
                data.scratch_index);
  const tt_dims in = data.input, out = DimsNHWC(output->dims);
  if (!data.streamed) {
    TT_ENSURE_STATUS(context,
                     tt_tiled_stage_s8(&params, weights, scratch, data.scratch_bytes, &in,
                                       EvalInput(context, node, kInput)->data.int8, &out, output->data.int8),
                     kName, "eval");
    return kTfLiteOk;
  }
  const StreamedInput* source = g_streamed_input;
  TT_ENSURE_MSG(context, source != nullptr && (source->image != nullptr || source->read != nullptr), kName,
                "the model streams its sample: call tinytrain::SetStreamedInput with the image or a row reader "
                "before Invoke");
  if (source->image != nullptr) {
    const int64_t sample_bytes = int64_t{in.h} * in.w * in.c;
    TT_ENSURE_MSG(context, source->bytes >= sample_bytes, kName,
                  "the streamed sample holds %d bytes; the model's int8 sample [1, %d, %d, %d] needs %d",
                  static_cast<int>(source->bytes), static_cast<int>(in.h), static_cast<int>(in.w),
                  static_cast<int>(in.c), static_cast<int>(sample_bytes));
    TT_ENSURE_STATUS(context,
                     tt_tiled_stage_s8(&params, weights, scratch, data.scratch_bytes, &in, source->image, &out,
                                       output->data.int8),
                     kName, "eval");
    return kTfLiteOk;
  }
  TT_ENSURE_STATUS(context,
                   tt_tiled_stage_read_s8(&params, weights, scratch, data.scratch_bytes, &in, source->read,
                                          source->context, &out, output->data.int8),
                   kName, "eval (or the streamed sample's row reader)");
  return kTfLiteOk;
}

}  // namespace

void SetStreamedInput(const StreamedInput* input) { g_streamed_input = input; }

const TFLMRegistration* Register_TILED_STAGE() {
  static const TFLMRegistration registration = RegisterOp(Init, Prepare, Eval);
  return &registration;
}

}  // namespace tinytrain

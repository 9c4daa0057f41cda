// TFLM glue of TT_INIT_VARIABLES over tt_copy.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "tinytrain_ops.h"

namespace tinytrain {
namespace {

constexpr const char* kOpName = "TT_INIT_VARIABLES";
// Inputs are (source, variable) pairs: pair i is inputs 2i and 2i + 1.
constexpr int kSourceOfPair = 0;
constexpr int kVariableOfPair = 1;

struct OpData {
  tt_status options_status;
  tt_init_variables_options options;
  int32_t* pair_bytes;  // Bytes of pair i's tensors, num_pairs entries.
  bool copied;          // Whether the variables have their sources' values since Init or the last reset.
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  auto* data = static_cast<OpData*>(InitWithOptions<OpData>(context, buffer, length, tt_parse_init_variables));
  if (data != nullptr) data->copied = false;
  return data;
}

// reset() zeroes the variables; the next invoke must copy the sources again.
void Reset(TfLiteContext*, void* buffer) { static_cast<OpData*>(buffer)->copied = false; }

TfLiteStatus PreparePair(TfLiteContext* context, const TfLiteNode* node, int pair, int32_t* bytes) {
  TT_TEMP_TENSOR(source, context, node->inputs->data[2 * pair + kSourceOfPair], kOpName);
  TT_TEMP_TENSOR(variable, context, node->inputs->data[2 * pair + kVariableOfPair], kOpName);
  TT_ENSURE_MSG(context, source.get() != nullptr && variable.get() != nullptr, kOpName,
                "pair %d: source and variable must both be present", pair);
  TT_ENSURE_MSG(context, IsConstantTensor(source.get()), kOpName,
                "pair %d: source must be a constant tensor", pair);
  TT_ENSURE_MSG(context, variable->is_variable, kOpName, "pair %d: variable must be a variable tensor", pair);
  TT_ENSURE_MSG(context, source->type == variable->type && source->bytes == variable->bytes && source->bytes > 0,
                kOpName, "pair %d: source (%s, %d bytes) and variable (%s, %d bytes) must have one type and size", pair,
                TypeName(source->type), static_cast<int>(source->bytes), TypeName(variable->type),
                static_cast<int>(variable->bytes));
  *bytes = static_cast<int32_t>(source->bytes);
  return kTfLiteOk;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(CheckOpData<OpData>(context, node, kOpName));
  auto* data = static_cast<OpData*>(node->user_data);
  const int32_t num_pairs = data->options.num_pairs;
  TT_ENSURE_MSG(context, num_pairs >= 1 && node->inputs->size == 2 * num_pairs, kOpName,
                "num_pairs is %d, so it expects %d inputs (source, variable pairs), got %d",
                static_cast<int>(num_pairs), static_cast<int>(2 * num_pairs), node->inputs->size);
  TT_ENSURE_MSG(context, node->outputs->size == 0, kOpName, "expects no outputs, got %d", node->outputs->size);
  const size_t table_bytes = sizeof(int32_t) * static_cast<size_t>(num_pairs);
  data->pair_bytes = static_cast<int32_t*>(context->AllocatePersistentBuffer(context, table_bytes));
  TT_ENSURE_MSG(context, data->pair_bytes != nullptr, kOpName, "arena too small for %d pair sizes",
                static_cast<int>(num_pairs));
  for (int pair = 0; pair < num_pairs; ++pair) TT_ENSURE_OK(PreparePair(context, node, pair, &data->pair_bytes[pair]));
  return kTfLiteOk;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  auto* data = static_cast<OpData*>(node->user_data);
  if (data->copied) return kTfLiteOk;
  for (int pair = 0; pair < data->options.num_pairs; ++pair) {
    TT_ENSURE_STATUS(context,
                     tt_copy(data->pair_bytes[pair], EvalInput(context, node, 2 * pair + kSourceOfPair)->data.data,
                             EvalInput(context, node, 2 * pair + kVariableOfPair)->data.data),
                     kOpName, "eval");
  }
  data->copied = true;
  return kTfLiteOk;
}

}  // namespace

const TFLMRegistration* Register_INIT_VARIABLES() {
  static const TFLMRegistration registration = RegisterOp(Init, Prepare, Eval, Reset);
  return &registration;
}

}  // namespace tinytrain

// Firmware only (real TFLM headers): the training state kernels/core/checkpoint saves and restores,
// found in a MicroInterpreter: each TT_SGD's parameter, momentum and stochastic-rounding state, and
// every int8 gradient's scale history.
//
//   tinytrain::TrainingInterpreter interpreter(model, resolver, arena, arena_bytes);
//   interpreter.AllocateTensors();
//   interpreter.Invoke();  // the first invoke: TT_INIT_VARIABLES copies the pretrained values
//   tt_checkpoint_tensor tensors[kMax];
//   uint32_t count;
//   tinytrain::CheckpointTensors(model, interpreter, tensors, kMax, &count);
//   const uint32_t id = tt_checkpoint_model_id(model_bytes, model_size);
//   tt_checkpoint_state state;
//   tt_checkpoint_restore(&storage, id, tensors, count, &state);  // TT_CHECKPOINT_NONE: pretrained kept
//   ... train ... tt_checkpoint_save(&storage, id, tensors, count, &state);
#ifndef TINYTRAIN_KERNELS_TFLM_TINYTRAIN_CHECKPOINT_H_
#define TINYTRAIN_KERNELS_TFLM_TINYTRAIN_CHECKPOINT_H_

#include <stdint.h>
#include <string.h>

#include "../core/checkpoint/tt_checkpoint.h"
#include "specializable_ops.h"
#include "tensorflow/lite/micro/memory_helpers.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#ifndef TINYTRAIN_LEGACY_TFLM_REGISTRATION
#include "tensorflow/lite/micro/micro_interpreter_graph.h"
#endif

namespace tinytrain {

// A MicroInterpreter that also hands out any tensor of subgraph 0, variables included. TFLM's
// GetTensor serves only with preserve_all_tensors (every tensor kept, a far larger arena); the eval
// tensors exist regardless, and this reads them through the interpreter's context, as a kernel does.
class TrainingInterpreter : public tflite::MicroInterpreter {
 public:
  using tflite::MicroInterpreter::MicroInterpreter;

  // The tensor after AllocateTensors; nullptr for an index outside subgraph 0.
  TfLiteEvalTensor* EvalTensor(const tflite::Model* model, int tensor_index) {
    const auto* tensors = model->subgraphs()->Get(0)->tensors();
    if (tensor_index < 0 || tensors == nullptr || static_cast<uint32_t>(tensor_index) >= tensors->size()) {
      return nullptr;
    }
    return context().GetEvalTensor(&context(), tensor_index);
  }

  // What operator `op_index` of subgraph 0 keeps between invokes (its init's result, TFLM's
  // node.user_data) after AllocateTensors; nullptr outside subgraph 0. TFLM has no public accessor: the
  // interpreter's graph holds the nodes (a MicroInterpreterGraph since TFLMRegistration, a MicroGraph
  // before), reached through the context, as the graph kernels (IF, WHILE) reach it.
  void* OpData(const tflite::Model* model, int op_index) {
    const auto* operators = model->subgraphs()->Get(0)->operators();
    if (op_index < 0 || operators == nullptr || static_cast<uint32_t>(op_index) >= operators->size()) return nullptr;
#ifdef TINYTRAIN_LEGACY_TFLM_REGISTRATION
    tflite::MicroGraph& graph = tflite::GetMicroContext(&context())->graph();
#else
    auto& graph = static_cast<tflite::MicroInterpreterGraph&>(tflite::GetMicroContext(&context())->graph());
#endif
    if (graph.GetAllocations() == nullptr) return nullptr;
    return graph.GetAllocations()[0].node_and_registrations[op_index].node.user_data;
  }
};

// TT_SGD's inputs: (parameter, gradient, gradient scale, momentum or -1, control, ...).
constexpr int kSgdParameterInput = 0;
constexpr int kSgdMomentumInput = 3;

// Appends variable `index` of subgraph 0 to `tensors`; false when it is missing or `capacity` is reached.
inline bool AddCheckpointTensor(const tflite::Model* model, TrainingInterpreter& interpreter, int index,
                                tt_checkpoint_tensor* tensors, uint32_t capacity, uint32_t* count) {
  TfLiteEvalTensor* tensor = interpreter.EvalTensor(model, index);
  size_t bytes = 0;
  if (*count == capacity || tensor == nullptr || tensor->data.data == nullptr ||
      tflite::TfLiteEvalTensorByteLength(tensor, &bytes) != kTfLiteOk || bytes == 0 || bytes > UINT32_MAX) {
    return false;
  }
  tensors[(*count)++] =
      tt_checkpoint_tensor{static_cast<uint32_t>(index), static_cast<uint32_t>(bytes), tensor->data.data};
  return true;
}

// Fills `tensors` with `model`'s training state, in the order tinytrain_tflm.runtime.checkpoint
// uses, op by op in execution order: every variable the op writes as an output (an int8 gradient's
// scale with its history), then for a TT_SGD its parameter, its momentum when it has one, and its
// stochastic-rounding generator state (in its op data; an entry under every rounding mode, so one
// model has one layout). kTfLiteError when the model has no TT_SGD, a tensor or op data is missing,
// or more than `capacity` entries are needed.
inline TfLiteStatus CheckpointTensors(const tflite::Model* model, TrainingInterpreter& interpreter,
                                      tt_checkpoint_tensor* tensors, uint32_t capacity, uint32_t* count) {
  *count = 0;
  const auto* codes = model->operator_codes();
  const auto* operators = model->subgraphs()->Get(0)->operators();
  const auto* model_tensors = model->subgraphs()->Get(0)->tensors();
  if (codes == nullptr || operators == nullptr || model_tensors == nullptr) return kTfLiteError;
  bool trains = false;
  for (uint32_t op_index = 0; op_index < operators->size(); ++op_index) {
    const auto* op = operators->Get(op_index);
    if (op->opcode_index() >= codes->size()) return kTfLiteError;
    if (op->outputs() != nullptr) {
      for (const int index : *op->outputs()) {
        if (index < 0 || static_cast<uint32_t>(index) >= model_tensors->size()) continue;
        if (model_tensors->Get(index)->is_variable() &&
            !AddCheckpointTensor(model, interpreter, index, tensors, capacity, count)) {
          return kTfLiteError;
        }
      }
    }
    const auto* name = codes->Get(op->opcode_index())->custom_code();
    if (name == nullptr || strcmp(name->c_str(), "TT_SGD") != 0) continue;
    const auto* inputs = op->inputs();
    if (inputs == nullptr || inputs->size() <= static_cast<uint32_t>(kSgdMomentumInput)) return kTfLiteError;
    for (const int input : {kSgdParameterInput, kSgdMomentumInput}) {
      const int index = inputs->Get(input);
      if (index >= 0 && !AddCheckpointTensor(model, interpreter, index, tensors, capacity, count)) return kTfLiteError;
    }
    auto* data = static_cast<SgdOp::OpData*>(interpreter.OpData(model, static_cast<int>(op_index)));
    if (*count == capacity || data == nullptr) return kTfLiteError;
    tensors[(*count)++] = tt_checkpoint_tensor{TT_CHECKPOINT_ROUNDING_STATE | op_index,
                                               static_cast<uint32_t>(sizeof(data->rng_state)), &data->rng_state};
    trains = true;
  }
  return trains ? kTfLiteOk : kTfLiteError;
}

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_TINYTRAIN_CHECKPOINT_H_

// Trains a tinytrain training model on the firmware runtime: tflite::MicroInterpreter, the builtin
// ops the model lists, tinytrain's ops, and the array written by
//   tinytrain-tflm export TRAIN.tflite --c-array train_model.cc
// The labelled samples are synthetic (each class is a fixed pseudo-random int8 pattern plus noise),
// so the example runs on any model whatever its input shape. It prints the held-out accuracy, the
// mean loss every kReportEvery steps, the accuracy again, and once more after MicroInterpreter::Reset()
// (the pretrained weights). The second half of the steps runs at half the compiled learning rate, set
// at run time through the learning-rate input: a step schedule. It wires the field guards as a device
// would: every sample checked before training (tt_sample_check_s8), the state checkpointed every
// kSaveEvery steps (kernels/core/checkpoint, two slots), and a divergence rolled back to the last
// checkpoint (tt_divergence_guard_step). At the end it restores that checkpoint over the pretrained
// weights, as a reboot would. Usage: tinytrain_example [STEPS [ARENA_BYTES]] (ARENA_BYTES: give TFLM only that
// much of the arena, to check a smaller one).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/core/guard/tt_training_guard.h"
#include "kernels/tflm/tinytrain_checkpoint.h"
#include "kernels/tflm/tinytrain_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "train_model.h"

namespace {

constexpr int kDefaultSteps = 300;
constexpr int kReportEvery = 50;
constexpr int kEvalSamplesPerClass = 10;
constexpr int kNoise = 30;  // +- quanta of uniform noise on each input value
constexpr int kSaveEvery = 100;            // steps between checkpoints
constexpr float kLossBound = 100.0f;       // the divergence guard: a loss above this (or not finite) ...
constexpr uint32_t kPatience = 10;         // ... for this many steps in a row rolls back
constexpr uint32_t kMaxCheckpointEntries = 128;  // 3 per TT_SGD, 1 per int8 gradient (CheckpointTensors)

#if defined(TINYTRAIN_LEGACY_TFLM_REGISTRATION)
// The Arduino_TensorFlowLite library's TFLM (tinytrain_ops.h tells it by its registration struct) needs more while
// the ops prepare, and crashes in AllocateTensors below that need instead of failing (train_model.h says why).
constexpr unsigned int kArenaBytes = train_model::kArduinoArenaSize;
constexpr unsigned int kArenaNeed = train_model::kArduinoArenaBytes;
#else
constexpr unsigned int kArenaBytes = train_model::kArenaSize;
constexpr unsigned int kArenaNeed = sizeof(void*) == 8 ? train_model::kArenaBytes64 : train_model::kArenaBytes32;
#endif
alignas(16) uint8_t g_arena[kArenaBytes];
// A model compiled with --stream-input (kStreamsSample) has no sample input: its tiled first stage reads the
// sample from tinytrain::SetStreamedInput during Invoke(). Here that is this buffer beside the arena, which
// still costs its RAM; a device can point at a camera frame or flash instead, or give a row reader.
alignas(16) int8_t g_streamed_sample[train_model::kStreamsSample ? train_model::kSampleValues : 1];
const tinytrain::StreamedInput kStreamedSample{g_streamed_sample, sizeof(g_streamed_sample), nullptr, nullptr};

// Where a sample goes: the sample input's bytes, or the streamed sample's buffer.
int8_t* SampleBytes(tflite::MicroInterpreter& interpreter, size_t* bytes) {
  if (train_model::kStreamsSample) {
    *bytes = sizeof(g_streamed_sample);
    return g_streamed_sample;
  }
  TfLiteTensor* sample = interpreter.input(train_model::kSampleInput);
  *bytes = sample->bytes;
  return sample->data.int8;
}

// A well-mixed 32-bit hash: the value of class `label`'s pattern at element `i`, with no table to store.
uint32_t Mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  return x ^ (x >> 16);
}

class Random {
 public:
  explicit Random(uint32_t seed) : state_(seed | 1U) {}
  // xorshift32: deterministic on every target, no libc state.
  uint32_t Next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return state_;
  }
  int Below(int n) { return static_cast<int>(Next() % static_cast<uint32_t>(n)); }

 private:
  uint32_t state_;
};

// Writes one noisy sample of class `label` into the sample input and the label into every label slot.
void SetSample(tflite::MicroInterpreter& interpreter, int label, Random& random) {
  size_t bytes = 0;
  int8_t* sample = SampleBytes(interpreter, &bytes);
  for (size_t i = 0; i < bytes; ++i) {
    const int pattern = static_cast<int>(Mix(static_cast<uint32_t>(label) * 65599U + i) % 201U) - 100;
    const int value = pattern + random.Below(2 * kNoise + 1) - kNoise;
    sample[i] = static_cast<int8_t>(value < -128 ? -128 : (value > 127 ? 127 : value));
  }
  TfLiteTensor* labels = interpreter.input(train_model::kLabelInput);
  for (size_t i = 0; i < labels->bytes / sizeof(int32_t); ++i) labels->data.i32[i] = label;
}

bool Run(tflite::MicroInterpreter& interpreter, int32_t control) {
  interpreter.input(train_model::kControlInput)->data.i32[0] = control;
  return interpreter.Invoke() == kTfLiteOk;
}

int PredictedClass(tflite::MicroInterpreter& interpreter) {
  const int8_t* logits = interpreter.output(train_model::kLogitsOutput)->data.int8;
  int best = 0;
  for (int c = 1; c < train_model::kNumClasses; ++c) {
    if (logits[c] > logits[best]) best = c;
  }
  return best;
}

// Accuracy on the same held-out samples every time (a fixed seed), without updating anything.
bool Accuracy(tflite::MicroInterpreter& interpreter, float* accuracy) {
  Random random(12345);
  int correct = 0;
  const int total = kEvalSamplesPerClass * train_model::kNumClasses;
  for (int i = 0; i < total; ++i) {
    const int label = i % train_model::kNumClasses;
    SetSample(interpreter, label, random);
    if (!Run(interpreter, 0)) return false;
    correct += PredictedClass(interpreter) == label;
  }
  *accuracy = static_cast<float>(correct) / static_cast<float>(total);
  return true;
}

// What a device keeps to train in the field: its checkpoint storage and what the slots hold, and the guards.
struct Field {
  tt_checkpoint_storage storage;
  tt_checkpoint_tensor entries[kMaxCheckpointEntries];
  uint32_t num_entries;
  uint32_t model_id;
  tt_checkpoint_state saved;
  tt_divergence_guard guard;
  tt_sample_counts refused;
};

// One training step on the sample in the inputs, guarded; false on a failure.
bool GuardedStep(tinytrain::TrainingInterpreter& interpreter, Field& field, int step, float* loss_sum) {
  size_t bytes = 0;
  const int8_t* sample = SampleBytes(interpreter, &bytes);
  const TfLiteTensor* labels = interpreter.input(train_model::kLabelInput);
  if (tt_sample_check_s8(sample, bytes, labels->data.i32, labels->bytes / sizeof(int32_t),
                         train_model::kNumClasses, &field.refused) != TT_SAMPLE_OK) {
    return true;  // a label out of range or a sample clipped everywhere: counted, never trained on
  }
  if (!Run(interpreter, TT_CONTROL_BACKWARD | TT_CONTROL_UPDATE)) return false;
  const float loss = interpreter.output(train_model::kLossOutput)->data.f[0];  // before this step's update
  *loss_sum += loss;
  if (tt_divergence_guard_step(&field.guard, loss)) {
    // Back to the last checkpoint; without one, Reset: the next invoke copies the pretrained values (Reset
    // also zeroes the learning-rate input: the compiled rate until the schedule writes it again).
    return tt_checkpoint_restore(&field.storage, field.model_id, field.entries, field.num_entries, &field.saved) ==
               TT_SUCCESS ||
           interpreter.Reset() == kTfLiteOk;
  }
  if (step % kSaveEvery != 0 || field.guard.bad_steps != 0) return true;
  return tt_checkpoint_save(&field.storage, field.model_id, field.entries, field.num_entries, &field.saved) ==
         TT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? atoi(argv[1]) : kDefaultSteps;
  const tflite::Model* model = tflite::GetModel(train_model::kData);
  tflite::MicroMutableOpResolver<train_model::kNumBuiltinOps + tinytrain::kNumOps> resolver;
#define ADD_BUILTIN(OP)                                                         \
  if (resolver.Add##OP() != kTfLiteOk) {                                       \
    fprintf(stderr, "error: cannot register builtin op %s\n", #OP);             \
    return 1;                                                                   \
  }
  TRAIN_MODEL_FOR_EACH_BUILTIN(ADD_BUILTIN)
#undef ADD_BUILTIN
  if (tinytrain::AddTinyTrainOps(resolver) != kTfLiteOk) {
    fprintf(stderr, "error: cannot register tinytrain's ops\n");
    return 1;
  }
  const unsigned long arena_bytes = argc > 2 ? strtoul(argv[2], nullptr, 10) : sizeof(g_arena);
  if (arena_bytes > sizeof(g_arena) || arena_bytes < kArenaNeed) {
    // Checked before TFLM sees the arena: below the need, a TFLM may crash instead of failing AllocateTensors.
    fprintf(stderr, "error: an arena of %lu bytes is outside what this TFLM needs and this program has (%u to %u bytes)\n",
            arena_bytes, kArenaNeed, kArenaBytes);
    return 1;
  }
  // A MicroInterpreter that also hands out the variables and op state a checkpoint holds.
  tinytrain::TrainingInterpreter interpreter(model, resolver, g_arena, arena_bytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    fprintf(stderr, "error: AllocateTensors failed with a %lu-byte arena\n", arena_bytes);
    return 1;
  }
  if (train_model::kStreamsSample) tinytrain::SetStreamedInput(&kStreamedSample);
  if (!train_model::kStreamsSample && interpreter.input(train_model::kSampleInput)->type != kTfLiteInt8) {
    fprintf(stderr, "error: this example feeds int8 samples; the model's input has another type\n");
    return 1;
  }
  printf("model %u bytes, arena %lu bytes (header: %u), %u used\n", train_model::kSize, arena_bytes, kArenaBytes,
         static_cast<unsigned>(interpreter.arena_used_bytes()));

  float accuracy = 0.0f;
  if (!Accuracy(interpreter, &accuracy)) return 1;
  printf("accuracy before: %.3f\n", static_cast<double>(accuracy));

  // Checkpoints, after the first Invoke (TT_INIT_VARIABLES has copied the pretrained values). The two slots
  // are RAM here; a board gives two flash pages through read/erase/write callbacks.
  static Field field;
  if (tinytrain::CheckpointTensors(model, interpreter, field.entries, kMaxCheckpointEntries, &field.num_entries) !=
      kTfLiteOk) {
    fprintf(stderr, "error: cannot find the checkpointed state (more than %u entries?)\n", kMaxCheckpointEntries);
    return 1;
  }
  tt_checkpoint_ram ram{nullptr, static_cast<uint32_t>(tt_checkpoint_size(field.entries, field.num_entries))};
  ram.bytes = static_cast<uint8_t*>(calloc(TT_CHECKPOINT_SLOTS, ram.slot_bytes));
  if (ram.bytes == nullptr) {
    fprintf(stderr, "error: no memory for two %lu-byte checkpoint slots\n", static_cast<unsigned long>(ram.slot_bytes));
    return 1;
  }
  field.storage = tt_checkpoint_ram_storage(&ram);
  field.model_id = tt_checkpoint_model_id(train_model::kData, train_model::kSize);
  field.guard = tt_divergence_guard{kLossBound, kPatience, 0, 0};
  // At boot: the newest valid checkpoint; with none (as here, on empty slots) the pretrained values stay.
  const tt_status boot =
      tt_checkpoint_restore(&field.storage, field.model_id, field.entries, field.num_entries, &field.saved);
  printf("checkpoint at boot: %s; %lu bytes a slot\n", boot == TT_SUCCESS ? "restored" : "none",
         static_cast<unsigned long>(ram.slot_bytes));
  Random random(1);
  float loss_sum = 0.0f;
  // A variable: it keeps what is written here across invokes (0, as AllocateTensors leaves it, means
  // train_model::kLearningRate, the compiled rate).
  float* learning_rate = interpreter.input(train_model::kLearningRateInput)->data.f;
  for (int step = 1; step <= steps; ++step) {
    if (step == steps / 2 + 1) *learning_rate = train_model::kLearningRate * 0.5f;
    SetSample(interpreter, random.Below(train_model::kNumClasses), random);
    if (!GuardedStep(interpreter, field, step, &loss_sum)) return 1;
    if (step % kReportEvery == 0) {
      printf("step %d: mean loss %.4f\n", step, static_cast<double>(loss_sum / kReportEvery));
      loss_sum = 0.0f;
    }
  }
  if (!Accuracy(interpreter, &accuracy)) return 1;
  printf("accuracy after: %.3f\n", static_cast<double>(accuracy));
  printf("checkpoint sequence %lu in slot %ld; skipped %lu bad labels, %lu saturated samples; %lu rollbacks\n",
         static_cast<unsigned long>(field.saved.sequence), static_cast<long>(field.saved.slot),
         static_cast<unsigned long>(field.refused.bad_labels), static_cast<unsigned long>(field.refused.saturated),
         static_cast<unsigned long>(field.guard.rollbacks));
  // Reset zeroes the variables and makes TT_INIT_VARIABLES copy the pretrained weights again.
  if (interpreter.Reset() != kTfLiteOk || !Accuracy(interpreter, &accuracy)) return 1;
  printf("accuracy after reset: %.3f\n", static_cast<double>(accuracy));
  // What a reboot does: the last checkpoint over the pretrained values (the same as after training when the
  // last step was a save).
  if (tt_checkpoint_restore(&field.storage, field.model_id, field.entries, field.num_entries, &field.saved) !=
          TT_SUCCESS ||
      !Accuracy(interpreter, &accuracy)) {
    return 1;
  }
  printf("accuracy after restore: %.3f\n", static_cast<double>(accuracy));
  free(ram.bytes);
  return 0;
}

// A bare-metal firmware that runs a tinytrain training model on QEMU's Cortex-M boards for
// tinytrain_tflm.firmware.device: TFLM's MicroInterpreter, the builtin ops the model lists, tinytrain's ops,
// the model's C array in flash, and the tensor arena alone in a 256 KB RAM region (the board's linker script in board/).
//
// Its arguments come over semihosting (QEMU's -semihosting-config arg=...):
//   harness ARENA_BYTES [SCRIPT [profile] [flash=PATH [cut=N]] [guard=BOUND:PATIENCE]]
// ARENA_BYTES (at most the arena region, kArenaCapacity) is the arena MicroInterpreter gets. Without SCRIPT the run
// ends after AllocateTensors: that is all an arena bisection needs. SCRIPT is a file of invokes:
//   header   "TTS1", uint32 invokes, uint32 sample bytes, uint32 label count (little endian)
//   invoke   int32 control, int32 labels[label count], the sample's bytes
// flash=PATH is the checkpoint storage (kernels/core/checkpoint): a host file of two equal slots, read and written
// over semihosting as a device's flash pages. At boot the harness runs one predict invoke (TT_INIT_VARIABLES copies
// the pretrained values) and restores the newest valid checkpoint. A control of kScriptSave saves a checkpoint,
// kScriptDump prints the checkpointed entries (their labels and sample are ignored). cut=N is a power cut: the
// storage takes N bytes of this run's writes, then the run ends, mid-write.
// A control of kScriptLearningRate writes the float32 whose bits are labels[0] into the learning-rate input (0: the
// compiled rate), as a firmware's schedule does; it stays for the invokes after it.
// guard=BOUND:PATIENCE turns on the field guards (kernels/core/guard) for training invokes: a sample with a label
// out of range or every value at an int8 limit is skipped, not trained on; after PATIENCE training steps in a row
// with a loss above BOUND or not finite, the harness rolls back to its last good checkpoint (with flash=), else to
// the pretrained weights (MicroInterpreter::Reset).
// Every line printed is one fact:
//   target NAME KERNELS PLATFORM                       the model's target (train_model.h) and the board
//   arena_used BYTES                                   after AllocateTensors
//   checkpoint restored SLOT SEQUENCE                  at boot with flash=: the state restored
//   checkpoint none STATUS0 STATUS1                    ... or no valid slot (each slot's tt_status): pretrained kept
//   invoke I loss HEX logits HEX instructions HEX      per invoke: the float32 loss's bytes, the
//                                                      logits' bytes, the instructions it took
//   op NAME CALLS INSTRUCTIONS_HEX                     with `profile`, after each invoke line: per op
//                                                      (builtin or custom name), its calls in that
//                                                      invoke and the instructions they took
//   checkpoint saved SLOT SEQUENCE                     per kScriptSave
//   checkpoint power_cut BYTES                         the cut: BYTES written in this run; the run ends
//   state HEX                                          per kScriptDump: the checkpointed entries' bytes, in order
//                                                      (tensors and rounding states, CheckpointTensors' order)
//   skipped I REASON                                   with guard=: invoke I not run (REASON: label, saturated)
//   rollback I SLOT SEQUENCE                           with guard=: after invoke I, the checkpoint restored
//                                                      (SLOT -1: none valid, the pretrained weights instead)
//   guard SKIPPED_LABELS SKIPPED_SATURATED ROLLBACKS   with guard=: the totals, after the script
//   error MESSAGE                                      then exit code 1
// The sample is written before every invoke, as the firmware contract asks (a tiled model's first
// stage reuses its input's bytes). A model compiled with a streamed sample (train_model::kStreamsSample)
// has no sample tensor: the harness keeps the sample in a static buffer in RAM, outside the arena, and
// registers it with tinytrain::SetStreamedInput (a firmware reading a camera or flash needs no such buffer).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/core/guard/tt_training_guard.h"
#include "kernels/core/tt_schema_generated.h"
#include "kernels/tflm/tinytrain_checkpoint.h"
#include "kernels/tflm/tinytrain_resolver.h"
#include "platform.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "train_model.h"

namespace {

// The ARENA region of the linker script: 256 KB, the budget tinytrain trains in, unless a build asks
// for another (tinytrain_tflm.firmware.device passes both from Target.ram_bytes).
#ifndef TT_ARENA_CAPACITY
#define TT_ARENA_CAPACITY (256 * 1024)
#endif
constexpr size_t kArenaCapacity = TT_ARENA_CAPACITY;
constexpr int kMaxArguments = 6;
constexpr int32_t kScriptSave = -1;
constexpr int32_t kScriptDump = -2;
constexpr int32_t kScriptLearningRate = -3;
constexpr uint32_t kMaxCheckpointTensors = 192;  // 3 per TT_SGD, 1 per int8 gradient (CheckpointTensors)
constexpr uint32_t kSemihostingGetCommandLine = 0x15;
constexpr uint8_t kCanary = 0x5A;

alignas(16) __attribute__((section(".arena"))) uint8_t g_arena[kArenaCapacity];

// A streamed sample's bytes (static data, not the arena region): what tinytrain::SetStreamedInput points to.
alignas(16) int8_t g_streamed_sample[train_model::kStreamsSample ? train_model::kSampleValues : 1];
const tinytrain::StreamedInput kStreamedSample{g_streamed_sample, sizeof(g_streamed_sample), nullptr, nullptr};

// Where the harness writes each invoke's sample: the sample input tensor, or the streamed sample's buffer.
struct SampleBytes {
  int8_t* data;
  size_t bytes;
};

SampleBytes Sample(tflite::MicroInterpreter& interpreter) {
  if (train_model::kStreamsSample) return SampleBytes{g_streamed_sample, sizeof(g_streamed_sample)};
  TfLiteTensor* sample = interpreter.input(train_model::kSampleInput);
  return SampleBytes{sample->data.int8, sample->bytes};
}

int Fail(const char* message, const char* detail = "") {
  printf("error %s%s\n", message, detail);
  return 1;
}

// SYS_GET_CMDLINE: QEMU joins its semihosting arguments with spaces.
int CommandLine(char* buffer, int size, char* arguments[kMaxArguments]) {
  struct {
    char* buffer;
    int size;
  } block = {buffer, size};
  register uint32_t operation __asm__("r0") = kSemihostingGetCommandLine;
  register void* parameter __asm__("r1") = &block;
  __asm__ volatile("bkpt 0xAB" : "+r"(operation) : "r"(parameter) : "memory");
  if (operation != 0) return 0;
  int count = 0;
  for (char* token = strtok(buffer, " "); token != nullptr && count < kMaxArguments; token = strtok(nullptr, " ")) {
    arguments[count++] = token;
  }
  return count;
}

// Instructions per op name over one invoke, from the same counter as the invoke's total. There are at
// most as many names as the resolver holds ops.
class OpProfile : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    uint32_t op = 0;
    while (op < count_ && strcmp(names_[op], tag) != 0) ++op;
    if (op == count_) names_[count_++] = tag;
    start_ = InstructionCount();
    return op;
  }

  void EndEvent(uint32_t op) override {
    instructions_[op] += InstructionCount() - start_;
    ++calls_[op];
  }

  // Prints an op line per op that ran since the last call (see the header) and starts over.
  void PrintAndReset() {
    for (uint32_t op = 0; op < count_; ++op) {
      if (calls_[op] == 0) continue;
      const uint64_t count = static_cast<uint64_t>(instructions_[op]);
      printf("op %s %lu %08lx%08lx\n", names_[op], static_cast<unsigned long>(calls_[op]),
             static_cast<unsigned long>(count >> 32), static_cast<unsigned long>(count));
    }
    Reset();
  }

  void Reset() {
    for (uint32_t op = 0; op < count_; ++op) {
      instructions_[op] = 0;
      calls_[op] = 0;
    }
  }

 private:
  static constexpr uint32_t kMaxOps = train_model::kNumBuiltinOps + tinytrain::kNumOps;
  const char* names_[kMaxOps] = {};
  int64_t instructions_[kMaxOps] = {};
  uint32_t calls_[kMaxOps] = {};
  uint32_t count_ = 0;
  int64_t start_ = 0;
};

bool ReadWords(FILE* file, void* words, size_t count) { return fread(words, sizeof(uint32_t), count, file) == count; }

// The checkpoint storage of flash=PATH: a host file of two slots standing in for two flash pages (an erase
// writes 0xFF). With cut=N the power goes after N written bytes: a write is then cut short and fails.
struct FileFlash {
  FILE* file;
  uint32_t slot_bytes;
  uint32_t budget;  // bytes this run may still write
  uint32_t written;
  bool power_cut;
};

bool Seek(FileFlash* flash, uint32_t slot, uint32_t offset) {
  return fseek(flash->file, static_cast<long>(slot * flash->slot_bytes + offset), SEEK_SET) == 0;
}

int FlashRead(void* context, uint32_t slot, uint32_t offset, void* out, uint32_t length) {
  auto* flash = static_cast<FileFlash*>(context);
  return Seek(flash, slot, offset) && fread(out, 1, length, flash->file) == length ? 0 : 1;
}

int FlashErase(void* context, uint32_t slot) {
  auto* flash = static_cast<FileFlash*>(context);
  uint8_t erased[64];
  memset(erased, 0xFF, sizeof(erased));
  if (!Seek(flash, slot, 0)) return 1;
  for (uint32_t done = 0; done < flash->slot_bytes; done += sizeof(erased)) {
    const uint32_t length = flash->slot_bytes - done < sizeof(erased) ? flash->slot_bytes - done : sizeof(erased);
    if (fwrite(erased, 1, length, flash->file) != length) return 1;
  }
  return 0;
}

int FlashWrite(void* context, uint32_t slot, uint32_t offset, const void* data, uint32_t length) {
  auto* flash = static_cast<FileFlash*>(context);
  const uint32_t taken = length < flash->budget ? length : flash->budget;
  if (!Seek(flash, slot, offset) || fwrite(data, 1, taken, flash->file) != taken) return 1;
  flash->budget -= taken;
  flash->written += taken;
  if (taken < length) flash->power_cut = true;
  return flash->power_cut ? 1 : 0;
}

// Checkpointing for a run with flash=: the storage, the model's checkpointed tensors and what the slots hold.
struct Checkpoint {
  FileFlash flash;
  tt_checkpoint_storage storage;
  tt_checkpoint_tensor tensors[kMaxCheckpointTensors];
  uint32_t count;
  uint32_t model_id;
  tt_checkpoint_state state;
};

Checkpoint g_checkpoint;

// A predict invoke on a zero sample: after AllocateTensors or Reset, TT_INIT_VARIABLES copies the pretrained
// values into the variables on the first invoke, and a restore must come after that.
int InitializeVariables(tflite::MicroInterpreter& interpreter) {
  const SampleBytes sample = Sample(interpreter);
  TfLiteTensor* labels = interpreter.input(train_model::kLabelInput);
  memset(sample.data, 0, sample.bytes);
  memset(labels->data.raw, 0, labels->bytes);
  interpreter.input(train_model::kControlInput)->data.i32[0] = 0;  // predict: no update
  return interpreter.Invoke() == kTfLiteOk ? 0 : Fail("the invoke that initializes the variables failed");
}

// Opens the storage, runs the invoke that fills the variables, and restores the newest valid checkpoint.
int Boot(tinytrain::TrainingInterpreter& interpreter, const char* path, uint32_t cut, Checkpoint* c) {
  c->flash = FileFlash{fopen(path, "r+b"), 0, cut, 0, false};
  if (c->flash.file == nullptr || fseek(c->flash.file, 0, SEEK_END) != 0) return Fail("cannot open the flash file ", path);
  c->flash.slot_bytes = static_cast<uint32_t>(ftell(c->flash.file)) / TT_CHECKPOINT_SLOTS;
  c->storage = tt_checkpoint_storage{&c->flash, c->flash.slot_bytes, FlashRead, FlashErase, FlashWrite};
  if (InitializeVariables(interpreter) != 0) return 1;
  const tflite::Model* model = tflite::GetModel(train_model::kData);
  if (tinytrain::CheckpointTensors(model, interpreter, c->tensors, kMaxCheckpointTensors, &c->count) != kTfLiteOk) {
    return Fail("cannot find the checkpointed tensors");
  }
  c->model_id = tt_checkpoint_model_id(train_model::kData, train_model::kSize);
  const tt_status status = tt_checkpoint_restore(&c->storage, c->model_id, c->tensors, c->count, &c->state);
  if (status == TT_SUCCESS) {
    printf("checkpoint restored %ld %lu\n", static_cast<long>(c->state.slot), static_cast<unsigned long>(c->state.sequence));
  } else if (status == TT_CHECKPOINT_NONE) {
    printf("checkpoint none %d %d\n", c->state.slot_status[0], c->state.slot_status[1]);
  } else {
    return Fail("checkpoint restore: ", tt_status_message(status));
  }
  return 0;
}

void PrintHex(const uint8_t* bytes, size_t count);

// One kScriptSave or kScriptDump. *ended: the power was cut, the run stops here.
int RunAction(int32_t action, Checkpoint* c, bool* ended) {
  if (c == nullptr) return Fail("a checkpoint action needs flash=PATH");
  if (action == kScriptDump) {
    printf("state ");
    for (uint32_t i = 0; i < c->count; ++i) PrintHex(static_cast<const uint8_t*>(c->tensors[i].data), c->tensors[i].bytes);
    printf("\n");
    return 0;
  }
  const tt_status status = tt_checkpoint_save(&c->storage, c->model_id, c->tensors, c->count, &c->state);
  if (c->flash.power_cut) {
    fclose(c->flash.file);  // what reached the file before the cut stays there
    printf("checkpoint power_cut %lu\n", static_cast<unsigned long>(c->flash.written));
    *ended = true;
    return 0;
  }
  if (status != TT_SUCCESS) return Fail("checkpoint save: ", tt_status_message(status));
  fflush(c->flash.file);
  printf("checkpoint saved %ld %lu\n", static_cast<long>(c->state.slot), static_cast<unsigned long>(c->state.sequence));
  return 0;
}

void PrintHex(const uint8_t* bytes, size_t count) {
  for (size_t i = 0; i < count; ++i) printf("%02x", bytes[i]);
}

// The field guards of guard=: what they counted, and the classes a label must be below (0: no label check).
struct Guard {
  tt_divergence_guard divergence;
  tt_sample_counts refused;
  int32_t label_classes;
};

int32_t LabelClasses() {
  switch (train_model::kLoss) {
    case TT_LOSS_SOFTMAX_CROSS_ENTROPY: return train_model::kNumClasses;
    case TT_LOSS_BINARY_CROSS_ENTROPY: return 2;
    default: return 0;  // mean squared error: the label is a target
  }
}

// After a training invoke under guard=: rolls back when the divergence guard says so.
int CheckDivergence(tflite::MicroInterpreter& interpreter, uint32_t invoke, float loss, Guard* guard,
                    Checkpoint* checkpoint) {
  if (!tt_divergence_guard_step(&guard->divergence, loss)) return 0;
  if (checkpoint != nullptr) {
    const tt_status status = tt_checkpoint_restore(&checkpoint->storage, checkpoint->model_id, checkpoint->tensors,
                                                   checkpoint->count, &checkpoint->state);
    if (status == TT_SUCCESS) {
      printf("rollback %lu %ld %lu\n", static_cast<unsigned long>(invoke), static_cast<long>(checkpoint->state.slot),
             static_cast<unsigned long>(checkpoint->state.sequence));
      return 0;
    }
    if (status != TT_CHECKPOINT_NONE) return Fail("rollback: ", tt_status_message(status));
  }
  // No checkpoint: back to the pretrained weights (Reset zeroes the variables and momentum, the next invoke copies).
  if (interpreter.Reset() != kTfLiteOk) return Fail("rollback: Reset failed");
  if (InitializeVariables(interpreter) != 0) return 1;
  printf("rollback %lu -1 0\n", static_cast<unsigned long>(invoke));
  return 0;
}

// `profile`, when not null, is the interpreter's profiler: its counts are printed after each invoke;
// `checkpoint`, when not null, serves the script's checkpoint actions; `guard`, when not null, guards training.
int RunScript(tflite::MicroInterpreter& interpreter, const char* path, OpProfile* profile, Checkpoint* checkpoint,
              Guard* guard) {
  FILE* script = fopen(path, "rb");
  if (script == nullptr) return Fail("cannot open script ", path);
  uint32_t header[4];
  if (!ReadWords(script, header, 4) || memcmp(header, "TTS1", 4) != 0) return Fail("not a harness script: ", path);
  const uint32_t invokes = header[1], sample_bytes = header[2], label_count = header[3];
  const SampleBytes sample = Sample(interpreter);
  TfLiteTensor* labels = interpreter.input(train_model::kLabelInput);
  if (sample_bytes != sample.bytes) return Fail("script's sample size differs from the model's input");
  if (label_count * sizeof(int32_t) != labels->bytes) return Fail("script's label count differs from the model's");
  for (uint32_t i = 0; i < invokes; ++i) {
    int32_t control = 0;
    if (!ReadWords(script, &control, 1) || !ReadWords(script, labels->data.i32, label_count) ||
        fread(sample.data, 1, sample_bytes, script) != sample_bytes) {
      return Fail("script ends early: ", path);
    }
    if (control == kScriptLearningRate) {
      memcpy(interpreter.input(train_model::kLearningRateInput)->data.f, labels->data.i32, sizeof(float));
      continue;
    }
    if (control == kScriptSave || control == kScriptDump) {
      bool ended = false;
      if (RunAction(control, checkpoint, &ended) != 0) return 1;
      if (ended) break;
      continue;
    }
    const bool training = (control & TT_CONTROL_UPDATE) != 0;
    if (guard != nullptr && training) {
      const tt_sample_verdict verdict = tt_sample_check_s8(sample.data, sample_bytes, labels->data.i32, label_count,
                                                           guard->label_classes, &guard->refused);
      if (verdict != TT_SAMPLE_OK) {
        printf("skipped %lu %s\n", static_cast<unsigned long>(i), verdict == TT_SAMPLE_BAD_LABEL ? "label" : "saturated");
        continue;
      }
    }
    interpreter.input(train_model::kControlInput)->data.i32[0] = control;
    StartInstructionCount();
    const TfLiteStatus status = interpreter.Invoke();
    const int64_t instructions = InstructionCount();
    if (status != kTfLiteOk) return Fail("Invoke failed");
    const TfLiteTensor* loss = interpreter.output(train_model::kLossOutput);
    const TfLiteTensor* logits = interpreter.output(train_model::kLogitsOutput);
    printf("invoke %lu loss ", static_cast<unsigned long>(i));
    PrintHex(loss->data.uint8, loss->bytes);
    printf(" logits ");
    PrintHex(logits->data.uint8, logits->bytes);
    // newlib-nano's printf has no 64-bit conversions: the count goes out as two 32-bit hex halves.
    const uint64_t count = static_cast<uint64_t>(instructions);
    printf(" instructions %08lx%08lx\n", static_cast<unsigned long>(count >> 32), static_cast<unsigned long>(count));
    if (profile != nullptr) profile->PrintAndReset();
    if (guard != nullptr && training && CheckDivergence(interpreter, i, loss->data.f[0], guard, checkpoint) != 0) return 1;
  }
  fclose(script);
  if (guard != nullptr) {
    printf("guard %lu %lu %lu\n", static_cast<unsigned long>(guard->refused.bad_labels),
           static_cast<unsigned long>(guard->refused.saturated), static_cast<unsigned long>(guard->divergence.rollbacks));
  }
  return 0;
}

}  // namespace

int main() {
  char command_line[1024];
  char* arguments[kMaxArguments];
  const int count = CommandLine(command_line, sizeof(command_line), arguments);
  printf("target %s %s %s\n", train_model::kTarget, train_model::kTargetKernels, PlatformName());
  if (count < 2) return Fail("usage: harness ARENA_BYTES [SCRIPT [profile] [flash=PATH [cut=N]]]");
  // A local, not a global: a global with a virtual destructor would need the C++ exit machinery.
  OpProfile op_profile;
  OpProfile* profile = nullptr;
  const char* flash = nullptr;
  uint32_t cut = UINT32_MAX;
  Guard guard = {{0.0f, 0, 0, 0}, {0, 0}, LabelClasses()};
  Guard* guarded = nullptr;
  for (int i = 3; i < count; ++i) {
    if (strcmp(arguments[i], "profile") == 0) {
      profile = &op_profile;
    } else if (strncmp(arguments[i], "flash=", 6) == 0) {
      flash = arguments[i] + 6;
    } else if (strncmp(arguments[i], "cut=", 4) == 0) {
      cut = static_cast<uint32_t>(strtoul(arguments[i] + 4, nullptr, 10));
    } else if (strncmp(arguments[i], "guard=", 6) == 0) {
      char* patience = nullptr;
      guard.divergence.loss_bound = static_cast<float>(strtod(arguments[i] + 6, &patience));
      guard.divergence.patience = *patience == ':' ? static_cast<uint32_t>(strtoul(patience + 1, nullptr, 10)) : 0;
      if (guard.divergence.patience == 0) return Fail("guard= takes BOUND:PATIENCE with PATIENCE >= 1: ", arguments[i]);
      guarded = &guard;
    } else {
      return Fail("unknown argument ", arguments[i]);
    }
  }
  const unsigned long arena_bytes = strtoul(arguments[1], nullptr, 10);
  if (arena_bytes == 0 || arena_bytes > kArenaCapacity) return Fail("ARENA_BYTES exceeds the arena region");

  tflite::MicroMutableOpResolver<train_model::kNumBuiltinOps + tinytrain::kNumOps> resolver;
#define ADD_BUILTIN(OP) \
  if (resolver.Add##OP() != kTfLiteOk) return Fail("cannot register builtin op ", #OP);
  TRAIN_MODEL_FOR_EACH_BUILTIN(ADD_BUILTIN)
#undef ADD_BUILTIN
  if (tinytrain::AddTinyTrainOps(resolver) != kTfLiteOk) return Fail("cannot register tinytrain's ops");

  // The arena starts the region (below it nothing is mapped: a write there faults); the bytes after
  // it hold a pattern that must survive the run, or TFLM or a kernel wrote past the arena.
  memset(g_arena + arena_bytes, kCanary, kArenaCapacity - arena_bytes);
  tinytrain::TrainingInterpreter interpreter(tflite::GetModel(train_model::kData), resolver, g_arena, arena_bytes,
                                            nullptr, profile);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("AllocateTensors failed");
  if (train_model::kStreamsSample) tinytrain::SetStreamedInput(&kStreamedSample);
  if (guarded != nullptr && !train_model::kStreamsSample &&
      interpreter.input(train_model::kSampleInput)->type != kTfLiteInt8) {
    return Fail("guard= checks int8 samples; this model's sample is not int8");
  }
  printf("arena_used %lu\n", static_cast<unsigned long>(interpreter.arena_used_bytes()));
  Checkpoint* checkpoint = nullptr;
  if (flash != nullptr) {
    checkpoint = &g_checkpoint;
    if (Boot(interpreter, flash, cut, checkpoint) != 0) return 1;
    if (profile != nullptr) profile->Reset();  // the boot invoke is not the script's
  }
  const int result = count > 2 ? RunScript(interpreter, arguments[2], profile, checkpoint, guarded) : 0;
  for (size_t i = arena_bytes; i < kArenaCapacity; ++i) {
    if (g_arena[i] != kCanary) return Fail("a write past the arena's end");
  }
  return result;
}

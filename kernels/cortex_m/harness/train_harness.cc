// A bare-metal firmware that runs a tinytrain training model on QEMU's Cortex-M boards for
// tinytrain_tflm.firmware.device: TFLM's MicroInterpreter, the builtin ops the model lists, tinytrain's ops,
// the model's C array in flash, and the tensor arena alone in a 256 KB RAM region (the board's linker script in board/).
//
// Its arguments come over semihosting (QEMU's -semihosting-config arg=...):
//   harness ARENA_BYTES [SCRIPT [profile]]
// ARENA_BYTES (at most the arena region, kArenaCapacity) is the arena MicroInterpreter gets. Without SCRIPT the run
// ends after AllocateTensors: that is all an arena bisection needs. SCRIPT is a file of invokes:
//   header   "TTS1", uint32 invokes, uint32 sample bytes, uint32 label count (little endian)
//   invoke   int32 control, int32 labels[label count], the sample's bytes
// Every line printed is one fact:
//   target NAME KERNELS PLATFORM                       the model's target (train_model.h) and the board
//   arena_used BYTES                                   after AllocateTensors
//   invoke I loss HEX logits HEX instructions HEX      per invoke: the float32 loss's bytes, the
//                                                      logits' bytes, the instructions it took
//   op NAME CALLS INSTRUCTIONS_HEX                     with `profile`, after each invoke line: per op
//                                                      (builtin or custom name), its calls in that
//                                                      invoke and the instructions they took
//   error MESSAGE                                      then exit code 1
// The sample is written before every invoke, as the firmware contract asks (a tiled model's first
// stage reuses its input's bytes).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
constexpr int kMaxArguments = 4;
constexpr uint32_t kSemihostingGetCommandLine = 0x15;
constexpr uint8_t kCanary = 0x5A;

alignas(16) __attribute__((section(".arena"))) uint8_t g_arena[kArenaCapacity];

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

void PrintHex(const uint8_t* bytes, size_t count) {
  for (size_t i = 0; i < count; ++i) printf("%02x", bytes[i]);
}

// `profile`, when not null, is the interpreter's profiler: its counts are printed after each invoke.
int RunScript(tflite::MicroInterpreter& interpreter, const char* path, OpProfile* profile) {
  FILE* script = fopen(path, "rb");
  if (script == nullptr) return Fail("cannot open script ", path);
  uint32_t header[4];
  if (!ReadWords(script, header, 4) || memcmp(header, "TTS1", 4) != 0) return Fail("not a harness script: ", path);
  const uint32_t invokes = header[1], sample_bytes = header[2], label_count = header[3];
  TfLiteTensor* sample = interpreter.input(train_model::kSampleInput);
  TfLiteTensor* labels = interpreter.input(train_model::kLabelInput);
  if (sample_bytes != sample->bytes) return Fail("script's sample size differs from the model's input");
  if (label_count * sizeof(int32_t) != labels->bytes) return Fail("script's label count differs from the model's");
  for (uint32_t i = 0; i < invokes; ++i) {
    int32_t control = 0;
    if (!ReadWords(script, &control, 1) || !ReadWords(script, labels->data.i32, label_count) ||
        fread(sample->data.raw, 1, sample_bytes, script) != sample_bytes) {
      return Fail("script ends early: ", path);
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
  }
  fclose(script);
  return 0;
}

}  // namespace

int main() {
  char command_line[512];
  char* arguments[kMaxArguments];
  const int count = CommandLine(command_line, sizeof(command_line), arguments);
  printf("target %s %s %s\n", train_model::kTarget, train_model::kTargetKernels, PlatformName());
  if (count < 2) return Fail("usage: harness ARENA_BYTES [SCRIPT [profile]]");
  // A local, not a global: a global with a virtual destructor would need the C++ exit machinery.
  OpProfile op_profile;
  OpProfile* profile = count > 3 && strcmp(arguments[3], "profile") == 0 ? &op_profile : nullptr;
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
  tflite::MicroInterpreter interpreter(tflite::GetModel(train_model::kData), resolver, g_arena, arena_bytes, nullptr,
                                       profile);
  if (interpreter.AllocateTensors() != kTfLiteOk) return Fail("AllocateTensors failed");
  printf("arena_used %lu\n", static_cast<unsigned long>(interpreter.arena_used_bytes()));
  const int result = count > 2 ? RunScript(interpreter, arguments[2], profile) : 0;
  for (size_t i = arena_bytes; i < kArenaCapacity; ++i) {
    if (g_arena[i] != kCanary) return Fail("a write past the arena's end");
  }
  return result;
}

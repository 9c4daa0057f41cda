// Whether AllocateTensors succeeds for the training model in train_model.h with an arena of ARENA_BYTES,
// on the Arduino_TensorFlowLite library's TFLM compiled for the host (tinytrain_tflm.firmware.arduino_tflm
// builds it and bisects ARENA_BYTES). Exit 0 and "arena used N" when it does, 1 when TFLM refuses. Below
// its Prepare-time need that TFLM crashes instead (a null temporary tensor is written through): the
// caller runs every try in its own process and counts a crash as too small. Usage: arena_probe ARENA_BYTES
#include <stdio.h>
#include <stdlib.h>

#include "kernels/tflm/tinytrain_resolver.h"
#include "tensorflow/lite/micro/debug_log.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "train_model.h"

// The board's log sink (the Arduino core's system_setup.cpp writes to Serial): stderr here.
extern "C" void DebugLog(const char* s) { fputs(s, stderr); }

int main(int argc, char** argv) {
  if (argc != 2 || atol(argv[1]) <= 0) {
    fprintf(stderr, "usage: arena_probe ARENA_BYTES\n");
    return 2;
  }
  const size_t arena_bytes = static_cast<size_t>(atol(argv[1]));
  // 16-byte aligned, as the sketch's and the example's static arenas are: the same padding as on a board.
  uint8_t* arena = static_cast<uint8_t*>(aligned_alloc(16, (arena_bytes + 15) / 16 * 16));
  tflite::MicroMutableOpResolver<train_model::kNumBuiltinOps + tinytrain::kNumOps> resolver;
#define ADD_BUILTIN(OP) resolver.Add##OP();
  TRAIN_MODEL_FOR_EACH_BUILTIN(ADD_BUILTIN)
#undef ADD_BUILTIN
  if (arena == nullptr || tinytrain::AddTinyTrainOps(resolver) != kTfLiteOk) return 2;
  tflite::MicroInterpreter interpreter(tflite::GetModel(train_model::kData), resolver, arena, arena_bytes);
  if (interpreter.AllocateTensors() != kTfLiteOk) return 1;
  printf("arena used %lu\n", static_cast<unsigned long>(interpreter.arena_used_bytes()));
  return 0;
}

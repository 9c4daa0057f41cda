// One device of a fleet (see README, "Fleet learning"), host build of the firmware side: it loads the
// fleet's global values into its trained tensors with tt_fleet_update_apply, trains on its samples in
// MicroInterpreter, and writes its upload with tt_fleet_update_write. tinytrain_tflm.fleet.client's
// --device option runs it once per round, as a gateway would drive a device.
//
//   tinytrain_fleet_device LAYOUT GLOBAL.bin SAMPLES.bin EPOCHS SEED UPLOAD.bin
//
// LAYOUT (text): the trained tensor count, then per tensor "index type outer channels trained inner"
// (tinytrain_tflm.fleet.payload.TensorSpec); their scales are read from the model. SAMPLES.bin: u32
// count, then per sample the int8 input bytes (train_model::kSampleValues) and an int32 label
// (little-endian). Exit code 3: the global values were rejected (the message names why) and nothing was
// trained. A model compiled with --stream-input (kStreamsSample) has no sample input: its tiled first
// stage reads each sample in place, where it was loaded, through tinytrain::SetStreamedInput.
//
// The trained variables' addresses come from MicroInterpreter::GetTensor, which TFLM serves only with
// preserve_all_tensors, so this host program runs the interpreter that way, in a larger arena than a
// device would need; and TFLM cannot preserve every tensor of a model that carries its own memory plan,
// so the training model must be compiled with --no-overlap.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/core/fleet/tt_fleet_update.h"
#include "kernels/tflm/tinytrain_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "train_model.h"

namespace {

constexpr int kMaxTensors = 32;
constexpr int kMaxScales = 8192;
constexpr size_t kArenaBytes = 4u << 20;  // every tensor preserved
constexpr size_t kMaxBlobBytes = 1u << 20;

alignas(16) uint8_t g_arena[kArenaBytes];
// The source a streamed model's tiled first stage reads its sample from; the zero sample of the first invoke.
tinytrain::StreamedInput g_streamed{nullptr, static_cast<int32_t>(train_model::kSampleValues), nullptr, nullptr};
const int8_t kZeroSample[train_model::kSampleValues] = {};
uint8_t g_blob[kMaxBlobBytes];
tt_fleet_tensor g_tensors[kMaxTensors];
float g_scales[kMaxScales];

int Fail(const char* message, const char* detail = "") {
  fprintf(stderr, "error: %s%s\n", message, detail);
  return 1;
}

bool ReadFile(const char* path, uint8_t* buffer, size_t capacity, size_t* length) {
  FILE* f = fopen(path, "rb");
  if (f == nullptr) return false;
  *length = fread(buffer, 1, capacity, f);
  const bool whole = feof(f) || fgetc(f) == EOF;
  fclose(f);
  return whole;
}

// Fills g_tensors from LAYOUT, with data pointers into the interpreter and scales from the model.
bool ReadLayout(const char* path, const tflite::Model* model, tflite::MicroInterpreter& interpreter, uint32_t* count) {
  FILE* f = fopen(path, "r");
  if (f == nullptr || fscanf(f, "%u", count) != 1 || *count < 1 || *count > kMaxTensors) return false;
  const auto* tensors = model->subgraphs()->Get(0)->tensors();
  uint32_t scales_used = 0;
  for (uint32_t i = 0; i < *count; ++i) {
    tt_fleet_tensor& t = g_tensors[i];
    unsigned type = 0;
    if (fscanf(f, "%u %u %u %u %u %u", &t.tensor, &type, &t.outer, &t.channels, &t.channels_trained, &t.inner) != 6 ||
        t.tensor >= tensors->size()) {
      fclose(f);
      return false;
    }
    t.type = static_cast<tt_fleet_type>(type);
    const auto* quantization = tensors->Get(t.tensor)->quantization();
    TfLiteEvalTensor* variable = interpreter.GetTensor(static_cast<int>(t.tensor));
    if (quantization == nullptr || quantization->scale() == nullptr || variable == nullptr) {
      fclose(f);
      return false;
    }
    t.num_scales = quantization->scale()->size() == 1 ? 1 : t.channels_trained;
    if (scales_used + t.num_scales > kMaxScales || quantization->scale()->size() < t.num_scales) {
      fclose(f);
      return false;
    }
    for (uint32_t c = 0; c < t.num_scales; ++c) g_scales[scales_used + c] = quantization->scale()->Get(c);
    t.scales = g_scales + scales_used;
    scales_used += t.num_scales;
    t.values = variable->data.data;
  }
  fclose(f);
  return true;
}

// The sample the next Invoke() trains on: copied into the sample input, or, streamed, read from `values`.
void SetSample(tflite::MicroInterpreter& interpreter, const int8_t* values) {
  if (train_model::kStreamsSample) {
    g_streamed.image = values;
    tinytrain::SetStreamedInput(&g_streamed);
  } else {
    memcpy(interpreter.input(train_model::kSampleInput)->data.int8, values, train_model::kSampleValues);
  }
}

uint32_t Next(uint32_t* state) {  // xorshift32
  *state ^= *state << 13;
  *state ^= *state >> 17;
  *state ^= *state << 5;
  return *state;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    return Fail("usage: tinytrain_fleet_device LAYOUT GLOBAL.bin SAMPLES.bin EPOCHS SEED UPLOAD.bin");
  }
  const tflite::Model* model = tflite::GetModel(train_model::kData);
  tflite::MicroMutableOpResolver<train_model::kNumBuiltinOps + tinytrain::kNumOps> resolver;
#define ADD_BUILTIN(OP) \
  if (resolver.Add##OP() != kTfLiteOk) return Fail("cannot register builtin op ", #OP);
  TRAIN_MODEL_FOR_EACH_BUILTIN(ADD_BUILTIN)
#undef ADD_BUILTIN
  if (tinytrain::AddTinyTrainOps(resolver) != kTfLiteOk) return Fail("cannot register tinytrain's ops");
  tflite::MicroInterpreter interpreter(model, resolver, g_arena, sizeof(g_arena), nullptr, nullptr, true);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    return Fail("AllocateTensors failed (a model compiled without --no-overlap carries a memory plan, which "
                "preserve_all_tensors cannot follow)");
  }
  if (!train_model::kStreamsSample && interpreter.input(train_model::kSampleInput)->bytes != train_model::kSampleValues) {
    return Fail("this program feeds int8 samples; the model's input has another type");
  }
  TfLiteTensor* labels = interpreter.input(train_model::kLabelInput);
  int32_t* control = interpreter.input(train_model::kControlInput)->data.i32;
  // The first invoke runs TT_INIT_VARIABLES, which copies the pretrained values into the variables
  // once: the global values must be written after it.
  SetSample(interpreter, kZeroSample);
  memset(labels->data.i32, 0, labels->bytes);
  *control = 0;
  if (interpreter.Invoke() != kTfLiteOk) return Fail("the first (predict) invoke failed");

  uint32_t num_tensors = 0;
  if (!ReadLayout(argv[1], model, interpreter, &num_tensors)) return Fail("cannot read the layout ", argv[1]);
  size_t blob_length = 0;
  if (!ReadFile(argv[2], g_blob, sizeof(g_blob), &blob_length)) return Fail("cannot read ", argv[2]);
  tt_fleet_info info{0, 0};
  const tt_status status = tt_fleet_update_apply(g_blob, blob_length, g_tensors, num_tensors, &info);
  if (status != TT_SUCCESS) {
    fprintf(stderr, "error: fleet update rejected: %s\n", tt_status_message(status));
    return 3;
  }

  FILE* f = fopen(argv[3], "rb");
  uint32_t count = 0;
  if (f == nullptr || fread(&count, sizeof(count), 1, f) != 1 || count == 0) return Fail("cannot read ", argv[3]);
  const size_t record = train_model::kSampleValues + sizeof(int32_t);
  uint8_t* samples = static_cast<uint8_t*>(malloc(record * count));  // host program: the samples are the gateway's
  if (samples == nullptr || fread(samples, record, count, f) != count) return Fail("truncated samples in ", argv[3]);
  fclose(f);
  uint32_t* order = static_cast<uint32_t*>(malloc(sizeof(uint32_t) * count));
  for (uint32_t i = 0; i < count; ++i) order[i] = i;
  uint32_t state = static_cast<uint32_t>(strtoul(argv[5], nullptr, 10)) | 1u;
  const int epochs = atoi(argv[4]);
  *control = TT_CONTROL_BACKWARD | TT_CONTROL_UPDATE;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    for (uint32_t i = count - 1; i > 0; --i) {  // Fisher-Yates
      const uint32_t j = Next(&state) % (i + 1);
      const uint32_t swap = order[i];
      order[i] = order[j];
      order[j] = swap;
    }
    for (uint32_t k = 0; k < count; ++k) {
      const uint8_t* s = samples + static_cast<size_t>(order[k]) * record;
      SetSample(interpreter, reinterpret_cast<const int8_t*>(s));
      int32_t label;
      memcpy(&label, s + train_model::kSampleValues, sizeof(label));
      for (size_t n = 0; n < labels->bytes / sizeof(int32_t); ++n) labels->data.i32[n] = label;
      *control = TT_CONTROL_BACKWARD | TT_CONTROL_UPDATE;  // inputs are rewritten before every invoke
      if (interpreter.Invoke() != kTfLiteOk) return Fail("a training step failed");
    }
  }
  free(order);
  free(samples);

  const tt_fleet_info upload{info.round, count};
  size_t written = 0;
  if (tt_fleet_update_write(&upload, g_tensors, num_tensors, g_blob, sizeof(g_blob), &written) != TT_SUCCESS) {
    return Fail("cannot write the upload");
  }
  f = fopen(argv[6], "wb");
  if (f == nullptr || fwrite(g_blob, 1, written, f) != written) return Fail("cannot write ", argv[6]);
  fclose(f);
  printf("round %u: applied the global values, trained %d epochs on %u samples, uploaded %lu bytes\n", info.round, epochs,
         count, static_cast<unsigned long>(written));
  return 0;
}

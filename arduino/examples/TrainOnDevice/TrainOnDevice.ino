// TrainOnDevice: collect labelled samples, train the model on the board, report accuracy over Serial.
//
// train_model.cpp / train_model.h are the training model as a C array; `tinytrain-tflm
// arduino-library TRAIN.tflite -o DIR` writes them here (or run `tinytrain-tflm export TRAIN.tflite
// --c-array train_model.cpp` yourself). The model is an int8 classifier compiled by tinytrain-tflm:
// forward, loss, backward and SGD in one .tflite, one training step per Invoke().
//
// Serial commands (115200 baud, one per line):
//   collect L N      read N samples of class L from the sensor (ReadSensor below)
//   sample L v1 ...  one sample of class L sent as real values, one per input element
//   train E          E epochs over the stored samples (every 5th is held out); loss and accuracy per epoch
//   accuracy         held-out accuracy, no update
//   reset            back to the pretrained weights (MicroInterpreter::Reset)
//   clear            forget the stored samples
//
// A model compiled with --stream-input (train_model::kStreamsSample) has no sample input: its tiled first
// stage reads the sample during Invoke() from the source given to tinytrain::SetStreamedInput. Here that
// source is the stored sample itself, so streaming costs no RAM beyond the sample store; a camera board
// would point it at the frame buffer instead (the RAM the frame takes still counts), or give a row reader.
#include <TensorFlowLite.h>
#include <TinyTrain.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "train_model.h"

namespace {

constexpr unsigned int kSampleStoreBytes = 16 * 1024;  // int8 samples kept in RAM for training
constexpr int kMaxSamples = 256;
constexpr int kHoldOutEvery = 5;
// A serial line carries a whole sample ("sample LABEL v1 v2 ..."): room for 16 characters per value.
constexpr int kLineBytes = 32 + 16 * static_cast<int>(train_model::kSampleValues);
constexpr int kSampleBytes = static_cast<int>(train_model::kSampleValues);  // int8 samples: one byte a value

// The arena for this library's TFLM: kArduinoArenaSize, not kArenaSize. That older TFLM needs more while the ops
// prepare (train_model.h says why), and below kArduinoArenaBytes it crashes in AllocateTensors instead of failing;
// the build stops on a smaller arena. Shrink it only down to kArduinoArenaBytes.
alignas(16) uint8_t g_arena[train_model::kArduinoArenaSize];
static_assert(sizeof(g_arena) >= train_model::kArduinoArenaBytes,
              "the arena is below train_model::kArduinoArenaBytes, where this TFLM crashes in AllocateTensors");
int8_t g_samples[kSampleStoreBytes];
uint8_t g_labels[kMaxSamples];
int g_num_samples = 0;
int g_capacity = 0;
char g_line[kLineBytes];
int g_line_length = 0;

tflite::MicroInterpreter* g_interpreter = nullptr;
TfLiteTensor* g_input = nullptr;  // the sample input; none (nullptr) when the model streams its sample
tinytrain::StreamedInput g_streamed{nullptr, kSampleBytes, nullptr, nullptr};

// The sensor stub: class `label` is a sine of label + 1 periods over the window, with noise. Replace
// it with your sensor's readings (for example accelerometer axes over a time window), scaled as the
// model's training data was.
void ReadSensor(int label, float* values, int count) {
  for (int i = 0; i < count; ++i) {
    const float phase = 6.2831853f * static_cast<float>((label + 1) * i) / static_cast<float>(count);
    values[i] = 0.5f + 0.4f * sinf(phase) + 0.1f * static_cast<float>(random(-100, 101)) / 100.0f;
  }
}

int8_t Quantize(float value) {
  const int q = static_cast<int>(roundf(value / train_model::kSampleScale)) + train_model::kSampleZeroPoint;
  return static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));
}

bool Store(int label, const float* values) {
  if (label < 0 || label >= train_model::kNumClasses) {
    Serial.println("error: label out of range");
    return false;
  }
  if (g_num_samples >= g_capacity) {
    Serial.println("error: sample store full (clear, or raise kSampleStoreBytes)");
    return false;
  }
  int8_t* sample = g_samples + g_num_samples * kSampleBytes;
  for (int i = 0; i < kSampleBytes; ++i) sample[i] = Quantize(values[i]);
  g_labels[g_num_samples++] = static_cast<uint8_t>(label);
  return true;
}

// One Invoke on stored sample `index` with the given control word (0 predict, 3 train).
bool Run(int index, int32_t control) {
  const int8_t* sample = g_samples + index * kSampleBytes;
  if (g_input != nullptr) {
    memcpy(g_input->data.int8, sample, kSampleBytes);
  } else {
    g_streamed.image = sample;  // read in place during Invoke()
    tinytrain::SetStreamedInput(&g_streamed);
  }
  TfLiteTensor* labels = g_interpreter->input(train_model::kLabelInput);
  for (size_t i = 0; i < labels->bytes / sizeof(int32_t); ++i) labels->data.i32[i] = g_labels[index];
  g_interpreter->input(train_model::kControlInput)->data.i32[0] = control;
  if (g_interpreter->Invoke() != kTfLiteOk) {
    Serial.println("error: Invoke failed");
    return false;
  }
  return true;
}

bool HeldOut(int index) { return index % kHoldOutEvery == kHoldOutEvery - 1; }

float HeldOutAccuracy() {
  int correct = 0, total = 0;
  for (int i = 0; i < g_num_samples; ++i) {
    if (!HeldOut(i) || !Run(i, 0)) continue;
    const int8_t* logits = g_interpreter->output(train_model::kLogitsOutput)->data.int8;
    int best = 0;
    for (int c = 1; c < train_model::kNumClasses; ++c) best = logits[c] > logits[best] ? c : best;
    correct += best == g_labels[i];
    ++total;
  }
  return total ? static_cast<float>(correct) / static_cast<float>(total) : 0.0f;
}

void Train(int epochs) {
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    float loss_sum = 0.0f;
    int steps = 0;
    const int start = random(g_num_samples);  // each epoch starts elsewhere in the store
    for (int k = 0; k < g_num_samples; ++k) {
      const int i = (start + k) % g_num_samples;
      if (HeldOut(i)) continue;
      if (!Run(i, TT_CONTROL_BACKWARD | TT_CONTROL_UPDATE)) return;
      loss_sum += g_interpreter->output(train_model::kLossOutput)->data.f[0];
      ++steps;
    }
    Serial.print("epoch ");
    Serial.print(epoch);
    Serial.print(": mean loss ");
    Serial.print(steps ? loss_sum / static_cast<float>(steps) : 0.0f, 4);
    Serial.print(", held-out accuracy ");
    Serial.println(HeldOutAccuracy(), 3);
  }
}

void Execute(char* line) {
  static float values[train_model::kSampleValues];  // one sample, sized from the model
  const char* command = strtok(line, " \t\r");
  if (command == nullptr) return;
  const char* argument = strtok(nullptr, " \t\r");
  const int number = argument ? atoi(argument) : 0;
  const int count = kSampleBytes;
  if (strcmp(command, "collect") == 0) {
    const char* how_many = strtok(nullptr, " \t\r");
    for (int n = how_many ? atoi(how_many) : 1; n > 0; --n) {
      ReadSensor(number, values, count);
      if (!Store(number, values)) return;
    }
  } else if (strcmp(command, "sample") == 0) {
    int n = 0;
    for (const char* token = strtok(nullptr, " \t\r"); token && n < count; token = strtok(nullptr, " \t\r")) {
      values[n++] = static_cast<float>(atof(token));
    }
    if (n != count) {
      Serial.print("error: a sample needs ");
      Serial.print(count);
      Serial.println(" values");
      return;
    }
    Store(number, values);
  } else if (strcmp(command, "train") == 0) {
    Train(number > 0 ? number : 1);
  } else if (strcmp(command, "accuracy") == 0) {
    Serial.print("held-out accuracy ");
    Serial.println(HeldOutAccuracy(), 3);
  } else if (strcmp(command, "reset") == 0) {
    g_interpreter->Reset();
    Serial.println("weights back to the pretrained model");
  } else if (strcmp(command, "clear") == 0) {
    g_num_samples = 0;
  } else {
    Serial.println("commands: collect L N | sample L v1 ... | train E | accuracy | reset | clear");
    return;
  }
  Serial.print("samples stored: ");
  Serial.println(g_num_samples);
}

}  // namespace

void setup() {
  tflite::InitializeTarget();
  Serial.begin(115200);
  while (!Serial) {
  }
  static tflite::MicroMutableOpResolver<train_model::kNumBuiltinOps + tinytrain::kNumOps> resolver;
#define ADD_BUILTIN(OP) resolver.Add##OP();
  TRAIN_MODEL_FOR_EACH_BUILTIN(ADD_BUILTIN)
#undef ADD_BUILTIN
  if (tinytrain::AddTinyTrainOps(resolver) != kTfLiteOk) {
    Serial.println("error: resolver too small for tinytrain's ops");
    return;
  }
  static tflite::MicroInterpreter interpreter(tflite::GetModel(train_model::kData), resolver, g_arena,
                                              sizeof(g_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    Serial.println("error: AllocateTensors failed (arena too small?)");
    return;
  }
  if (!train_model::kStreamsSample) {
    g_input = interpreter.input(train_model::kSampleInput);
    if (g_input->type != kTfLiteInt8 || static_cast<int>(g_input->bytes) != kSampleBytes) {
      Serial.println("error: this sketch stores int8 samples; the model's input has another type");
      return;
    }
  }
  g_capacity = min(kMaxSamples, static_cast<int>(kSampleStoreBytes / kSampleBytes));
  if (g_capacity == 0) {
    Serial.println("error: one sample is larger than the sample store (raise kSampleStoreBytes)");
    return;
  }
  g_interpreter = &interpreter;
  Serial.print("TinyTrain ready: arena ");
  Serial.print(static_cast<unsigned long>(interpreter.arena_used_bytes()));
  Serial.print(" of ");
  Serial.print(sizeof(g_arena));
  Serial.print(" bytes used, room for ");
  Serial.print(g_capacity);
  Serial.println(" samples");
}

void loop() {
  if (g_interpreter == nullptr || !Serial.available()) return;
  const char c = static_cast<char>(Serial.read());
  if (c != '\n' && g_line_length < kLineBytes - 1) {
    g_line[g_line_length++] = c;
    return;
  }
  g_line[g_line_length] = '\0';
  g_line_length = 0;
  Execute(g_line);
}

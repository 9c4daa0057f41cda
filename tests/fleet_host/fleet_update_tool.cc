// Host driver of the firmware's fleet update API (kernels/core/fleet), for tests/test_fleet_payload.py.
//
//   fleet_update_tool SPEC write ROUND SAMPLES OUT   writes the spec's values as an update blob
//   fleet_update_tool SPEC apply BLOB...             per blob, from the spec's values each time:
//       "applied ROUND SAMPLES v..." or "rejected <message> unchanged|CHANGED"
//
// SPEC (text): the tensor count, then per tensor "index type outer channels channels_trained inner
// num_scales", the scales as float32 bit patterns, and the whole variable's values.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "fleet/tt_fleet_update.h"

namespace {

struct Tensor {
  tt_fleet_tensor view;
  std::vector<float> scales;
  std::vector<int32_t> initial;
  std::vector<int8_t> s8;
  std::vector<int32_t> s32;
};

bool ReadSpec(const char* path, std::vector<Tensor>& tensors) {
  FILE* f = fopen(path, "r");
  if (f == nullptr) return false;
  unsigned count = 0;
  bool ok = fscanf(f, "%u", &count) == 1;
  tensors.resize(count);
  for (Tensor& t : tensors) {
    unsigned type = 0;
    ok = ok && fscanf(f, "%u %u %u %u %u %u %u", &t.view.tensor, &type, &t.view.outer, &t.view.channels,
                      &t.view.channels_trained, &t.view.inner, &t.view.num_scales) == 7;
    if (!ok) break;
    t.view.type = static_cast<tt_fleet_type>(type);
    t.scales.resize(t.view.num_scales);
    for (float& scale : t.scales) {
      uint32_t bits = 0;
      ok = ok && fscanf(f, "%u", &bits) == 1;
      memcpy(&scale, &bits, sizeof(scale));
    }
    t.initial.resize(static_cast<size_t>(t.view.outer) * t.view.channels * t.view.inner);
    for (int32_t& value : t.initial) ok = ok && fscanf(f, "%d", &value) == 1;
  }
  fclose(f);
  return ok;
}

void Reset(std::vector<Tensor>& tensors, std::vector<tt_fleet_tensor>& views) {
  views.clear();
  for (Tensor& t : tensors) {
    t.s8.assign(t.initial.begin(), t.initial.end());
    t.s32 = t.initial;
    t.view.scales = t.scales.data();
    t.view.values = t.view.type == TT_FLEET_S8 ? static_cast<void*>(t.s8.data()) : static_cast<void*>(t.s32.data());
    views.push_back(t.view);
  }
}

int32_t Value(const Tensor& t, size_t k) { return t.view.type == TT_FLEET_S8 ? t.s8[k] : t.s32[k]; }

std::vector<uint8_t> ReadFile(const char* path) {
  std::vector<uint8_t> bytes;
  FILE* f = fopen(path, "rb");
  if (f == nullptr) return bytes;
  int c;
  while ((c = fgetc(f)) != EOF) bytes.push_back(static_cast<uint8_t>(c));
  fclose(f);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Tensor> tensors;
  if (argc < 3 || !ReadSpec(argv[1], tensors)) {
    fprintf(stderr, "usage: fleet_update_tool SPEC write ROUND SAMPLES OUT | SPEC apply BLOB...\n");
    return 2;
  }
  std::vector<tt_fleet_tensor> views;
  Reset(tensors, views);
  const uint32_t n = static_cast<uint32_t>(views.size());
  if (strcmp(argv[2], "write") == 0 && argc == 6) {
    const tt_fleet_info info{static_cast<uint32_t>(strtoul(argv[3], nullptr, 10)),
                             static_cast<uint32_t>(strtoul(argv[4], nullptr, 10))};
    std::vector<uint8_t> blob(tt_fleet_update_size(views.data(), n));
    size_t written = 0;
    const tt_status status = tt_fleet_update_write(&info, views.data(), n, blob.data(), blob.size(), &written);
    if (status != TT_SUCCESS) {
      fprintf(stderr, "write failed: %s\n", tt_status_message(status));
      return 1;
    }
    FILE* f = fopen(argv[5], "wb");
    fwrite(blob.data(), 1, written, f);
    fclose(f);
    return 0;
  }
  if (strcmp(argv[2], "apply") != 0) return 2;
  for (int i = 3; i < argc; ++i) {
    Reset(tensors, views);
    const std::vector<uint8_t> blob = ReadFile(argv[i]);
    tt_fleet_info info{0, 0};
    const tt_status status = tt_fleet_update_apply(blob.data(), blob.size(), views.data(), n, &info);
    if (status == TT_SUCCESS) {
      printf("applied %u %u", info.round, info.num_samples);
      for (const Tensor& t : tensors) {
        for (size_t k = 0; k < t.initial.size(); ++k) printf(" %d", Value(t, k));
      }
      printf("\n");
    } else {
      bool unchanged = true;
      for (const Tensor& t : tensors) {
        for (size_t k = 0; k < t.initial.size(); ++k) unchanged = unchanged && Value(t, k) == t.initial[k];
      }
      printf("rejected %s %s\n", tt_status_message(status), unchanged ? "unchanged" : "CHANGED");
    }
  }
  return 0;
}

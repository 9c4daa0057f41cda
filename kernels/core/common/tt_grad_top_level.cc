#include "../tt_functions.h"

extern "C" int32_t tt_grad_top_level(int32_t count, const int8_t* levels) {
  if (levels == nullptr) return 0;
  // The largest and the smallest level apart, then one magnitude: no absolute value per element.
  int32_t highest = 0;
  int32_t lowest = 0;
  for (int32_t i = 0; i < count; ++i) {
    const int32_t level = levels[i];
    highest = level > highest ? level : highest;
    lowest = level < lowest ? level : lowest;
  }
  return highest > -lowest ? highest : -lowest;
}

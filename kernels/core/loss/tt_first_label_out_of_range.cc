#include "../tt_functions.h"

extern "C" int32_t tt_first_label_out_of_range(const int32_t* labels, int32_t count,
                                               int32_t num_classes) {
  for (int32_t i = 0; i < count; ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) return i;
  }
  return -1;
}

#include "tt_training_guard.h"

#include "../tt_functions.h"

extern "C" tt_sample_verdict tt_sample_check_s8(const int8_t* sample, uint32_t values, const int32_t* labels,
                                                uint32_t num_labels, int32_t label_classes,
                                                tt_sample_counts* counts) {
  if (label_classes > 0 && num_labels <= INT32_MAX &&
      tt_first_label_out_of_range(labels, static_cast<int32_t>(num_labels), label_classes) >= 0) {
    if (counts != nullptr) ++counts->bad_labels;
    return TT_SAMPLE_BAD_LABEL;
  }
  for (uint32_t i = 0; i < values; ++i) {
    if (sample[i] != INT8_MIN && sample[i] != INT8_MAX) return TT_SAMPLE_OK;
  }
  if (counts != nullptr) ++counts->saturated;
  return TT_SAMPLE_SATURATED;
}

extern "C" int tt_divergence_guard_step(tt_divergence_guard* guard, float loss) {
  // Written so that NaN is bad too: every comparison with NaN is false.
  const bool good = loss <= guard->loss_bound && loss >= -guard->loss_bound;
  if (good) {
    guard->bad_steps = 0;
    return 0;
  }
  if (++guard->bad_steps < guard->patience) return 0;
  guard->bad_steps = 0;
  ++guard->rollbacks;
  return 1;
}

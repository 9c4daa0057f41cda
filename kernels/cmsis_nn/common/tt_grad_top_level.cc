#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

#include "../../core/tt_functions.h"

// The cmsis-nn kernel set's targets (Cortex-M4, M7, M55) all have the DSP extension.
#if !defined(__ARM_FEATURE_SIMD32)
#error "kernels/cmsis_nn needs the DSP extension's SIMD32 instructions (SSUB8 and SEL)"
#endif

// Four levels a word: SSUB8 sets each byte lane's GE flag where the first operand is >= the second,
// and SEL takes those lanes from the first, so two pairs keep four running maxima and four minima
// (5 instructions per 4 levels instead of 9 per level). The core's scalar loop finishes the tail.
extern "C" int32_t tt_grad_top_level(int32_t count, const int8_t* levels) {
  if (levels == nullptr) return 0;
  uint32_t highest = 0;  // four int8 lanes, all 0
  uint32_t lowest = 0;
  int32_t i = 0;
  for (; i + 4 <= count; i += 4) {
    uint32_t word;
    memcpy(&word, levels + i, sizeof(word));  // one LDR: the M4, M7 and M55 load unaligned words
    __ssub8(word, highest);
    highest = __sel(word, highest);
    __ssub8(lowest, word);
    lowest = __sel(word, lowest);
  }
  int32_t top_high = 0;
  int32_t top_low = 0;
  for (int32_t lane = 0; lane < 4; ++lane) {
    const int32_t high = static_cast<int8_t>(highest >> (8 * lane));
    const int32_t low = static_cast<int8_t>(lowest >> (8 * lane));
    top_high = high > top_high ? high : top_high;
    top_low = low < top_low ? low : top_low;
  }
  for (; i < count; ++i) {
    const int32_t level = levels[i];
    top_high = level > top_high ? level : top_high;
    top_low = level < top_low ? level : top_low;
  }
  return top_high > -top_low ? top_high : -top_low;
}

#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

#include "../../core/activation/activation_pass.h"
#include "../../core/tt_functions.h"

// The cmsis-nn kernel set's targets (Cortex-M4, M7, M55) all have the DSP extension.
#if !defined(__ARM_FEATURE_SIMD32)
#error "kernels/cmsis_nn needs the DSP extension's SIMD32 instructions (SSUB8 and SEL)"
#endif

namespace {

// An int8 gradient passes where lower_q < y < upper_q, i.e. low <= y <= high: four levels a word. SSUB8
// sets each byte lane's GE flag where its first operand is >= the second, and SEL keeps those lanes of
// the gradient (0 in the others), once per bound: 10 instructions per 4 levels instead of about 10 per
// level. The levels are copies, so the output is the core's byte for byte.
void PassS8GradInsideClampRange(const tt_activation_params& params, int32_t count, const int8_t* y,
                                const int8_t* in, int8_t* out) {
  // lower_q >= -129 and upper_q <= 128 (ValidActivationParams): low in [-128, 128], high in [-129, 127].
  // Either one outside int8 leaves no level inside, and then low > high.
  const int32_t low = params.lower_q + 1;
  const int32_t high = params.upper_q - 1;
  if (low > high) {
    memset(out, 0, static_cast<size_t>(count));
    return;
  }
  const uint32_t lows = 0x01010101u * static_cast<uint8_t>(low);
  const uint32_t highs = 0x01010101u * static_cast<uint8_t>(high);
  int32_t i = 0;
  for (; i + 4 <= count; i += 4) {
    uint32_t levels;
    uint32_t grads;
    memcpy(&levels, y + i, sizeof(levels));  // one LDR each: the M4, M7 and M55 load unaligned words
    memcpy(&grads, in + i, sizeof(grads));
    __ssub8(levels, lows);
    const uint32_t above_low = __sel(grads, 0u);
    __ssub8(highs, levels);
    const uint32_t passed = __sel(above_low, 0u);
    memcpy(out + i, &passed, sizeof(passed));
  }
  for (; i < count; ++i) out[i] = tinytrain_core::InsideClampRange(params, y[i]) ? in[i] : 0;
}

}  // namespace

extern "C" tt_status tt_activation_grad_s8(const tt_activation_params* params, int32_t count, const int8_t* y,
                                           const tt_grad_in* grad_output, tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidActivationParams(params) ||
      !tinytrain_core::ValidPassGradArgs(count, y, grad_output, grad_input)) {
    return TT_ARG_ERROR;
  }
  if (grad_output->type == TT_GRAD_S8) {
    PassS8GradInsideClampRange(*params, count, y, static_cast<const int8_t*>(grad_output->data),
                               static_cast<int8_t*>(grad_input->data));
    *grad_input->scale = grad_output->scale;
    return TT_SUCCESS;
  }
  const tinytrain_core::ActivationShape shape{*params, count};
  tinytrain_core::ActivationGradAs<TT_GRAD_F32>(shape, y, *grad_output, *grad_input);
  return TT_SUCCESS;
}

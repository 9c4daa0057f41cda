/* Internal to the kernel core: which elements a fused activation's backward
 * lets through, the 1-bit mask layout, and the copy that zeroes the rest. */
#ifndef TINYTRAIN_KERNELS_CORE_ACTIVATION_ACTIVATION_PASS_H_
#define TINYTRAIN_KERNELS_CORE_ACTIVATION_ACTIVATION_PASS_H_

#include <stdint.h>

#include "../common/grad_io.h"
#include "../tt_functions.h"

namespace tinytrain_core {

inline bool ValidActivationParams(const tt_activation_params* params) {
  return params != nullptr && params->lower_q >= -129 && params->upper_q <= 128 && params->lower_q < params->upper_q;
}

// The activation's derivative is 1 strictly inside its clamp range and 0 on
// the clamps (a ReLU output at its zero point gets no gradient, as in TF).
inline bool InsideClampRange(const tt_activation_params& params, int8_t y) {
  return params.lower_q < y && y < params.upper_q;
}

// Mask layout: element i is bit i % 8 of byte i / 8, least significant first.
inline bool MaskBit(const uint8_t* mask, int32_t i) { return ((mask[i / 8] >> (i % 8)) & 1u) != 0; }

// grad_input[i] = passes(i) ? grad_output[i] : 0, element by element. Zeroing
// values never raises max|g|, so an int8 gradient keeps its input scale and its
// levels are copied as they are: no requantization error.
template <typename Passes>
void PassGradWhere(int32_t count, const tt_grad_in& grad_output, const tt_grad_out& grad_input, Passes passes) {
  if (grad_output.type == TT_GRAD_S8) {
    const auto* in = static_cast<const int8_t*>(grad_output.data);
    auto* out = static_cast<int8_t*>(grad_input.data);
    for (int32_t i = 0; i < count; ++i) out[i] = passes(i) ? in[i] : 0;
    *grad_input.scale = grad_output.scale;
  } else {
    const auto* in = static_cast<const float*>(grad_output.data);
    auto* out = static_cast<float*>(grad_input.data);
    for (int32_t i = 0; i < count; ++i) out[i] = passes(i) ? in[i] : 0.0f;
  }
}

// Argument checks shared by both backward variants; the representation cannot
// change because the input scale is reused.
inline bool ValidPassGradArgs(int32_t count, const void* activation, const tt_grad_in* grad_output,
                              const tt_grad_out* grad_input) {
  return count >= 1 && activation != nullptr && ValidGradIn(grad_output) && ValidGradOut(grad_input) &&
         grad_output->type == grad_input->type;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_ACTIVATION_ACTIVATION_PASS_H_

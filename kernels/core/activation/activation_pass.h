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

// grad_input[i] = passes(i) ? grad_output[i] : 0, element by element, both
// of representation kType. Zeroing values never raises max|g|, so an int8
// gradient keeps its input scale and its levels are copied as they are: no
// requantization error.
template <tt_grad_type kType, typename Passes>
void PassGradWhereAs(int32_t count, const tt_grad_in& grad_output, const tt_grad_out& grad_input, Passes passes) {
  if constexpr (kType == TT_GRAD_S8) {
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

// The bodies of the activation functions over a shape S with members params
// (tt_activation_params) and count: run-time values in the generic functions,
// static constexpr ones in a generated kernel.
struct ActivationShape {
  tt_activation_params params;
  int32_t count;
};

// tt_activation_mask_s8.
template <typename S>
void ActivationMask(const S& s, const int8_t* y, uint8_t* mask) {
  for (int32_t byte = 0; byte < TT_ACTIVATION_MASK_BYTES(s.count); ++byte) {
    uint8_t bits = 0;  // The last byte's bits past `count` stay 0.
    for (int32_t bit = 0; bit < 8 && byte * 8 + bit < s.count; ++bit) {
      if (InsideClampRange(s.params, y[byte * 8 + bit])) bits |= static_cast<uint8_t>(1u << bit);
    }
    mask[byte] = bits;
  }
}

// tt_activation_grad_s8, both gradients of representation kType.
template <tt_grad_type kType, typename S>
void ActivationGradAs(const S& s, const int8_t* y, const tt_grad_in& grad_output, const tt_grad_out& grad_input) {
  PassGradWhereAs<kType>(s.count, grad_output, grad_input, [&](int32_t i) { return InsideClampRange(s.params, y[i]); });
}

// tt_activation_grad_mask, both gradients of representation kType; reads only s.count.
template <tt_grad_type kType, typename S>
void ActivationGradMaskAs(const S& s, const uint8_t* mask, const tt_grad_in& grad_output,
                          const tt_grad_out& grad_input) {
  PassGradWhereAs<kType>(s.count, grad_output, grad_input, [&](int32_t i) { return MaskBit(mask, i); });
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

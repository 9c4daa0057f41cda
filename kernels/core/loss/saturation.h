/* Internal to the loss functions: the clipped straight-through rule at the int8 limits. */
#ifndef TINYTRAIN_KERNELS_CORE_LOSS_SATURATION_H_
#define TINYTRAIN_KERNELS_CORE_LOSS_SATURATION_H_

#include <stdint.h>

namespace tinytrain_core {

// A value saturated at an int8 limit gets no gradient pushing it further out:
// it cannot follow (its scale is fixed during training), and weights chasing
// it would grow without bound.
inline float UnlessPushedOut(int8_t q, float gradient) {
  return (q == 127 && gradient < 0.0f) || (q == -128 && gradient > 0.0f) ? 0.0f : gradient;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_LOSS_SATURATION_H_

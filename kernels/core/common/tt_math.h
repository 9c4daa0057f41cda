// exp and log in float32 arithmetic only, the same on every target.
//
// C libraries disagree in the last bits of expf and logf: newlib's Cortex-M4F build uses fdlibm's
// single-precision algorithm, its Cortex-M7 build and glibc another. A loss computed through them
// would differ between the host and a device by an ulp, and so would the gradients and every update
// after. These use only +, -, *, / and exact bit operations in a fixed order (the core is built with
// -ffp-contract=off: no fused multiply-add), so every IEEE-754 target computes the same bits.
// Accuracy over the ranges the loss uses, measured against float64 exp and log on 2 million points
// each: exp of [-87, 0] within 1.2 ulp, log of [1, 2001] within 2.2 ulp.
#ifndef TINYTRAIN_KERNELS_CORE_COMMON_TT_MATH_H_
#define TINYTRAIN_KERNELS_CORE_COMMON_TT_MATH_H_

#include <stdint.h>
#include <string.h>

namespace tinytrain_core {

// 2^k for k in [-126, 127], built from its exponent bits.
inline float tt_exp2i(int32_t k) {
  const uint32_t bits = static_cast<uint32_t>(k + 127) << 23;
  float value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

// x rounded to the nearest integer, halves away from 0 (x + 0.5 truncated: the same bits on every
// IEEE float32 target, and no library call on the Cortex-M4F).
inline int32_t RoundToInt(float x) { return static_cast<int32_t>(x + (x < 0.0f ? -0.5f : 0.5f)); }

// e^x. Below -87.3 (e^x under the smallest normal float) it returns 0; above 88.7, FLT_MAX's bound,
// the caller's values never go (the loss takes exp of logit - max <= 0).
inline float tt_expf(float x) {
  if (x < -87.3f) return 0.0f;
  // x = k ln2 + r, |r| <= ln2 / 2, with ln2 split so that k * kLn2High is exact (Cody and Waite).
  constexpr float kLog2e = 1.44269504f;
  constexpr float kLn2High = 0.693145751953125f;
  constexpr float kLn2Low = 1.42860677e-06f;
  const float k = static_cast<float>(RoundToInt(x * kLog2e));
  const float r = (x - k * kLn2High) - k * kLn2Low;
  // e^r by its Taylor series to r^7 / 7!: the first dropped term is below 2^-27 for |r| <= ln2 / 2.
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f +
                                                            r * (8.33333333e-3f + r * (1.38888889e-3f + r * 1.98412698e-4f))))));
  return p * tt_exp2i(static_cast<int32_t>(k));
}

// ln x for positive, normal x.
inline float tt_logf(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  // x = m 2^e with m in [sqrt(1/2), sqrt(2)): exponent from the bits, mantissa rescaled.
  int32_t e = static_cast<int32_t>(bits >> 23) - 127;
  bits = (bits & 0x007FFFFFu) | 0x3F800000u;  // m in [1, 2)
  float m;
  memcpy(&m, &bits, sizeof(m));
  if (m > 1.41421356f) {
    m *= 0.5f;
    e += 1;
  }
  // ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1) / (m + 1), |s| <= 0.1716.
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  const float series = s * (2.0f + s2 * (0.666666667f + s2 * (0.4f + s2 * (0.285714286f + s2 * 0.222222222f))));
  constexpr float kLn2High = 0.693145751953125f;
  constexpr float kLn2Low = 1.42860677e-06f;
  const float ef = static_cast<float>(e);
  return (ef * kLn2High + series) + ef * kLn2Low;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_COMMON_TT_MATH_H_

/* Internal to the kernel core: the body of tt_mul_grad_s8 over a shape S with
 * members other_quant, grad_output, other and grad_input (run-time values in
 * the generic function, static constexpr in a generated kernel). */
#ifndef TINYTRAIN_KERNELS_CORE_MUL_MUL_GRAD_H_
#define TINYTRAIN_KERNELS_CORE_MUL_MUL_GRAD_H_

#include <stdint.h>

#include "../tt_functions.h"

namespace tinytrain_core {

struct MulGradShape {
  tt_quant_params other_quant;
  tt_dims grad_output;
  tt_dims other;
  tt_dims grad_input;
};

// Each of a's dims is y's or 1; b's likewise.
inline bool BroadcastsTo(const tt_dims& from, const tt_dims& to) {
  const auto fits = [](int32_t f, int32_t t) { return f == t || f == 1; };
  return fits(from.n, to.n) && fits(from.h, to.h) && fits(from.w, to.w) && fits(from.c, to.c);
}

// The output positions one element of a broadcast operand feeds along one
// dimension: just its own index, or all of y's when it was broadcast.
struct BroadcastRange {
  int32_t begin;
  int32_t end;
};
inline BroadcastRange Along(int32_t index, int32_t operand_size, int32_t output_size) {
  return operand_size == output_size ? BroadcastRange{index, index + 1} : BroadcastRange{0, output_size};
}

// tt_mul_grad_s8. Gather form: each element of grad_input sums grad_y * b
// over the outputs it fed, so nothing is accumulated in place.
template <typename S, typename Grad, typename Sink>
void MulGrad(const S& s, const Grad& grad, const int8_t* other, Sink&& sink) {
  const tt_dims& y = s.grad_output;
  const tt_dims& a = s.grad_input;
  const tt_dims& b = s.other;
  const auto index = [](const tt_dims& d, int32_t n, int32_t h, int32_t w, int32_t c) {
    return ((n * d.h + h) * d.w + w) * d.c + c;
  };
  for (int32_t an = 0; an < a.n; ++an) {
    for (int32_t ah = 0; ah < a.h; ++ah) {
      for (int32_t aw = 0; aw < a.w; ++aw) {
        for (int32_t ac = 0; ac < a.c; ++ac) {
          float sum = 0.0f;  // of grad_y * (b_q - zero point); b's scale is applied once
          const BroadcastRange rn = Along(an, a.n, y.n), rh = Along(ah, a.h, y.h);
          const BroadcastRange rw = Along(aw, a.w, y.w), rc = Along(ac, a.c, y.c);
          for (int32_t n = rn.begin; n < rn.end; ++n) {
            for (int32_t h = rh.begin; h < rh.end; ++h) {
              for (int32_t w = rw.begin; w < rw.end; ++w) {
                for (int32_t c = rc.begin; c < rc.end; ++c) {
                  const int8_t q = other[index(b, b.n == 1 ? 0 : n, b.h == 1 ? 0 : h, b.w == 1 ? 0 : w,
                                               b.c == 1 ? 0 : c)];
                  sum += grad[index(y, n, h, w, c)] * static_cast<float>(q - s.other_quant.zero_point);
                }
              }
            }
          }
          sink(sum * s.other_quant.scale);
        }
      }
    }
  }
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_MUL_MUL_GRAD_H_

/* Internal to the kernel core: the bodies of the pooling backward functions,
 * instantiated by the generic functions with shapes of run-time values and by
 * generated kernels (tinytrain_tflm/firmware/codegen.py) with structs whose members of
 * the same names and types are static constexpr. The bodies assume the
 * generic functions' checks passed. */
#ifndef TINYTRAIN_KERNELS_CORE_POOLING_POOL_GRAD_KERNELS_H_
#define TINYTRAIN_KERNELS_CORE_POOLING_POOL_GRAD_KERNELS_H_

#include <stdint.h>

#include "../tt_functions.h"
#include "pool_window.h"

namespace tinytrain_core {

// AVERAGE_POOL_2D and MAX_POOL_2D: grad_input is also the shape of the max pool's forward input.
struct PoolGradShape {
  tt_pool_params params;
  tt_dims grad_output;
  tt_dims grad_input;
};

// MEAN over height and width.
struct MeanGradShape {
  tt_dims grad_input;
};

// tt_avg_pool2d_grad.
template <typename S, typename Grad, typename Sink>
void AvgPoolGrad(const S& s, const Grad& grad, Sink&& sink) {
  // Each window's output is the mean of its in-bounds elements, so each of them
  // receives 1 / count of the window's gradient.
  const auto share = [](int32_t, int32_t, int32_t, Span rows, Span cols) {
    const float window_share = 1.0f / static_cast<float>(rows.size() * cols.size());
    return [window_share](int32_t) { return window_share; };
  };
  GatherPoolGrad(s.params, s.grad_output, grad, s.grad_input, sink, share);
}

// tt_max_pool2d_grad_s8.
template <typename S, typename Grad, typename Sink>
void MaxPoolGrad(const S& s, const Grad& grad, const int8_t* input, Sink&& sink) {
  const tt_dims& in = s.grad_input;
  // A window's gradient goes entirely to its first maximum in row-major order.
  // The argmax is recomputed rather than stored: no scratch memory, at the cost
  // of scanning each window once per element it contains.
  const auto routes_here = [&](int32_t n, int32_t iy, int32_t ix, Span rows, Span cols) {
    return [&, n, iy, ix, rows, cols](int32_t c) {
      int32_t best_y = rows.begin;
      int32_t best_x = cols.begin;
      int8_t best = input[((n * in.h + best_y) * in.w + best_x) * in.c + c];
      for (int32_t y = rows.begin; y < rows.end; ++y) {
        for (int32_t x = cols.begin; x < cols.end; ++x) {
          const int8_t value = input[((n * in.h + y) * in.w + x) * in.c + c];
          if (value > best) {  // Strictly greater: a tie keeps the first maximum.
            best = value;
            best_y = y;
            best_x = x;
          }
        }
      }
      return best_y == iy && best_x == ix ? 1.0f : 0.0f;
    };
  };
  GatherPoolGrad(s.params, s.grad_output, grad, in, sink, routes_here);
}

// tt_mean_grad.
template <typename S, typename Grad, typename Sink>
void MeanGrad(const S& s, const Grad& grad, Sink&& sink) {
  const tt_dims& in = s.grad_input;
  const float share = 1.0f / static_cast<float>(in.h * in.w);
  for (int32_t n = 0; n < in.n; ++n) {
    for (int32_t pixel = 0; pixel < in.h * in.w; ++pixel) {
      for (int32_t c = 0; c < in.c; ++c) sink(grad[n * in.c + c] * share);
    }
  }
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_POOLING_POOL_GRAD_KERNELS_H_

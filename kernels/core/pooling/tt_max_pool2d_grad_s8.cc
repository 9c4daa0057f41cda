#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "pool_window.h"

extern "C" tt_status tt_max_pool2d_grad_s8(const tt_pool_params* params, const tt_dims* grad_output_dims,
                                           const tt_grad_in* grad_output, const tt_dims* input_dims,
                                           const int8_t* input, tt_grad_out* grad_input) {
  if (!tinytrain_core::ValidPoolArgs(params, grad_output_dims, input_dims) || input == nullptr ||
      !tinytrain_core::ValidGradIn(grad_output) || !tinytrain_core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const tt_dims& in = *input_dims;
  // A window's gradient goes entirely to its first maximum in row-major order.
  // The argmax is recomputed rather than stored: no scratch memory, at the cost
  // of scanning each window once per element it contains.
  const auto routes_here = [&](int32_t n, int32_t iy, int32_t ix, int32_t c, tinytrain_core::Span rows,
                               tinytrain_core::Span cols) {
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
  tinytrain_core::WithGradReader(*grad_output, [&](auto grad) {
    tinytrain_core::WriteGrad(*grad_input, [&](auto sink) {
      tinytrain_core::GatherPoolGrad(*params, *grad_output_dims, grad, in, sink, routes_here);
    });
  });
  return TT_SUCCESS;
}

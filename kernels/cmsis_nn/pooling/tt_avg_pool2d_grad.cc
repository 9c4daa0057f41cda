// tt_avg_pool2d_grad for Cortex-M (the cmsis-nn kernel set of tinytrain_tflm.firmware.device): the
// reference's arithmetic, operation for operation.
//
// Bit-identical to kernels/core by construction. The reference gives input element (n, iy, ix, c) 0.0f
// plus, for each window containing it in window order, the window's share (1 / its in-bounds elements)
// times g[n, oy, ox, c]. Where windows do not overlap (stride >= filter on both axes: most pooling
// layers), an element lies in at most one window, so its value is 0.0f + share * g, the same for every
// element of the window. This version computes those values once per window row, as a row of floats
// on the stack, and hands them to the window's input rows, with no window search per element.
#include <stdint.h>

#include "../../core/common/grad_io.h"
#include "../../core/pooling/pool_grad_kernels.h"
#include "../../core/pooling/pool_window.h"
#include "../../core/tt_functions.h"

namespace core = tinytrain_core;

namespace {

// Floats of one window row's values on the stack (1 KB): wider rows take the reference's gather.
constexpr int32_t kRowValues = 256;

bool TakesDisjointWindows(const core::PoolGradShape& s) {
  return s.params.stride_h >= s.params.filter_h && s.params.stride_w >= s.params.filter_w &&
         s.grad_output.w * s.grad_output.c <= kRowValues;
}

// AvgPoolGrad's elements in its order, for windows that do not overlap.
template <typename Grad, typename Sink>
void DisjointWindowsAvgPoolGrad(const core::PoolGradShape& s, const Grad& grad, Sink& shared_sink) {
  Sink sink = shared_sink.LocalCopy();  // GradSink: its state in registers
  const tt_pool_params& p = s.params;
  const tt_dims& out = s.grad_output;
  const tt_dims& in = s.grad_input;
  float values[kRowValues];  // window (oy, ox)'s value of channel c at ox * channels + c
  for (int32_t n = 0; n < in.n; ++n) {
    int32_t values_of = -1;  // the window row `values` holds
    for (int32_t iy = 0; iy < in.h; ++iy) {
      const core::Span window_rows = core::WindowsContaining(iy, p.stride_h, p.pad_top, p.filter_h, out.h);
      const int32_t oy = window_rows.begin;
      if (window_rows.size() > 0 && oy != values_of) {
        const core::Span rows = core::WindowSpan(oy, p.stride_h, p.pad_top, p.filter_h, in.h);
        for (int32_t ox = 0; ox < out.w; ++ox) {
          const core::Span cols = core::WindowSpan(ox, p.stride_w, p.pad_left, p.filter_w, in.w);
          const float share = 1.0f / static_cast<float>(rows.size() * cols.size());
          const int32_t base = ((n * out.h + oy) * out.w + ox) * out.c;
          for (int32_t c = 0; c < out.c; ++c) values[ox * out.c + c] = 0.0f + share * grad[base + c];
        }
        values_of = oy;
      }
      for (int32_t ix = 0; ix < in.w; ++ix) {
        const core::Span window_cols = core::WindowsContaining(ix, p.stride_w, p.pad_left, p.filter_w, out.w);
        if (window_rows.size() == 0 || window_cols.size() == 0) {
          for (int32_t c = 0; c < in.c; ++c) sink(0.0f);
          continue;
        }
        const float* value = values + window_cols.begin * out.c;
        for (int32_t c = 0; c < in.c; ++c) sink(value[c]);
      }
    }
  }
  shared_sink.Resume(sink);
}

}  // namespace

extern "C" tt_status tt_avg_pool2d_grad(const tt_pool_params* params, const tt_dims* grad_output_dims,
                                        const tt_grad_in* grad_output, const tt_dims* grad_input_dims,
                                        tt_grad_out* grad_input) {
  if (!core::ValidPoolArgs(params, grad_output_dims, grad_input_dims) || !core::ValidGradIn(grad_output) ||
      !core::ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const core::PoolGradShape shape{*params, *grad_output_dims, *grad_input_dims};
  core::WithGrads(*grad_output, *grad_input, [&](auto grad, auto& sink) {
    if (TakesDisjointWindows(shape)) {
      DisjointWindowsAvgPoolGrad(shape, grad, sink);
    } else {
      core::AvgPoolGrad(shape, grad, sink);
    }
  });
  return TT_SUCCESS;
}

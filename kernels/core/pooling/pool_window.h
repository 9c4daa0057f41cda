/* Internal to the kernel core: TFLite pooling windows and the gather loop
 * shared by the average and max pooling backward passes. */
#ifndef TINYTRAIN_KERNELS_CORE_POOLING_POOL_WINDOW_H_
#define TINYTRAIN_KERNELS_CORE_POOLING_POOL_WINDOW_H_

#include <stdint.h>

#include "../tt_functions.h"

namespace tinytrain_core {

// Positions [begin, end) along one axis.
struct Span {
  int32_t begin;
  int32_t end;
  int32_t size() const { return end - begin; }
};

// The in-bounds input positions of window `o` along one axis: TFLite's window
// o * stride - pad .. + filter - 1, padding excluded.
inline Span WindowSpan(int32_t o, int32_t stride, int32_t pad, int32_t filter, int32_t input_size) {
  const int32_t start = o * stride - pad;
  return Span{start > 0 ? start : 0, start + filter < input_size ? start + filter : input_size};
}

// The windows along one axis whose span contains input position i:
// o * stride - pad <= i <= o * stride - pad + filter - 1, with 0 <= o < output_size.
inline Span WindowsContaining(int32_t i, int32_t stride, int32_t pad, int32_t filter, int32_t output_size) {
  const int32_t lowest = i + pad - filter + 1;  // o * stride >= lowest
  const int32_t first = lowest > 0 ? (lowest + stride - 1) / stride : 0;
  const int32_t last = (i + pad) / stride;  // i + pad >= 0, so this is a floor
  return Span{first, last < output_size ? last + 1 : output_size};
}

// Whether the geometry is one TFLite pooling can have and every window holds
// at least one input element (so an average never divides by zero).
inline bool ValidPoolArgs(const tt_pool_params* p, const tt_dims* out, const tt_dims* in) {
  if (p == nullptr || out == nullptr || in == nullptr) return false;
  if (p->filter_h < 1 || p->filter_w < 1 || p->stride_h < 1 || p->stride_w < 1) return false;
  if (p->pad_top < 0 || p->pad_left < 0) return false;
  if (in->n < 1 || in->h < 1 || in->w < 1 || in->c < 1 || out->h < 1 || out->w < 1) return false;
  if (out->n != in->n || out->c != in->c) return false;
  return p->pad_top < p->filter_h && (out->h - 1) * p->stride_h - p->pad_top < in->h && p->pad_left < p->filter_w &&
         (out->w - 1) * p->stride_w - p->pad_left < in->w;
}

// Channels gathered together: the window geometry and weight are worked out once per window for this
// many channels instead of once per element.
constexpr int32_t kPoolChannelBlock = 8;

// Gather form of a pooling backward. For every input element (n, iy, ix, c) in
// NHWC order it calls sink() with
//   sum over windows (oy, ox) containing (iy, ix) of
//     weight(n, iy, ix, rows, cols)(c) * grad_output[n, oy, ox, c]
// where rows and cols are the window's in-bounds spans: weight returns the window's
// weight per channel. Each channel's terms are added in window order.
template <typename Grad, typename Sink, typename Weight>
void GatherPoolGrad(const tt_pool_params& p, const tt_dims& out, const Grad& grad_output, const tt_dims& in,
                    Sink&& shared_sink, Weight&& weight) {
  auto sink = shared_sink.LocalCopy();  // GradSink: its state in registers
  for (int32_t n = 0; n < in.n; ++n) {
    for (int32_t iy = 0; iy < in.h; ++iy) {
      const Span window_rows = WindowsContaining(iy, p.stride_h, p.pad_top, p.filter_h, out.h);
      for (int32_t ix = 0; ix < in.w; ++ix) {
        const Span window_cols = WindowsContaining(ix, p.stride_w, p.pad_left, p.filter_w, out.w);
        for (int32_t first = 0; first < in.c; first += kPoolChannelBlock) {
          const int32_t block = in.c - first < kPoolChannelBlock ? in.c - first : kPoolChannelBlock;
          float sums[kPoolChannelBlock] = {};
          for (int32_t oy = window_rows.begin; oy < window_rows.end; ++oy) {
            const Span rows = WindowSpan(oy, p.stride_h, p.pad_top, p.filter_h, in.h);
            for (int32_t ox = window_cols.begin; ox < window_cols.end; ++ox) {
              const Span cols = WindowSpan(ox, p.stride_w, p.pad_left, p.filter_w, in.w);
              const auto channel_weight = weight(n, iy, ix, rows, cols);
              const int32_t base = ((n * out.h + oy) * out.w + ox) * out.c + first;
              for (int32_t k = 0; k < block; ++k) {
                sums[k] += channel_weight(first + k) * grad_output[base + k];
              }
            }
          }
          for (int32_t k = 0; k < block; ++k) sink(sums[k]);
        }
      }
    }
  }
  shared_sink.Resume(sink);
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_POOLING_POOL_WINDOW_H_

/* Internal to the kernel core: the index arithmetic and loop nests of the
 * convolution gradients, shared by the conv and depthwise conv functions (and,
 * through conv, by fully connected), plus their common argument checks. The
 * forward convolutions (conv_forward.h) use the same geometry.
 *
 * Sums of a float32 gradient are accumulated in float32 (an int8 gradient's
 * are integers: s8_grad_sums.h). An input-gradient element sums
 * kh * kw * cout terms (kh * kw * m for depthwise), a filter-gradient element
 * n * oh * ow terms; the rounding error grows at most linearly with the count
 * (count * 2^-24 relative to the sum of |terms|), far below the 1/254 step of
 * an int8 gradient for any layer an MCU holds. */
#ifndef TINYTRAIN_KERNELS_CORE_COMMON_CONV_GRAD_LOOPS_H_
#define TINYTRAIN_KERNELS_CORE_COMMON_CONV_GRAD_LOOPS_H_

#include <stdint.h>

#include "../tt_functions.h"

namespace tinytrain_core {

// Offset of element (n, h, w, c) in an NHWC tensor of shape `dims`.
inline int32_t Offset(const tt_dims& dims, int32_t n, int32_t h, int32_t w, int32_t c) {
  return ((n * dims.h + h) * dims.w + w) * dims.c + c;
}

// One spatial axis of a forward convolution: output position o with kernel tap
// k reads input position o * stride + k * dilation - pad; positions outside
// [0, in_size) are zero padding.
struct ConvAxis {
  int32_t in_size;
  int32_t out_size;
  int32_t kernel_size;
  int32_t stride;
  int32_t dilation;
  int32_t pad;

  // Calls f(k, o) for every tap k and output o reading input position i: the
  // forward gather run backwards, which the input gradient needs.
  template <typename F>
  void ForEachReaderOf(int32_t i, F&& f) const {
    for (int32_t k = 0; k < kernel_size; ++k) {
      const int32_t o_times_stride = i + pad - k * dilation;  // Decreases as k grows.
      if (o_times_stride < 0) break;
      if (o_times_stride % stride != 0) continue;
      const int32_t o = o_times_stride / stride;
      if (o < out_size) f(k, o);
    }
  }

  // Calls f(k, i) for every tap k of output o that reads an input position i
  // inside the input: the forward gather.
  template <typename F>
  void ForEachTapOf(int32_t o, F&& f) const {
    for (int32_t k = 0; k < kernel_size; ++k) {
      const int32_t i = o * stride + k * dilation - pad;
      if (i >= 0 && i < in_size) f(k, i);
    }
  }

  // Calls f(o, i) for every output o whose tap k reads an input position i
  // inside the input; taps reading padding contribute 0 to a filter gradient.
  template <typename F>
  void ForEachReadOfTap(int32_t k, F&& f) const {
    for (int32_t o = 0; o < out_size; ++o) {
      const int32_t i = o * stride + k * dilation - pad;
      if (i >= 0 && i < in_size) f(o, i);
    }
  }
};

struct ConvGeometry {
  ConvAxis rows;
  ConvAxis cols;
};

// input and output give the spatial sizes (h, w), kernel the tap counts (h, w).
inline ConvGeometry MakeConvGeometry(const tt_conv_grad_params& params, const tt_dims& input, const tt_dims& kernel,
                                     const tt_dims& output) {
  return ConvGeometry{
      ConvAxis{input.h, output.h, kernel.h, params.stride_h, params.dilation_h, params.pad_top},
      ConvAxis{input.w, output.w, kernel.w, params.stride_w, params.dilation_w, params.pad_left},
  };
}

// Writes an input gradient of shape `input` in order: element (n, iy, ix, c)
// is emit(the Sum of term(n, oy, ox, ky, kx, c) over every output (oy, ox) and
// tap (ky, kx) that read (iy, ix)), from Sum{0} in that order.
template <typename Sum, typename Emit, typename Term>
void GatherInputGradSums(const ConvGeometry& geometry, const tt_dims& input, Emit&& emit, Term&& term) {
  for (int32_t n = 0; n < input.n; ++n) {
    for (int32_t iy = 0; iy < input.h; ++iy) {
      for (int32_t ix = 0; ix < input.w; ++ix) {
        for (int32_t c = 0; c < input.c; ++c) {
          Sum sum = 0;
          geometry.rows.ForEachReaderOf(iy, [&](int32_t ky, int32_t oy) {
            geometry.cols.ForEachReaderOf(ix, [&](int32_t kx, int32_t ox) { sum += term(n, oy, ox, ky, kx, c); });
          });
          emit(sum);
        }
      }
    }
  }
}

// GatherInputGradSums of float32 terms, each sum going to sink as it is.
template <typename Sink, typename Term>
void GatherInputGrad(const ConvGeometry& geometry, const tt_dims& input, Sink&& sink, Term&& term) {
  GatherInputGradSums<float>(geometry, input, sink, term);
}

// Writes a filter gradient of shape `grad_filter` in order: element
// (f, ky, kx, c) is emit(the Sum of term(n, oy, ox, iy, ix, f, c) over every
// batch n and output (oy, ox) whose tap (ky, kx) reads (iy, ix) inside the
// input), from Sum{0} in that order. Terms use the centered input
// q - zero_point (exact) and the input's scale multiplies each sum once, not
// each term.
template <typename Sum, typename Emit, typename Term>
void GatherFilterGradSums(const ConvGeometry& geometry, int32_t batches, const tt_dims& grad_filter, Emit&& emit,
                          Term&& term) {
  for (int32_t f = 0; f < grad_filter.n; ++f) {
    for (int32_t ky = 0; ky < grad_filter.h; ++ky) {
      for (int32_t kx = 0; kx < grad_filter.w; ++kx) {
        for (int32_t c = 0; c < grad_filter.c; ++c) {
          Sum sum = 0;
          for (int32_t n = 0; n < batches; ++n) {
            geometry.rows.ForEachReadOfTap(ky, [&](int32_t oy, int32_t iy) {
              geometry.cols.ForEachReadOfTap(kx, [&](int32_t ox, int32_t ix) { sum += term(n, oy, ox, iy, ix, f, c); });
            });
          }
          emit(sum);
        }
      }
    }
  }
}

// GatherFilterGradSums of float32 terms: input_scale times each sum goes to sink.
template <typename Sink, typename Term>
void GatherFilterGrad(const ConvGeometry& geometry, int32_t batches, const tt_dims& grad_filter, float input_scale,
                      Sink&& sink, Term&& term) {
  GatherFilterGradSums<float>(geometry, batches, grad_filter, [&](float sum) { sink(input_scale * sum); }, term);
}

// Per-channel filter scales with per-tensor broadcast and no branch per
// element: a per-tensor filter steps through its one scale 0 at a time.
class FilterScales {
 public:
  explicit FilterScales(const tt_filter_quant_params& quant) : scale_(quant.scale), step_(quant.count == 1 ? 0 : 1) {}
  float operator[](int32_t channel) const { return scale_[channel * step_]; }

 private:
  const float* scale_;
  int32_t step_;
};

// A fully connected layer is a 1x1 convolution, stride 1, no padding, over
// [n, 1, 1, in]: its gradients are that convolution's.
constexpr tt_conv_grad_params kFullyConnectedAsConv = {1, 1, 1, 1, 0, 0};

// Argument checks the gradient functions share.

// A fully connected operand: n rows, c columns, h = w = 1.
inline bool IsMatrix(const tt_dims* dims) { return dims != nullptr && dims->h == 1 && dims->w == 1; }

inline bool ValidConvParams(const tt_conv_grad_params* params) {
  return params != nullptr && params->stride_h >= 1 && params->stride_w >= 1 && params->dilation_h >= 1 &&
         params->dilation_w >= 1 && params->pad_top >= 0 && params->pad_left >= 0;
}

inline bool ValidDims(const tt_dims* dims) {
  return dims != nullptr && dims->n >= 1 && dims->h >= 1 && dims->w >= 1 && dims->c >= 1;
}

inline bool ValidFilterQuant(const tt_filter_quant_params* quant, int32_t channels) {
  if (quant == nullptr || quant->scale == nullptr || (quant->count != 1 && quant->count != channels)) return false;
  for (int32_t c = 0; c < quant->count; ++c) {
    if (!(quant->scale[c] > 0.0f)) return false;
  }
  return true;
}

inline bool ValidInputQuant(const tt_quant_params* quant) { return quant != nullptr && quant->scale > 0.0f; }

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_COMMON_CONV_GRAD_LOOPS_H_

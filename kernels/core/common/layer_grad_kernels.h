/* Internal to the kernel core: the one body of each layer-gradient kernel
 * (conv, depthwise conv and, as a 1x1 conv, fully connected), instantiated
 * twice. The generic tt_*_s8 functions pass a LayerGradShape of run-time
 * values; a kernel generated for one model (tinytrain_tflm/firmware/codegen.py) passes
 * a struct whose members of the same names and types are static constexpr,
 * so the compiler folds every shape, stride and scale into the loops.
 *
 * A shape S has members params (tt_conv_grad_params, or
 * tt_depthwise_conv_grad_params for depthwise), quant (the filter's
 * tt_filter_quant_params for an input gradient, the forward input's
 * tt_quant_params for a filter gradient),
 * and the tt_dims grad_output, operand (filter or forward input) and result
 * (grad_input or grad_filter). The bodies assume the checks of the generic
 * functions passed. */
#ifndef TINYTRAIN_KERNELS_CORE_COMMON_LAYER_GRAD_KERNELS_H_
#define TINYTRAIN_KERNELS_CORE_COMMON_LAYER_GRAD_KERNELS_H_

#include <stdint.h>

#include "../tt_functions.h"
#include "conv_grad_loops.h"
#include "grad_io.h"
#include "s8_grad_sums.h"

namespace tinytrain_core {

// The run-time shape of the generic functions.
template <typename Params, typename Quant>
struct LayerGradShape {
  Params params;
  Quant quant;
  tt_dims grad_output;
  tt_dims operand;
  tt_dims result;
};

// The taps of a filter times its output channels: the most terms an input-gradient element sums.
template <typename S>
int32_t InputGradTerms(const S& s) {
  return s.operand.h * s.operand.w * s.grad_output.c;
}

// tt_conv2d_input_grad_s8: operand = filter [cout, kh, kw, cin], result = grad_input. An int8
// gradient's elements are integer sums of RescaledLevels times weights (s8_grad_sums.h).
template <typename S, typename Grad, typename Sink>
void Conv2dInputGrad(const S& s, const Grad& grad, const int8_t* filter, Sink&& sink) {
  const ConvGeometry geometry = MakeConvGeometry(s.params, s.result, s.operand, s.grad_output);
  const FilterScales scales(s.quant);
  if constexpr (ReadsS8<Grad>::value) {
    const RescaledLevels rescaled(scales, s.grad_output.c, InputGradTerms(s), grad.scale);
    GatherInputGradSums<int32_t>(
        geometry, s.result, [&](int32_t sum) { sink(rescaled.Value(sum)); },
        [&](int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, int32_t ci) {
          const int8_t* levels = grad.data + Offset(s.grad_output, n, oy, ox, 0);
          int32_t sum = 0;
          for (int32_t co = 0; co < s.grad_output.c; ++co) {
            sum += rescaled(levels[co], co) * filter[Offset(s.operand, co, ky, kx, ci)];
          }
          return sum;
        });
  } else {
    GatherInputGrad(geometry, s.result, sink, [&](int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, int32_t ci) {
      const int32_t grad_row = Offset(s.grad_output, n, oy, ox, 0);
      float sum = 0.0f;
      for (int32_t co = 0; co < s.grad_output.c; ++co) {
        const int8_t weight = filter[Offset(s.operand, co, ky, kx, ci)];
        sum += grad[grad_row + co] * scales[co] * static_cast<float>(weight);
      }
      return sum;
    });
  }
}

// tt_conv2d_input_grad_s8's argument checks, then body(shape, grad, filter, sink) with the gradients'
// representations fixed at compile time: the one entry of the reference function and of its
// optimized versions (kernels/cmsis_nn), which differ only in the body.
template <typename Body>
tt_status RunConv2dInputGrad(const tt_conv_grad_params* params, const tt_filter_quant_params* filter_quant,
                             const tt_dims* grad_output_dims, const tt_grad_in* grad_output, const tt_dims* filter_dims,
                             const int8_t* filter, const tt_dims* grad_input_dims, tt_grad_out* grad_input, Body&& body) {
  if (!ValidConvParams(params) || !ValidDims(grad_output_dims) || !ValidDims(filter_dims) || !ValidDims(grad_input_dims) ||
      filter == nullptr || !ValidGradIn(grad_output) || !ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const tt_dims& output_shape = *grad_output_dims;
  const tt_dims& filter_shape = *filter_dims;
  const tt_dims& input_shape = *grad_input_dims;
  if (input_shape.n != output_shape.n || filter_shape.n != output_shape.c || filter_shape.c != input_shape.c ||
      !ValidFilterQuant(filter_quant, output_shape.c)) {
    return TT_ARG_ERROR;
  }
  const LayerGradShape<tt_conv_grad_params, tt_filter_quant_params> shape{*params, *filter_quant, output_shape,
                                                                          filter_shape, input_shape};
  WithGrads(*grad_output, *grad_input, [&](auto grad, auto& sink) { body(shape, grad, filter, sink); });
  return TT_SUCCESS;
}

// The reads an element of a filter gradient sums: at most one per batch and output position.
template <typename S>
int64_t FilterGradTerms(const S& s) {
  return static_cast<int64_t>(s.grad_output.n) * s.grad_output.h * s.grad_output.w;
}

// The int8 filter gradients' sums: GatherFilterGradSums of product(n, oy, ox, iy, ix, f, c), an int32
// level times centered input, in the narrowest exact accumulator; each sum times both scales to sink.
template <typename S, typename Sink, typename Product>
void ExactFilterGradSums(const S& s, const ConvGeometry& geometry, const S8GradReader& grad, Sink&& sink,
                         Product&& product) {
  const float unit = grad.scale * s.quant.scale;
  WithExactAccumulator(FilterGradTerms(s), kLargestLevel * kLargestCentered, [&](auto zero) {
    using Sum = decltype(zero);
    GatherFilterGradSums<Sum>(
        geometry, s.grad_output.n, s.result, [&](Sum sum) { sink(SumToFloat(sum) * unit); },
        [&](auto... index) { return static_cast<Sum>(product(index...)); });
  });
}

// tt_conv2d_filter_grad_s8: operand = forward input [n, ih, iw, cin], result = grad_filter. An int8
// gradient's elements are exact integer sums of levels times centered inputs, times both scales.
template <typename S, typename Grad, typename Sink>
void Conv2dFilterGrad(const S& s, const Grad& grad, const int8_t* input, Sink&& sink) {
  const ConvGeometry geometry = MakeConvGeometry(s.params, s.operand, s.result, s.grad_output);
  const int32_t zero_point = s.quant.zero_point;
  if constexpr (ReadsS8<Grad>::value) {
    ExactFilterGradSums(s, geometry, grad, sink,
                        [&](int32_t n, int32_t oy, int32_t ox, int32_t iy, int32_t ix, int32_t co, int32_t ci) {
                          const int32_t centered_input = input[Offset(s.operand, n, iy, ix, ci)] - zero_point;
                          return grad.data[Offset(s.grad_output, n, oy, ox, co)] * centered_input;
                        });
  } else {
    GatherFilterGrad(geometry, s.grad_output.n, s.result, s.quant.scale, sink,
                     [&](int32_t n, int32_t oy, int32_t ox, int32_t iy, int32_t ix, int32_t co, int32_t ci) {
                       const int32_t centered_input = input[Offset(s.operand, n, iy, ix, ci)] - zero_point;
                       return grad[Offset(s.grad_output, n, oy, ox, co)] * static_cast<float>(centered_input);
                     });
  }
}

// Whether output pixel p reads input pixel p alone, through the filter's only tap (a filter gradient's
// shape: operand = forward input).
template <typename S>
bool IsPointwiseFilterGrad(const S& s) {
  return s.result.h == 1 && s.result.w == 1 && s.params.stride_h == 1 && s.params.stride_w == 1 &&
         s.params.pad_top == 0 && s.params.pad_left == 0 && s.grad_output.h == s.operand.h &&
         s.grad_output.w == s.operand.w;
}

// The known_max_abs (grad_io.h) of Conv2dFilterGrad's int8 gradient. A pointwise layer over one pixel
// (a fully connected one at batch 1) has one product per element, level[f] * (x[c] - zero point): every
// pair of a level and an input is an element, so max|g| is the largest level (of the updated filters)
// times the largest centered input, times both scales, as the kernel's sink finds it (products of
// magnitude below 2^24 convert to float exactly). Then a step needs one pass whatever the history
// predicts. Unknown for any other shape, and for float32 gradients.
template <typename S>
float Conv2dFilterGradMaxAbs(const S& s, const tt_grad_in& grad, const int8_t* input) {
  if (grad.type != TT_GRAD_S8 || s.grad_output.n * s.grad_output.h * s.grad_output.w != 1 ||
      !IsPointwiseFilterGrad(s)) {
    return kUnknownMaxAbs;
  }
  int32_t highest = input[0];
  int32_t lowest = input[0];
  for (int32_t c = 1; c < s.result.c; ++c) {
    highest = input[c] > highest ? input[c] : highest;
    lowest = input[c] < lowest ? input[c] : lowest;
  }
  const int32_t zero_point = s.quant.zero_point;
  const int32_t top_centered = highest - zero_point > zero_point - lowest ? highest - zero_point : zero_point - lowest;
  const int32_t top_level = tt_grad_top_level(s.result.n, static_cast<const int8_t*>(grad.data));
  return static_cast<float>(top_level * top_centered) * (grad.scale * s.quant.scale);
}

// tt_conv2d_filter_grad_s8's argument checks, then body(shape, grad, input, sink), as RunConv2dInputGrad.
template <typename Body>
tt_status RunConv2dFilterGrad(const tt_conv_grad_params* params, const tt_quant_params* input_quant,
                              const tt_dims* grad_output_dims, const tt_grad_in* grad_output, const tt_dims* input_dims,
                              const int8_t* input, const tt_dims* grad_filter_dims, tt_grad_out* grad_filter,
                              Body&& body) {
  if (!ValidConvParams(params) || !ValidInputQuant(input_quant) || !ValidDims(grad_output_dims) ||
      !ValidDims(input_dims) || !ValidDims(grad_filter_dims) || input == nullptr || !ValidGradIn(grad_output) ||
      !ValidGradOut(grad_filter)) {
    return TT_ARG_ERROR;
  }
  const tt_dims& output_shape = *grad_output_dims;
  const tt_dims& input_shape = *input_dims;
  const tt_dims& grad_filter_shape = *grad_filter_dims;
  if (input_shape.n != output_shape.n || grad_filter_shape.n > output_shape.c || grad_filter_shape.c != input_shape.c) {
    return TT_ARG_ERROR;
  }
  const LayerGradShape<tt_conv_grad_params, tt_quant_params> shape{*params, *input_quant, output_shape, input_shape,
                                                                   grad_filter_shape};
  WithGrads(*grad_output, *grad_filter, [&](auto grad, auto& sink) { body(shape, grad, input, sink); },
            Conv2dFilterGradMaxAbs(shape, *grad_output, input));
  return TT_SUCCESS;
}

// tt_depthwise_conv2d_input_grad_s8: operand = filter [1, kh, kw, cin * m], result = grad_input. With
// an int8 gradient and m = 1, channel c's one scale leaves the sum: an element is the exact integer
// sum of levels times weights, times the gradient's and the channel's scales. With m > 1 the m
// channels' scales stay inside it, summed in float32.
template <typename S, typename Grad, typename Sink>
void DepthwiseConv2dInputGrad(const S& s, const Grad& grad, const int8_t* filter, Sink&& sink) {
  const int32_t multiplier = s.params.depth_multiplier;
  const ConvGeometry geometry = MakeConvGeometry(s.params.conv, s.result, s.operand, s.grad_output);
  const FilterScales scales(s.quant);
  if constexpr (ReadsS8<Grad>::value) {
    if (multiplier == 1) {
      int32_t next = 0;  // The element emitted next; its channel is next % cin.
      GatherInputGradSums<int32_t>(
          geometry, s.result,
          [&](int32_t sum) { sink(static_cast<float>(sum) * (grad.scale * scales[next++ % s.result.c])); },
          [&](int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, int32_t c) {
            return grad.data[Offset(s.grad_output, n, oy, ox, c)] * filter[Offset(s.operand, 0, ky, kx, c)];
          });
      return;
    }
  }
  GatherInputGrad(geometry, s.result, sink, [&](int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, int32_t ci) {
    const int32_t grad_row = Offset(s.grad_output, n, oy, ox, 0);
    const int32_t filter_tap = Offset(s.operand, 0, ky, kx, 0);
    float sum = 0.0f;
    // The output channels computed from input channel ci.
    for (int32_t oc = ci * multiplier; oc < (ci + 1) * multiplier; ++oc) {
      sum += grad[grad_row + oc] * scales[oc] * static_cast<float>(filter[filter_tap + oc]);
    }
    return sum;
  });
}

// tt_depthwise_conv2d_input_grad_s8's argument checks, then body(shape, grad, filter, sink), as
// RunConv2dInputGrad.
template <typename Body>
tt_status RunDepthwiseConv2dInputGrad(const tt_depthwise_conv_grad_params* params,
                                      const tt_filter_quant_params* filter_quant, const tt_dims* grad_output_dims,
                                      const tt_grad_in* grad_output, const tt_dims* filter_dims, const int8_t* filter,
                                      const tt_dims* grad_input_dims, tt_grad_out* grad_input, Body&& body) {
  if (params == nullptr || !ValidConvParams(&params->conv) || params->depth_multiplier < 1 ||
      !ValidDims(grad_output_dims) || !ValidDims(filter_dims) || !ValidDims(grad_input_dims) || filter == nullptr ||
      !ValidGradIn(grad_output) || !ValidGradOut(grad_input)) {
    return TT_ARG_ERROR;
  }
  const int32_t multiplier = params->depth_multiplier;
  const tt_dims& output_shape = *grad_output_dims;
  const tt_dims& filter_shape = *filter_dims;
  const tt_dims& input_shape = *grad_input_dims;
  // Division, not input channels * multiplier, so no argument can overflow.
  if (input_shape.n != output_shape.n || filter_shape.n != 1 || filter_shape.c != output_shape.c ||
      output_shape.c % multiplier != 0 || output_shape.c / multiplier != input_shape.c ||
      !ValidFilterQuant(filter_quant, output_shape.c)) {
    return TT_ARG_ERROR;
  }
  const LayerGradShape<tt_depthwise_conv_grad_params, tt_filter_quant_params> shape{*params, *filter_quant, output_shape,
                                                                                    filter_shape, input_shape};
  WithGrads(*grad_output, *grad_input, [&](auto grad, auto& sink) { body(shape, grad, filter, sink); });
  return TT_SUCCESS;
}

// tt_depthwise_conv2d_filter_grad_s8: operand = forward input [n, ih, iw, cin], result = grad_filter.
// An int8 gradient's elements are exact integer sums, as in Conv2dFilterGrad.
template <typename S, typename Grad, typename Sink>
void DepthwiseConv2dFilterGrad(const S& s, const Grad& grad, const int8_t* input, Sink&& sink) {
  const int32_t multiplier = s.params.depth_multiplier;
  const ConvGeometry geometry = MakeConvGeometry(s.params.conv, s.operand, s.result, s.grad_output);
  const int32_t zero_point = s.quant.zero_point;
  if constexpr (ReadsS8<Grad>::value) {
    ExactFilterGradSums(
        s, geometry, grad, sink,
        [&](int32_t n, int32_t oy, int32_t ox, int32_t iy, int32_t ix, int32_t /*filter_row, always 0*/, int32_t oc) {
          const int32_t centered_input = input[Offset(s.operand, n, iy, ix, oc / multiplier)] - zero_point;
          return grad.data[Offset(s.grad_output, n, oy, ox, oc)] * centered_input;
        });
  } else {
    GatherFilterGrad(
        geometry, s.grad_output.n, s.result, s.quant.scale, sink,
        [&](int32_t n, int32_t oy, int32_t ox, int32_t iy, int32_t ix, int32_t /*filter_row, always 0*/, int32_t oc) {
          const int32_t centered_input = input[Offset(s.operand, n, iy, ix, oc / multiplier)] - zero_point;
          return grad[Offset(s.grad_output, n, oy, ox, oc)] * static_cast<float>(centered_input);
        });
  }
}

// tt_depthwise_conv2d_filter_grad_s8's argument checks, then body(shape, grad, input, sink), as
// RunConv2dInputGrad.
template <typename Body>
tt_status RunDepthwiseConv2dFilterGrad(const tt_depthwise_conv_grad_params* params, const tt_quant_params* input_quant,
                                       const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                       const tt_dims* input_dims, const int8_t* input, const tt_dims* grad_filter_dims,
                                       tt_grad_out* grad_filter, Body&& body) {
  if (params == nullptr || !ValidConvParams(&params->conv) || params->depth_multiplier < 1 ||
      !ValidInputQuant(input_quant) || !ValidDims(grad_output_dims) || !ValidDims(input_dims) ||
      !ValidDims(grad_filter_dims) || input == nullptr || !ValidGradIn(grad_output) || !ValidGradOut(grad_filter)) {
    return TT_ARG_ERROR;
  }
  const int32_t multiplier = params->depth_multiplier;
  const tt_dims& output_shape = *grad_output_dims;
  const tt_dims& input_shape = *input_dims;
  const tt_dims& grad_filter_shape = *grad_filter_dims;
  // Division, not input channels * multiplier, so no argument can overflow.
  if (input_shape.n != output_shape.n || grad_filter_shape.n != 1 || grad_filter_shape.c > output_shape.c ||
      output_shape.c % multiplier != 0 || output_shape.c / multiplier != input_shape.c) {
    return TT_ARG_ERROR;
  }
  const LayerGradShape<tt_depthwise_conv_grad_params, tt_quant_params> shape{*params, *input_quant, output_shape,
                                                                             input_shape, grad_filter_shape};
  WithGrads(*grad_output, *grad_filter, [&](auto grad, auto& sink) { body(shape, grad, input, sink); });
  return TT_SUCCESS;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_COMMON_LAYER_GRAD_KERNELS_H_

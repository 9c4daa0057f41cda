// tt_depthwise_conv2d_filter_grad_s8 for Cortex-M (the cmsis-nn kernel set of
// tinytrain_tflm.firmware.device): the reference's arithmetic, operation for operation.
//
// Bit-identical to kernels/core by construction. The reference sums, per filter-gradient element
// (ky, kx, oc), g[n, oy, ox, oc] * (x[n, iy, ix, oc / multiplier] - zero point) over the reads of
// tap (ky, kx) in (n, oy, ox) order from 0.0f, then multiplies by the input scale; an int8
// gradient's levels are summed so in int32, exactly, then times both scales. This version
// adds the same products in the same order for a block of output channels at once: a read's
// geometry is worked out once for the block, and with multiplier 1 (MobileNets) the block's
// gradients and inputs are contiguous runs. With multiplier 1 and an int8 gradient, four channels'
// levels and inputs are read as one word each and multiplied by halfword MACs, along a row's run of
// reads with no per-read callback; a stride-1 layer whose channel fits a plane (common/channel_planes.h)
// sums a channel's taps from its planes with dual MACs.
#include <stdint.h>
#include <string.h>

#include "../../core/common/conv_grad_loops.h"
#include "../../core/common/layer_grad_kernels.h"
#include "../../core/tt_functions.h"
#include "../common/channel_blocks.h"
#include "../common/channel_planes.h"
#include "../common/halfword_macs.h"

namespace core = tinytrain_core;
namespace cm = tinytrain_cmsis_nn;

namespace {

// Multiplier 1, int8 gradient: filter element (ky, kx, c) is the exact int32 sum of
// level[n, oy, ox, c] * (x[n, iy, ix, c] - zero point) over tap (ky, kx)'s reads inside the input,
// times grad scale * input scale. Per tap, a block of four channels at a time (then single
// channels), each row's run of reads walked with two pointers. The caller checked that the sums fit
// int32.
template <typename S, typename Sink>
void DepthwiseConv2dFilterGradS8Multiplier1(const S& s, const core::S8GradReader& grad, const int8_t* input,
                                            Sink& sink) {
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params.conv, s.operand, s.result, s.grad_output);
  const tt_dims& out = s.grad_output;
  const tt_dims& in = s.operand;
  const int32_t zero_point = s.quant.zero_point;
  const float unit = grad.scale * s.quant.scale;
  const int32_t input_step = geometry.cols.stride * in.c;  // from one read of a row to the next
  for (int32_t ky = 0; ky < s.result.h; ++ky) {
    for (int32_t kx = 0; kx < s.result.w; ++kx) {
      // body(levels, inputs, count) for every row of the tap's reads, from channel c on.
      const auto for_each_row = [&](int32_t c, auto&& body) {
        cm::ForEachTapReadRow(geometry, out, in, ky, kx, [&](int32_t grad_offset, int32_t input_offset, int32_t count) {
          body(grad.data + grad_offset + c, input + input_offset + c, count);
        });
      };
      int32_t c = 0;
      for (; c + 4 <= s.result.c; c += 4) {
        int32_t sums[4] = {0, 0, 0, 0};
        for_each_row(c, [&](const int8_t* levels, const int8_t* x, int32_t count) {
          cm::AddFourLevelReads<cm::RowInputs::kPerChannel>(levels, out.c, x, input_step, count, zero_point,
                                                            sums);
        });
        for (const int32_t sum : sums) sink(static_cast<float>(sum) * unit);
      }
      for (; c < s.result.c; ++c) {
        int32_t sum = 0;
        for_each_row(c, [&](const int8_t* levels, const int8_t* x, int32_t count) {
          for (int32_t i = 0; i < count; ++i, levels += out.c, x += input_step) sum += *levels * (*x - zero_point);
        });
        sink(static_cast<float>(sum) * unit);
      }
    }
  }
}

// The most taps a filter the plane path takes has (7x7): their sums are on the stack.
constexpr int32_t kMostPlaneTaps = 49;

#if defined(ARM_MATH_MVEI)
// Halfwords per Helium vector.
constexpr int32_t kHalfwordLanes = 8;

// sums[k] += the sum over i < 2 * pairs of a[i] * b[i + k], for k < kTaps: per 8 halfwords of a, one
// vector load, then per tap one of b and a VMLADAVA adding the 8 products to its sum; a last partial
// block with its lanes predicated (off lanes load 0 and read nothing), once rather than in the loop, where
// each predicated load costs a VPST and the predicate's conversion more. Not inlined, as the DSP version.
template <int32_t kTaps>
__attribute__((noinline)) void AddShiftedDots(const int16_t* a, const int16_t* b, int32_t pairs, int32_t* sums) {
  int32_t acc[kTaps];
#pragma GCC unroll 8
  for (int32_t k = 0; k < kTaps; ++k) acc[k] = sums[k];
  const int32_t count = 2 * pairs;
  const int16_t* const end = a + count / kHalfwordLanes * kHalfwordLanes;
  for (; a != end; a += kHalfwordLanes, b += kHalfwordLanes) {
    const int16x8_t as = vldrhq_s16(a);
#pragma GCC unroll 8
    for (int32_t k = 0; k < kTaps; ++k) acc[k] = vmladavaq_s16(acc[k], as, vldrhq_s16(b + k));
  }
  if (count % kHalfwordLanes != 0) {
    const mve_pred16_t lanes = vctp16q(static_cast<uint32_t>(count % kHalfwordLanes));
    const int16x8_t as = vldrhq_z_s16(a, lanes);
#pragma GCC unroll 8
    for (int32_t k = 0; k < kTaps; ++k) acc[k] = vmladavaq_s16(acc[k], as, vldrhq_z_s16(b + k, lanes));
  }
#pragma GCC unroll 8
  for (int32_t k = 0; k < kTaps; ++k) sums[k] = acc[k];
}
#else
// sums[k] += the sum over i < 2 * pairs of a[i] * b[i + k], for k < kTaps: per pair of a, one word
// load, then per tap one word of b and an SMLAD adding both products. Not inlined: alone, its sums and
// pointers fit the registers.
template <int32_t kTaps>
__attribute__((noinline)) void AddShiftedDots(const int16_t* a, const int16_t* b, int32_t pairs, int32_t* sums) {
  int32_t acc[kTaps];
#pragma GCC unroll 8
  for (int32_t k = 0; k < kTaps; ++k) acc[k] = sums[k];
  const int16_t* const end = a + 2 * pairs;
  for (; a != end; a += 2, b += 2) {
    const uint32_t pair = cm::HalfwordPair(a);
#pragma GCC unroll 8
    for (int32_t k = 0; k < kTaps; ++k) acc[k] = __smlad(pair, cm::HalfwordPair(b + k), acc[k]);
  }
#pragma GCC unroll 8
  for (int32_t k = 0; k < kTaps; ++k) sums[k] = acc[k];
}
#endif

// The geometry of PlanesS8DepthwiseFilterGrad: a level plane of the output's rows, each `width`
// halfwords (the output's columns, then zeros), and an input plane of the rows and columns its taps
// read (the padding as zeros), with the same row width, so that tap (ky, kx) of the level at plane
// index i reads the input plane at i + ky * width + kx, and a row's reads run on into the next row's
// zeros. Then one sum per tap is a dot product of the two planes, shifted, over the whole image.
struct FilterGradPlanes {
  int32_t width;         // even, at least the output's width plus kw - 1
  int32_t level_count;   // output rows * width
  int32_t input_count;   // (output rows + kh - 1) * width, plus kw for the last tap's overreach
};

template <typename S>
FilterGradPlanes MakeFilterGradPlanes(const S& s) {
  const int32_t width = cm::PlaneWidth(s.grad_output.w + s.result.w - 1);
  return {width, s.grad_output.h * width, (s.grad_output.h + s.result.h - 1) * width + s.result.w};
}

// Whether PlanesS8DepthwiseFilterGrad takes the layer: stride 1, no dilation, multiplier 1, and planes
// and tap sums that fit the stack.
template <typename S>
bool TakesFilterGradPlanes(const S& s) {
  const tt_conv_grad_params& conv = s.params.conv;
  const FilterGradPlanes planes = MakeFilterGradPlanes(s);
  return conv.stride_h == 1 && conv.stride_w == 1 && conv.dilation_h == 1 && conv.dilation_w == 1 &&
         s.params.depth_multiplier == 1 && s.result.h * s.result.w <= kMostPlaneTaps &&
         planes.level_count <= cm::kPlaneHalfwords && planes.input_count <= cm::kPlaneHalfwords;
}

// Multiplier 1, stride 1, int8 gradient: DepthwiseConv2dFilterGradS8Multiplier1's exact sums, a
// channel at a time from its planes (FilterGradPlanes), each element stored at its index. A 3-wide
// filter's row of taps shares each word of levels (AddShiftedDots<3>).
template <typename S, typename Sink>
void PlanesS8DepthwiseFilterGrad(const S& s, const core::S8GradReader& grad, const int8_t* input, Sink& shared_sink) {
  Sink sink = shared_sink.LocalCopy();  // GradSink: its state in registers
  const FilterGradPlanes planes = MakeFilterGradPlanes(s);
  const tt_dims& out = s.grad_output;
  const int32_t kernel_h = s.result.h, kernel_w = s.result.w, taps = kernel_h * kernel_w;
  const int32_t pairs = planes.level_count / 2;
  const float unit = grad.scale * s.quant.scale;
  int16_t levels[cm::kPlaneHalfwords], inputs[cm::kPlaneHalfwords];
  // The borders stay zero: every channel writes the same interior.
  memset(levels, 0, sizeof(int16_t) * planes.level_count);
  memset(inputs, 0, sizeof(int16_t) * planes.input_count);
  for (int32_t c = 0; c < s.result.c; ++c) {
    int32_t sums[kMostPlaneTaps];
    for (int32_t t = 0; t < taps; ++t) sums[t] = 0;
    for (int32_t n = 0; n < out.n; ++n) {
      cm::FillChannelPlane(grad.data, out, n, c, 0, levels, out.h, planes.width, 0, 0);
      cm::FillChannelPlane(input, s.operand, n, c, s.quant.zero_point, inputs, out.h + kernel_h - 1, planes.width,
                           s.params.conv.pad_top, s.params.conv.pad_left);
      for (int32_t ky = 0; ky < kernel_h; ++ky) {
        const int16_t* row = inputs + ky * planes.width;
        int32_t* row_sums = sums + ky * kernel_w;
        if (kernel_w == 3) {
          AddShiftedDots<3>(levels, row, pairs, row_sums);
        } else {
          for (int32_t kx = 0; kx < kernel_w; ++kx) AddShiftedDots<1>(levels, row + kx, pairs, row_sums + kx);
        }
      }
    }
    for (int32_t t = 0; t < taps; ++t) sink.Put(t * s.result.c + c, static_cast<float>(sums[t]) * unit);
  }
  shared_sink.Resume(sink);
}

// core::DepthwiseConv2dFilterGrad's elements, in its order, a block of output channels at a time.
// kMultiplier is the depth multiplier when known at compile time (1), else 0: read it from s.
template <int32_t kMultiplier, typename S, typename Grad, typename Sink>
void BlockedDepthwiseConv2dFilterGrad(const S& s, const Grad& grad, const int8_t* input, Sink& sink) {
  const int32_t multiplier = kMultiplier != 0 ? kMultiplier : s.params.depth_multiplier;
  const int32_t zero_point = s.quant.zero_point;
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params.conv, s.operand, s.result, s.grad_output);
  if constexpr (core::ReadsS8<Grad>::value) {
    // Exact int32 sums, as in tt_conv2d_filter_grad_s8's version.
    if (core::FilterGradTerms(s) * core::kLargestLevel * core::kLargestCentered > INT32_MAX) {
      core::DepthwiseConv2dFilterGrad(s, grad, input, sink);
      return;
    }
    if (kMultiplier == 1 && TakesFilterGradPlanes(s)) {
      PlanesS8DepthwiseFilterGrad(s, grad, input, sink);
      return;
    }
    if (kMultiplier == 1) {
      DepthwiseConv2dFilterGradS8Multiplier1(s, grad, input, sink);
      return;
    }
    const float unit = grad.scale * s.quant.scale;
    cm::GatherFilterGradBlockSums<int32_t>(
        geometry, s.grad_output.n, s.result, [&](int32_t sum) { sink(static_cast<float>(sum) * unit); },
        [&](auto width, int32_t c0, int32_t /*filter row, always 0*/, int32_t n, int32_t oy, int32_t ox, int32_t iy,
            int32_t ix, int32_t* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const int8_t* levels = grad.data + core::Offset(s.grad_output, n, oy, ox, 0);
          const int8_t* x = input + core::Offset(s.operand, n, iy, ix, 0);
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) {
            const int32_t oc = c0 + j;
            sum[j] += levels[oc] * (x[oc / multiplier] - zero_point);
          }
        });
  } else {
    cm::GatherFilterGradBlocks(
        geometry, s.grad_output.n, s.result, s.quant.scale, sink,
        [&](auto width, int32_t c0, int32_t /*filter row, always 0*/, int32_t n, int32_t oy, int32_t ox, int32_t iy,
            int32_t ix, float* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const int32_t grad_row = core::Offset(s.grad_output, n, oy, ox, 0);
          const int8_t* x = input + core::Offset(s.operand, n, iy, ix, 0);
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) {
            const int32_t oc = c0 + j;
            sum[j] += grad[grad_row + oc] * static_cast<float>(x[oc / multiplier] - zero_point);
          }
        });
  }
}

}  // namespace

extern "C" tt_status tt_depthwise_conv2d_filter_grad_s8(const tt_depthwise_conv_grad_params* params,
                                                        const tt_quant_params* input_quant,
                                                        const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                        const tt_dims* input_dims, const int8_t* input,
                                                        const tt_dims* grad_filter_dims, tt_grad_out* grad_filter) {
  return core::RunDepthwiseConv2dFilterGrad(
      params, input_quant, grad_output_dims, grad_output, input_dims, input, grad_filter_dims, grad_filter,
      [](const auto& shape, const auto& grad, const int8_t* inputs, auto& sink) {
        if (shape.params.depth_multiplier == 1) {
          BlockedDepthwiseConv2dFilterGrad<1>(shape, grad, inputs, sink);
        } else {
          BlockedDepthwiseConv2dFilterGrad<0>(shape, grad, inputs, sink);
        }
      });
}

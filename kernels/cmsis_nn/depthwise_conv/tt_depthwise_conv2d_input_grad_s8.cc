// tt_depthwise_conv2d_input_grad_s8 for Cortex-M (the cmsis-nn kernel set of
// tinytrain_tflm.firmware.device): the reference's arithmetic, operation for operation.
//
// Bit-identical to kernels/core by construction. The reference sums, per input-gradient element
// (n, iy, ix, ci), one inner sum per reading tap in tap order, each inner sum adding
// (g[oc] * scale[oc]) * w[oc] over the channel's multiplier output channels oc from 0.0f. An int8
// gradient with multiplier 1 sums levels times weights in int32 instead, exactly, then multiplies
// by the gradient's and the channel's scales. This
// version adds the same products in the same order for a block of input channels at once: the
// tap's geometry is worked out once for the block, and with multiplier 1 (MobileNets) the block's
// gradients, scales and weights are contiguous runs. An int8 gradient with multiplier 1 lists each
// input pixel's reading taps once, then sums every channel over that list with halfword MACs; a
// stride-1 layer with a 3x3 or 5x5 filter whose channel fits a plane (common/channel_planes.h) sums a
// channel's taps from its level plane with dual MACs instead.
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "../../core/common/conv_grad_loops.h"
#include "../../core/common/layer_grad_kernels.h"
#include "../../core/tt_functions.h"
#include "../common/channel_blocks.h"
#include "../common/channel_planes.h"
#include "../common/halfword_macs.h"

namespace core = tinytrain_core;
namespace cm = tinytrain_cmsis_nn;

namespace {

// A tap reading one input pixel: its output pixel's gradient levels and its filter tap's weights,
// both at channel 0 (NHWC, so channel c is at + c in each).
struct ReaderTap {
  const int8_t* levels;
  const int8_t* weights;
};

// An input pixel's reading taps, rows and columns are listed on the stack for kernels of at most
// kMaxKernelSide x kMaxKernelSide (280 bytes); larger kernels take the per-tap gather.
constexpr int32_t kMaxKernelSide = 5;

// A reader along one axis: its offsets (NHWC, channel 0) in the gradient and in the filter.
struct AxisReader {
  int32_t grad;
  int32_t filter;
};

#if defined(ARM_MATH_MVEI)
// sums[j] = the sum over taps [tap, end) of levels[c + j] * weights[c + j], j < 4, on Helium: per tap a
// VLDRB of the four levels and one of the four weights, widened to int32, a VMUL and a VADD. Not
// inlined, as the DSP version.
__attribute__((noinline)) void SumFourChannelTaps(const ReaderTap* tap, const ReaderTap* end, int32_t c,
                                                  int32_t* sums) {
  int32x4_t four = vdupq_n_s32(0);
  for (; tap != end; ++tap) four = vaddq_s32(four, vmulq_s32(vldrbq_s32(tap->levels + c), vldrbq_s32(tap->weights + c)));
  vstrwq_s32(sums, four);
}
#else
// sums[j] = the sum over taps [tap, end) of levels[c + j] * weights[c + j], j < 4: one word of four
// levels and one of four weights per tap, SXTB16 splitting each into channels 0, 2 and 1, 3 as
// 16-bit halves, and one halfword MAC per channel. Not inlined, like AddFourLevelReads: in a function
// of its own the loop's values fit the registers.
__attribute__((noinline)) void SumFourChannelTaps(const ReaderTap* tap, const ReaderTap* end, int32_t c,
                                                  int32_t* sums) {
  cm::FourSums four{0, 0, 0, 0};
  for (; tap != end; ++tap) {
    uint32_t level_word, weight_word;
    memcpy(&level_word, tap->levels + c, 4);
    memcpy(&weight_word, tap->weights + c, 4);
    four.AddProducts(cm::EvenBytes(level_word), cm::OddBytes(level_word), cm::EvenBytes(weight_word),
                     cm::OddBytes(weight_word));
  }
  four.Store(sums);
}
#endif

// The int8 input gradient with multiplier 1 and a kernel of at most kMaxKernelSide a side, element
// by element in the reference's order: per input pixel the reading taps' pointers are listed once
// for all channels, from the reading rows (once per input row) and columns, then each
// channel's exact int32 sum over them is scaled as the reference scales it.
template <typename S, typename Sink>
void ListedTapsS8DepthwiseInputGrad(const S& s, const core::S8GradReader& grad, const int8_t* filter,
                                    Sink& shared_sink) {
  Sink sink = shared_sink.LocalCopy();  // GradSink: its state in registers
  const core::FilterScales scales(s.quant);
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params.conv, s.result, s.operand, s.grad_output);
  const int32_t channels = s.result.c;
  const auto emit = [&](int32_t c, int32_t sum) { sink(static_cast<float>(sum) * (grad.scale * scales[c])); };
  const int32_t filter_row = s.operand.w * channels;
  AxisReader rows[kMaxKernelSide], cols[kMaxKernelSide];
  ReaderTap taps[kMaxKernelSide * kMaxKernelSide];
  for (int32_t n = 0; n < s.result.n; ++n) {
    for (int32_t iy = 0; iy < s.result.h; ++iy) {
      AxisReader* rows_end = rows;
      geometry.rows.ForEachReaderOf(iy, [&](int32_t ky, int32_t oy) {
        *rows_end++ = {core::Offset(s.grad_output, n, oy, 0, 0), ky * filter_row};
      });
      for (int32_t ix = 0; ix < s.result.w; ++ix) {
        AxisReader* cols_end = cols;
        geometry.cols.ForEachReaderOf(ix, [&](int32_t kx, int32_t ox) { *cols_end++ = {ox * channels, kx * channels}; });
        ReaderTap* end = taps;
        for (const AxisReader* row = rows; row != rows_end; ++row) {
          for (const AxisReader* col = cols; col != cols_end; ++col) {
            *end++ = {grad.data + row->grad + col->grad, filter + row->filter + col->filter};
          }
        }
        int32_t c = 0;
        for (; c + 4 <= channels; c += 4) {
          int32_t sums[4];
          SumFourChannelTaps(taps, end, c, sums);
          for (int32_t j = 0; j < 4; ++j) emit(c + j, sums[j]);
        }
        for (; c < channels; ++c) {
          int32_t sum = 0;
          for (const ReaderTap* tap = taps; tap != end; ++tap) sum += tap->levels[c] * tap->weights[c];
          emit(c, sum);
        }
      }
    }
  }
  shared_sink.Resume(sink);
}

// The level plane of PlanesS8DepthwiseInputGrad: the output's rows and columns with a border of
// kernel - 1 - pad zeros above and left (the reads of padding below and right land in zeros too), so
// that with the filter turned by 180 degrees, input pixel (iy, ix) is the dot product of the kernel with
// the plane's window from (iy, ix): its row j reads kW consecutive halfwords, whole pairs of them
// (the last pair's second weight 0 when kW is odd).
template <int32_t kW>
int32_t InputGradPlaneWidth(int32_t input_w) {
  return cm::PlaneWidth(input_w + (kW + 1) / 2 * 2 - 1);
}

// Whether PlanesS8DepthwiseInputGrad<kH, kW> takes the layer: stride 1, no dilation, multiplier 1, a
// kH x kW filter, and a plane that fits the stack.
template <int32_t kH, int32_t kW, typename S>
bool TakesInputGradPlanes(const S& s) {
  const tt_conv_grad_params& conv = s.params.conv;
  return conv.stride_h == 1 && conv.stride_w == 1 && conv.dilation_h == 1 && conv.dilation_w == 1 &&
         s.params.depth_multiplier == 1 && s.operand.h == kH && s.operand.w == kW &&
         (s.result.h + kH - 1) * InputGradPlaneWidth<kW>(s.result.w) <= cm::kPlaneHalfwords;
}

// Multiplier 1, stride 1, int8 gradient, a kH x kW filter: the exact sums of levels times weights, a
// channel at a time from its level plane, each element stored at its index, scaled as the reference
// scales it. The channel's turned weights are halfword pairs in registers; each pair of taps is one
// word load and one SMLAD, with no bounds checks.
template <int32_t kH, int32_t kW, typename S, typename Sink>
void PlanesS8DepthwiseInputGrad(const S& s, const core::S8GradReader& grad, const int8_t* filter, Sink& shared_sink) {
  constexpr int32_t kPairs = (kW + 1) / 2;
  Sink sink = shared_sink.LocalCopy();  // GradSink: its state in registers
  const core::FilterScales scales(s.quant);
  const tt_dims& in = s.result;
  const int32_t channels = in.c;
  const int32_t width = InputGradPlaneWidth<kW>(in.w);
  const int32_t rows = in.h + kH - 1;
  int16_t levels[cm::kPlaneHalfwords];
  memset(levels, 0, sizeof(int16_t) * rows * width);  // the border; every channel writes the same interior
  for (int32_t c = 0; c < channels; ++c) {
    // Row j, pair m: weights (kH - 1 - j, kW - 1 - 2m) and (kH - 1 - j, kW - 2 - 2m), 0 past the filter.
    uint32_t weights[kH][kPairs];
    auto weight = [&](int32_t j, int32_t i) -> uint32_t {
      return i < kW ? static_cast<uint16_t>(filter[((kH - 1 - j) * kW + (kW - 1 - i)) * channels + c]) : 0u;
    };
#pragma GCC unroll 8
    for (int32_t j = 0; j < kH; ++j) {
#pragma GCC unroll 8
      for (int32_t m = 0; m < kPairs; ++m) weights[j][m] = weight(j, 2 * m) | (weight(j, 2 * m + 1) << 16);
    }
    const float unit = grad.scale * scales[c];
    for (int32_t n = 0; n < in.n; ++n) {
      cm::FillChannelPlane(grad.data, s.grad_output, n, c, 0, levels, rows, width, kH - 1 - s.params.conv.pad_top,
                           kW - 1 - s.params.conv.pad_left);
      int32_t index = n * in.h * in.w * channels + c;
      for (int32_t iy = 0; iy < in.h; ++iy) {
        const int16_t* window = levels + iy * width;
        for (int32_t ix = 0; ix < in.w; ++ix, ++window, index += channels) {
          int32_t sum = 0;
#pragma GCC unroll 8
          for (int32_t j = 0; j < kH; ++j) {
#pragma GCC unroll 8
            for (int32_t m = 0; m < kPairs; ++m) sum = __smlad(cm::HalfwordPair(window + j * width + 2 * m), weights[j][m], sum);
          }
          sink.Put(index, static_cast<float>(sum) * unit);
        }
      }
    }
  }
  shared_sink.Resume(sink);
}

// core::DepthwiseConv2dInputGrad's elements, in its order, a block of input channels at a time.
// kMultiplier is the depth multiplier when known at compile time (1), else 0: read it from s.
template <int32_t kMultiplier, typename S, typename Grad, typename Sink>
void BlockedDepthwiseConv2dInputGrad(const S& s, const Grad& grad, const int8_t* filter, Sink& sink) {
  const int32_t multiplier = kMultiplier != 0 ? kMultiplier : s.params.depth_multiplier;
  const core::FilterScales scales(s.quant);
  const core::ConvGeometry geometry = core::MakeConvGeometry(s.params.conv, s.result, s.operand, s.grad_output);
  if constexpr (kMultiplier == 1 && core::ReadsS8<Grad>::value) {
    cm::GatherInputGradBlockSums<int32_t>(
        geometry, s.result, [&](int32_t c, int32_t sum) { sink(static_cast<float>(sum) * (grad.scale * scales[c])); },
        [&](auto width, int32_t c0, int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, int32_t* sum) {
          constexpr int32_t kWidth = decltype(width)::value;
          const int8_t* levels = grad.data + core::Offset(s.grad_output, n, oy, ox, c0);
          const int8_t* weights = filter + core::Offset(s.operand, 0, ky, kx, c0);
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) sum[j] += levels[j] * weights[j];
        });
    return;
  }
  cm::GatherInputGradBlocks(
      geometry, s.result, sink,
      [&](auto width, int32_t c0, int32_t n, int32_t oy, int32_t ox, int32_t ky, int32_t kx, float* sum) {
        constexpr int32_t kWidth = decltype(width)::value;
        const int32_t grad_row = core::Offset(s.grad_output, n, oy, ox, 0);
        const int8_t* weights = filter + core::Offset(s.operand, 0, ky, kx, 0);
#pragma GCC unroll 8
        for (int32_t j = 0; j < kWidth; ++j) {
          float tap = 0.0f;
          const int32_t first = (c0 + j) * multiplier;
          for (int32_t oc = first; oc < first + multiplier; ++oc) {
            tap += grad[grad_row + oc] * scales[oc] * static_cast<float>(weights[oc]);
          }
          sum[j] += tap;
        }
      });
}

}  // namespace

extern "C" tt_status tt_depthwise_conv2d_input_grad_s8(const tt_depthwise_conv_grad_params* params,
                                                       const tt_filter_quant_params* filter_quant,
                                                       const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                                       const tt_dims* filter_dims, const int8_t* filter,
                                                       const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  return core::RunDepthwiseConv2dInputGrad(
      params, filter_quant, grad_output_dims, grad_output, filter_dims, filter, grad_input_dims, grad_input,
      [](const auto& shape, const auto& grad, const int8_t* weights, auto& sink) {
        if constexpr (core::ReadsS8<std::decay_t<decltype(grad)>>::value) {
          if (TakesInputGradPlanes<3, 3>(shape)) {
            PlanesS8DepthwiseInputGrad<3, 3>(shape, grad, weights, sink);
            return;
          }
          if (TakesInputGradPlanes<5, 5>(shape)) {
            PlanesS8DepthwiseInputGrad<5, 5>(shape, grad, weights, sink);
            return;
          }
          if (shape.params.depth_multiplier == 1 && shape.operand.h <= kMaxKernelSide &&
              shape.operand.w <= kMaxKernelSide) {
            ListedTapsS8DepthwiseInputGrad(shape, grad, weights, sink);
            return;
          }
        }
        if (shape.params.depth_multiplier == 1) {
          BlockedDepthwiseConv2dInputGrad<1>(shape, grad, weights, sink);
        } else {
          BlockedDepthwiseConv2dInputGrad<0>(shape, grad, weights, sink);
        }
      });
}

/* Internal to the kernel core: the output loop and the requantization of the
 * forward int8 convolutions, shared by tt_conv2d_s8 and tt_depthwise_conv2d_s8,
 * which differ only in the sum each output element takes.
 *
 * Bit-identical to TFLite's reference kernels: int32 accumulation of
 * filter * (x + input_offset) over the taps inside the input, plus the bias,
 * then TFLite's MultiplyByQuantizedMultiplier (double rounding, as the pinned
 * wheel is built), the output zero point and the activation clamp. */
#ifndef TINYTRAIN_KERNELS_CORE_COMMON_CONV_FORWARD_H_
#define TINYTRAIN_KERNELS_CORE_COMMON_CONV_FORWARD_H_

#include <stdint.h>

#include "../tt_functions.h"
#include "conv_grad_loops.h"

namespace tinytrain_core {

// round(a * b / 2^31), saturating the one product that overflows (INT32_MIN squared).
inline int32_t RoundingDoublingHighMul(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  const int64_t product = static_cast<int64_t>(a) * b;
  const int64_t nudge = product >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
  // Divided by 2^31 truncating toward zero, by shifts: no 64-bit division helper on a Cortex-M.
  const int64_t sum = product + nudge;
  return static_cast<int32_t>(sum >= 0 ? sum >> 31 : -((-sum) >> 31));
}

// x / 2^exponent rounded to nearest, ties away from zero.
inline int32_t RoundingShiftRight(int32_t x, int32_t exponent) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

// acc * multiplier * 2^(shift - 31): a left shift first (wrapping as TFLite's does), else a right shift after.
inline int32_t Requantize(int32_t acc, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t scaled = static_cast<int32_t>(static_cast<uint32_t>(acc) << left);
  return RoundingShiftRight(RoundingDoublingHighMul(scaled, multiplier), shift > 0 ? 0 : -shift);
}

inline bool ValidRequantization(const tt_requantization* requant, int32_t channels) {
  if (requant == nullptr || requant->multiplier == nullptr || requant->shift == nullptr) return false;
  for (int32_t c = 0; c < channels; ++c) {
    if (requant->multiplier[c] < 0 || requant->shift[c] < -31 || requant->shift[c] > 30) return false;
  }
  return true;
}

// The checks both forward convolutions make, but for their channel relations.
inline bool ValidForwardConv(const tt_conv_params* params, const tt_dims* input_dims, const int8_t* input,
                             const tt_dims* filter_dims, const int8_t* filter, const tt_requantization* requant,
                             const tt_dims* output_dims, const int8_t* output) {
  if (params == nullptr || !ValidConvParams(&params->conv) || !ValidDims(input_dims) || !ValidDims(filter_dims) ||
      !ValidDims(output_dims) || input == nullptr || filter == nullptr || output == nullptr) {
    return false;
  }
  return input_dims->n == output_dims->n && params->input_offset >= -127 && params->input_offset <= 128 &&
         params->output_offset >= -128 && params->output_offset <= 127 && params->activation_min >= -128 &&
         params->activation_min <= params->activation_max && params->activation_max <= 127 &&
         ValidRequantization(requant, output_dims->c);
}

// Every check of tt_conv2d_s8 (the portable core and the Cortex-M version).
inline bool ValidConv2d(const tt_conv_params* params, const tt_dims* input_dims, const int8_t* input,
                        const tt_dims* filter_dims, const int8_t* filter, const tt_requantization* requant,
                        const tt_dims* output_dims, const int8_t* output) {
  return ValidForwardConv(params, input_dims, input, filter_dims, filter, requant, output_dims, output) &&
         filter_dims->n == output_dims->c && filter_dims->c == input_dims->c;
}

// Every check of tt_depthwise_conv2d_s8.
inline bool ValidDepthwiseConv2d(const tt_conv_params* params, const tt_dims* input_dims, const int8_t* input,
                                 const tt_dims* filter_dims, const int8_t* filter, const tt_requantization* requant,
                                 const tt_dims* output_dims, const int8_t* output) {
  return ValidForwardConv(params, input_dims, input, filter_dims, filter, requant, output_dims, output) &&
         params->depth_multiplier >= 1 && filter_dims->n == 1 && filter_dims->c == output_dims->c &&
         output_dims->c == input_dims->c * params->depth_multiplier;
}

// tt_conv2d_s8 and tt_depthwise_conv2d_s8 past their argument checks (ValidConv2d, ValidDepthwiseConv2d), for a
// caller that made them once for many calls: a tiled stage checks its description and the requantization once
// per Eval and each tile's conv geometry in Layout, then calls its convs per tile, where a requantization
// check alone walks every channel. Defined in conv2d_s8.cc and depthwise_conv2d_s8.cc, the portable core's or,
// replacing those files in the cmsis-nn kernel set, kernels/cmsis_nn's (the one place the kernel is chosen).
tt_status Conv2dS8(const tt_context* ctx, const tt_conv_params& params, const tt_dims& input_dims, const int8_t* input,
                   const tt_dims& filter_dims, const int8_t* filter, const int32_t* bias,
                   const tt_requantization& requant, const tt_dims& output_dims, int8_t* output);
tt_status DepthwiseConv2dS8(const tt_context* ctx, const tt_conv_params& params, const tt_dims& input_dims,
                            const int8_t* input, const tt_dims& filter_dims, const int8_t* filter, const int32_t* bias,
                            const tt_requantization& requant, const tt_dims& output_dims, int8_t* output);

// What the portable forward convolutions' *_get_buffer_size return: no scratch (0), or -1 for invalid geometry.
inline int32_t PortableScratchBytes(const tt_conv_params* params, const tt_dims* input_dims, const tt_dims* filter_dims,
                                    const tt_dims* output_dims) {
  const bool valid = params != nullptr && ValidConvParams(&params->conv) && ValidDims(input_dims) &&
                     ValidDims(filter_dims) && ValidDims(output_dims);
  return valid ? 0 : -1;
}

// Writes every output element in order (n, oy, ox, oc), rows before later rows:
// the bias plus tap(n, iy, ix, ky, kx, oc) summed over the taps (ky, kx) whose
// input position (iy, ix) is inside the input, requantized and clamped.
template <typename Tap>
void ConvForward(const tt_conv_params& params, const tt_dims& input, const tt_dims& filter, const int32_t* bias,
                 const tt_requantization& requant, const tt_dims& output, int8_t* out, Tap&& tap) {
  const ConvGeometry geometry = MakeConvGeometry(params.conv, input, filter, output);
  for (int32_t n = 0; n < output.n; ++n) {
    for (int32_t oy = 0; oy < output.h; ++oy) {
      for (int32_t ox = 0; ox < output.w; ++ox) {
        for (int32_t oc = 0; oc < output.c; ++oc) {
          int32_t acc = bias != nullptr ? bias[oc] : 0;
          geometry.rows.ForEachTapOf(oy, [&](int32_t ky, int32_t iy) {
            geometry.cols.ForEachTapOf(ox, [&](int32_t kx, int32_t ix) { acc += tap(n, iy, ix, ky, kx, oc); });
          });
          acc = Requantize(acc, requant.multiplier[oc], requant.shift[oc]) + params.output_offset;
          acc = acc < params.activation_min ? params.activation_min : acc;
          acc = acc > params.activation_max ? params.activation_max : acc;
          *out++ = static_cast<int8_t>(acc);
        }
      }
    }
  }
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_COMMON_CONV_FORWARD_H_

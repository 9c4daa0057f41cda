/* Internal to kernels/cmsis_nn: tinytrain's forward int8 convolutions (TT_CONV_2D,
 * TT_DEPTHWISE_CONV_2D, whose per-channel requantization is a constant in the model) as calls of
 * CMSIS-NN's s8 convolutions, one call per output row.
 *
 * Why one call per row: tinytrain's planner may place a convolution's output over the input rows
 * no later output row reads (tinytrain_tflm/plan/overlap.py). CMSIS-NN orders the work inside a
 * call its own way (its 1x1 stride-1 path is one matrix product over every pixel it is given, with
 * output channel pairs outside the pixels). A call that reads only output row r's window and writes
 * only row r keeps the rule whatever its inner order. Each call also has batch 1 and a top pad of 0
 * or of the window's rows above the input, so the wrappers' fast paths (batch 1, pads <= 1) apply.
 * Where the output's bytes miss the input's (not overlapped, or a tiled stage's patches), one call
 * over the whole image is as safe and cheaper: each call redoes per-channel work (the 1x1 path sums
 * every filter row for the input offset), which on a 4-pixel row costs a quarter more. Where they
 * overlap, a band of rows whose output lies below every input row still to be read is as safe.
 *
 * Bit-identity with the portable core: CMSIS-NN's scalar and DSP paths requantize as TFLite's
 * reference does (a rounding doubling high multiply, then a rounding right shift; its
 * nudge-then-floor high multiply rounds exactly as TFLite's sign-dependent nudge-then-truncate),
 * when built without CMSIS_NN_USE_SINGLE_ROUNDING, as tinytrain_tflm.firmware.device builds it.
 * Taps outside the input contribute 0 in both, the padding value being the zero point. */
#ifndef TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CONV_ROWS_H_
#define TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CONV_ROWS_H_

#include <stdint.h>

#include "../../core/common/conv_forward.h"
#include "../../core/tt_functions.h"
#include "arm_nn_types.h"

namespace tinytrain_cmsis_nn {

// The input rows one call reads: one output row's window, or the whole image.
struct ConvRow {
  int32_t first;     // the window's first row inside the input
  int32_t rows;      // its rows inside the input, >= 1
  int32_t pad_top;   // its rows above the input
  int32_t stride_h;  // 1 for one output row: its window is chosen already
  int32_t out_rows;  // the output rows it writes
};

inline ConvRow RowWindow(const tt_conv_params& params, int32_t input_h, int32_t kernel_h, int32_t oy) {
  const int32_t top = oy * params.conv.stride_h - params.conv.pad_top;  // may be above the input (< 0)
  const int32_t span = params.conv.dilation_h * (kernel_h - 1) + 1;
  const int32_t first = top > 0 ? top : 0;
  const int32_t stop = top + span < input_h ? top + span : input_h;
  // A window wholly in the padding (no TFLite SAME or VALID padding makes one): one input row with every
  // tap above it, so the row gets the bias alone, as in the portable core.
  if (stop <= first) return ConvRow{0, 1, span, 1, 1};
  return ConvRow{first, stop - first, first - top, 1, 1};
}

// One call for every output row of an image.
inline ConvRow WholeImage(const tt_conv_params& params, int32_t input_h, int32_t output_h) {
  return ConvRow{0, input_h, params.conv.pad_top, params.conv.stride_h, output_h};
}

// The fields cmsis_nn_conv_params and cmsis_nn_dw_conv_params share, for one call. For one output row the
// vertical stride is 1: it only chose the window, which RowWindow did.
template <typename CmsisParams>
CmsisParams RowParams(const tt_conv_params& params, const ConvRow& row) {
  CmsisParams out{};
  out.input_offset = params.input_offset;
  out.output_offset = params.output_offset;
  out.stride = cmsis_nn_tile{params.conv.stride_w, row.stride_h};
  out.padding = cmsis_nn_tile{params.conv.pad_left, row.pad_top};
  out.dilation = cmsis_nn_tile{params.conv.dilation_w, params.conv.dilation_h};
  out.activation = cmsis_nn_activation{params.activation_min, params.activation_max};
  return out;
}

inline cmsis_nn_dw_conv_params DepthwiseRowParams(const tt_conv_params& params, const ConvRow& row) {
  cmsis_nn_dw_conv_params conv = RowParams<cmsis_nn_dw_conv_params>(params, row);
  conv.ch_mult = params.depth_multiplier;
  return conv;
}

// Whether tt_conv2d_s8 gives a row to arm_convolve_wrapper_s8 (pointwise: 1x1, no padding, no dilation;
// it goes on to CMSIS-NN's 1x1 paths) or to arm_convolve_s8 itself. The wrapper would send a one-row
// 1xN filter to arm_convolve_1_x_n_s8, whose Helium version rejects pads other than TFLite SAME's split
// (a VALID convolution leaving two input columns unread, say).
inline bool PointwiseRow(const cmsis_nn_conv_params& row, const tt_dims& filter) {
  return filter.h == 1 && filter.w == 1 && row.padding.w == 0 && row.padding.h == 0 && row.dilation.w == 1 &&
         row.dilation.h == 1;
}

inline cmsis_nn_dims RowInputDims(const tt_dims& input, const ConvRow& row) {
  return cmsis_nn_dims{1, row.rows, input.w, input.c};
}

inline cmsis_nn_dims RowOutputDims(const tt_dims& output, const ConvRow& row) {
  return cmsis_nn_dims{1, row.out_rows, output.w, output.c};
}

// What a *_get_buffer_size returns: -1 for arguments the portable core rejects too, else the largest
// scratch any call may need, bytes(call, its input dims, filter dims, output dims) for each output row
// of one image (every image repeats them) and for the whole image (ForEachRow's choice is made in Eval).
template <typename RowBytes>
int32_t MaxRowScratch(const tt_conv_params* params, const tt_dims* input_dims, const tt_dims* filter_dims,
                      const tt_dims* output_dims, RowBytes&& bytes) {
  if (tinytrain_core::PortableScratchBytes(params, input_dims, filter_dims, output_dims) < 0) return -1;
  const tt_dims& taps = *filter_dims;
  const cmsis_nn_dims filter{taps.n, taps.h, taps.w, taps.c};
  const ConvRow whole = WholeImage(*params, input_dims->h, output_dims->h);
  int32_t most = bytes(whole, RowInputDims(*input_dims, whole), filter, RowOutputDims(*output_dims, whole));
  for (int32_t oy = 0; oy < output_dims->h; ++oy) {
    const ConvRow row = RowWindow(*params, input_dims->h, taps.h, oy);
    const int32_t size = bytes(row, RowInputDims(*input_dims, row), filter, RowOutputDims(*output_dims, row));
    most = size > most ? size : most;
  }
  return most;
}

// The arguments every row's call shares.
struct RowOperands {
  cmsis_nn_context context;
  cmsis_nn_per_channel_quant_params quant;  // the model's; CMSIS-NN only reads it (its struct is not const)
  cmsis_nn_dims filter;
  cmsis_nn_dims bias;
};

inline RowOperands MakeRowOperands(const tt_context* ctx, const tt_requantization& requant, const tt_dims& filter,
                                   const tt_dims& output) {
  return RowOperands{ctx == nullptr ? cmsis_nn_context{nullptr, 0} : cmsis_nn_context{ctx->buf, ctx->size},
                     {const_cast<int32_t*>(requant.multiplier), const_cast<int32_t*>(requant.shift)},
                     {filter.n, filter.h, filter.w, filter.c},
                     {1, 1, 1, output.c}};
}

// Output rows [oy, oy + count) as one call: from the first row's window to the last's. Each row's window
// then lies where CMSIS-NN looks for it (oy's top plus a stride per row). A window wholly in the padding
// keeps its row to itself.
inline ConvRow RowsWindow(const tt_conv_params& params, int32_t input_h, int32_t kernel_h, int32_t oy, int32_t count) {
  const ConvRow first = RowWindow(params, input_h, kernel_h, oy);
  const ConvRow last = RowWindow(params, input_h, kernel_h, oy + count - 1);
  return ConvRow{first.first, last.first + last.rows - first.first, first.pad_top, params.conv.stride_h, count};
}

// Runs call(window, input rows, output rows), TT_ARG_ERROR at the first call CMSIS-NN rejects. A batch-1
// image whose output bytes miss its input's is one call. Otherwise output rows go in order, as many per
// call as write no byte of an input row that call or a later one reads (an output the planner overlaps
// often lies that far below its input), at least one: the planner keeps a single row's call safe.
template <typename Call>
tt_status ForEachRow(const tt_conv_params& params, const tt_dims& input, const int8_t* input_data, int32_t kernel_h,
                     const tt_dims& output, int8_t* output_data, Call&& call) {
  const int32_t input_row = input.w * input.c;
  const int32_t output_row = output.w * output.c;
  const uintptr_t in = reinterpret_cast<uintptr_t>(input_data), out = reinterpret_cast<uintptr_t>(output_data);
  const uintptr_t in_end = in + static_cast<uintptr_t>(input.h * input_row);
  const bool apart = out + static_cast<uintptr_t>(output.h * output_row) <= in || in_end <= out;
  if (output.n == 1 && apart) {
    return call(WholeImage(params, input.h, output.h), input_data, output_data) == ARM_CMSIS_NN_SUCCESS ? TT_SUCCESS
                                                                                                         : TT_ARG_ERROR;
  }
  // Rows [oy, oy + count) write bytes below every input row from the first they read on, and no window of
  // theirs lies wholly in the padding (RowWindow's one-row stand-in, whose pad is its span).
  const int32_t span = params.conv.dilation_h * (kernel_h - 1) + 1;
  const auto misses = [&](int32_t oy, int32_t count) {
    const ConvRow first = RowWindow(params, input.h, kernel_h, oy);
    const ConvRow last = RowWindow(params, input.h, kernel_h, oy + count - 1);
    return first.pad_top < span && last.pad_top < span &&
           out + static_cast<uintptr_t>((oy + count) * output_row) <= in + static_cast<uintptr_t>(first.first * input_row);
  };
  for (int32_t n = 0; n < output.n; ++n) {
    for (int32_t oy = 0; oy < output.h;) {
      int32_t count = 1;
      while (output.n == 1 && oy + count < output.h && misses(oy, count + 1)) ++count;
      const ConvRow row = count == 1 ? RowWindow(params, input.h, kernel_h, oy)
                                     : RowsWindow(params, input.h, kernel_h, oy, count);
      const int8_t* x = input_data + (n * input.h + row.first) * input_row;
      if (call(row, x, output_data + (n * output.h + oy) * output_row) != ARM_CMSIS_NN_SUCCESS) return TT_ARG_ERROR;
      oy += count;
    }
  }
  return TT_SUCCESS;
}

}  // namespace tinytrain_cmsis_nn

#endif  // TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CONV_ROWS_H_

/* Internal to kernels/cmsis_nn: the channel blocking its gradient kernels share, and the gathers
 * of kernels/core/common/conv_grad_loops.h over it. Each keeps one sum per channel of a block in
 * registers (float32 for a float32 gradient, an integer for an int8 one) and reads the block's int8
 * operands as one contiguous run; the float32 sums and their order of additions stay the
 * reference's (kernels/core), and integer sums are exact, so the results are bit-identical to it. */
#ifndef TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CHANNEL_BLOCKS_H_
#define TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CHANNEL_BLOCKS_H_

#include <stdint.h>

#include "../../core/common/conv_grad_loops.h"
#include "../../core/tt_types.h"

namespace tinytrain_cmsis_nn {

// Channels summed together: 8 sums and the 8 products being added take 16 of the FPU's 32 single
// registers (fpv4-sp-d16 and fpv5-d16 alike), leaving room for the shared factor and temporaries.
constexpr int32_t kBlock = 8;

// A block width as a type, so each width's loops are compiled with it as a constant.
template <int32_t kWidth>
struct BlockWidth {
  static constexpr int32_t value = kWidth;
};

// Calls body(BlockWidth<w>{}, c0) for consecutive blocks [c0, c0 + w) covering [0, channels) in
// order: blocks of kBlock, then at most one of kBlock / 2, then single channels.
template <typename Body>
void ForEachChannelBlock(int32_t channels, Body&& body) {
  int32_t c = 0;
  for (; c + kBlock <= channels; c += kBlock) body(BlockWidth<kBlock>{}, c);
  for (; c + kBlock / 2 <= channels; c += kBlock / 2) body(BlockWidth<kBlock / 2>{}, c);
  for (; c < channels; ++c) body(BlockWidth<1>{}, c);
}

// core::GatherInputGradSums a block of input channels at a time: for each input pixel and block, in
// output order, add_taps(width, c0, n, oy, ox, ky, kx, sum) is called for every output (oy, ox) and
// tap (ky, kx) reading the pixel, in the reference's order, and adds that tap's sum for channel
// c0 + j to sum[j] (which starts at Sum{0}); then emit(c0 + j, sum[j]) for the block in order.
template <typename Sum, typename Emit, typename AddTaps>
void GatherInputGradBlockSums(const tinytrain_core::ConvGeometry& geometry, const tt_dims& input, Emit&& emit,
                              AddTaps&& add_taps) {
  for (int32_t n = 0; n < input.n; ++n) {
    for (int32_t iy = 0; iy < input.h; ++iy) {
      for (int32_t ix = 0; ix < input.w; ++ix) {
        ForEachChannelBlock(input.c, [&](auto width, int32_t c0) {
          constexpr int32_t kWidth = decltype(width)::value;
          Sum sum[kWidth];
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) sum[j] = 0;
          geometry.rows.ForEachReaderOf(iy, [&](int32_t ky, int32_t oy) {
            geometry.cols.ForEachReaderOf(ix, [&](int32_t kx, int32_t ox) { add_taps(width, c0, n, oy, ox, ky, kx, sum); });
          });
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) emit(c0 + j, sum[j]);
        });
      }
    }
  }
}

// GatherInputGradBlockSums of float32 sums, each going to sink as it is.
template <typename Sink, typename AddTaps>
void GatherInputGradBlocks(const tinytrain_core::ConvGeometry& geometry, const tt_dims& input, Sink& sink,
                           AddTaps&& add_taps) {
  GatherInputGradBlockSums<float>(geometry, input, [&](int32_t, float sum) { sink(sum); }, add_taps);
}

// core::GatherFilterGradSums a block of channels (the filter gradient's last axis) at a time: for
// each filter element (f, ky, kx) and block, in output order, add_reads(width, c0, f, n, oy, ox, iy,
// ix, sum) is called for every batch n and output (oy, ox) whose tap (ky, kx) reads (iy, ix) inside
// the input, in the reference's order, and adds that read's term for channel c0 + j to sum[j] (from
// Sum{0}); then emit(sum[j]) for the block in order.
template <typename Sum, typename Emit, typename AddReads>
void GatherFilterGradBlockSums(const tinytrain_core::ConvGeometry& geometry, int32_t batches, const tt_dims& grad_filter,
                               Emit&& emit, AddReads&& add_reads) {
  for (int32_t f = 0; f < grad_filter.n; ++f) {
    for (int32_t ky = 0; ky < grad_filter.h; ++ky) {
      for (int32_t kx = 0; kx < grad_filter.w; ++kx) {
        ForEachChannelBlock(grad_filter.c, [&](auto width, int32_t c0) {
          constexpr int32_t kWidth = decltype(width)::value;
          Sum sum[kWidth];
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) sum[j] = 0;
          for (int32_t n = 0; n < batches; ++n) {
            geometry.rows.ForEachReadOfTap(ky, [&](int32_t oy, int32_t iy) {
              geometry.cols.ForEachReadOfTap(kx, [&](int32_t ox, int32_t ix) {
                add_reads(width, c0, f, n, oy, ox, iy, ix, sum);
              });
            });
          }
#pragma GCC unroll 8
          for (int32_t j = 0; j < kWidth; ++j) emit(sum[j]);
        });
      }
    }
  }
}

// GatherFilterGradBlockSums of float32 sums: input_scale times each goes to sink.
template <typename Sink, typename AddReads>
void GatherFilterGradBlocks(const tinytrain_core::ConvGeometry& geometry, int32_t batches, const tt_dims& grad_filter,
                            float input_scale, Sink& sink, AddReads&& add_reads) {
  GatherFilterGradBlockSums<float>(geometry, batches, grad_filter, [&](float sum) { sink(input_scale * sum); },
                                   add_reads);
}

// The reads of filter tap (ky, kx) inside the input, row by row: for every batch n and output row oy
// whose tap row ky reads an input row iy, row(grad_offset, input_offset, count), the NHWC offsets
// (channel 0) of the first of that row's `count` reads: outputs ox, ox + 1, ... reading inputs ix,
// ix + stride, .... They are one run per row, as the column read grows with the output's.
template <typename Row>
void ForEachTapReadRow(const tinytrain_core::ConvGeometry& geometry, const tt_dims& grad_output, const tt_dims& input,
                       int32_t ky, int32_t kx, Row&& row) {
  const tinytrain_core::ConvAxis& cols = geometry.cols;
  const auto read = [&](int32_t ox) { return ox * cols.stride + kx * cols.dilation - cols.pad; };
  int32_t first = 0;
  while (first < cols.out_size && read(first) < 0) ++first;
  int32_t end = first;
  while (end < cols.out_size && read(end) < cols.in_size) ++end;
  if (first == end) return;
  for (int32_t n = 0; n < grad_output.n; ++n) {
    geometry.rows.ForEachReadOfTap(ky, [&](int32_t oy, int32_t iy) {
      row(tinytrain_core::Offset(grad_output, n, oy, first, 0), tinytrain_core::Offset(input, n, iy, read(first), 0),
          end - first);
    });
  }
}

}  // namespace tinytrain_cmsis_nn

#endif  // TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CHANNEL_BLOCKS_H_

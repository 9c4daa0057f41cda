/* Internal to kernels/cmsis_nn: one channel of an NHWC int8 tensor as a zero-bordered int16 plane, for
 * the depthwise gradients of stride-1 layers. In a plane, the taps a sum reads along a row are
 * consecutive halfwords, so the DSP extension's dual MAC (SMLAD) adds two of its products at once from
 * one word load; the zero border stands for the padding, whose products are 0, so the loops need no
 * bounds checks. Integer sums are exact: any order gives the reference's (kernels/core) sums. */
#ifndef TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CHANNEL_PLANES_H_
#define TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CHANNEL_PLANES_H_

#include <stdint.h>
#include <string.h>

#include "../../core/tt_types.h"

namespace tinytrain_cmsis_nn {

// Halfwords of one plane on the stack (1 KB): larger layers take the kernels' other paths.
constexpr int32_t kPlaneHalfwords = 512;

// Two consecutive halfwords of a plane as one word (low half first), for SMLAD.
inline uint32_t HalfwordPair(const int16_t* at) {
  uint32_t pair;
  memcpy(&pair, at, 4);
  return pair;
}

// An even row width of at least `span` halfwords: rows of whole pairs.
inline int32_t PlaneWidth(int32_t span) { return (span + 1) / 2 * 2; }

// Writes channel c of image n of `tensor` (NHWC int8, dims) minus `offset` into the plane: element
// (y, x) at plane[(y + top) * width + x + left], for the rows and columns that land inside `rows` x
// `width`. The rest of the plane is left as it is (zero, the caller's border).
inline void FillChannelPlane(const int8_t* tensor, const tt_dims& dims, int32_t n, int32_t c, int32_t offset,
                             int16_t* plane, int32_t rows, int32_t width, int32_t top, int32_t left) {
  const int32_t first_y = top < 0 ? -top : 0;
  const int32_t end_y = dims.h < rows - top ? dims.h : rows - top;
  const int32_t first_x = left < 0 ? -left : 0;
  const int32_t end_x = dims.w < width - left ? dims.w : width - left;
  for (int32_t y = first_y; y < end_y; ++y) {
    const int8_t* from = tensor + ((n * dims.h + y) * dims.w + first_x) * dims.c + c;
    int16_t* to = plane + (y + top) * width + first_x + left;
    for (int32_t x = first_x; x < end_x; ++x, from += dims.c) *to++ = static_cast<int16_t>(*from - offset);
  }
}

}  // namespace tinytrain_cmsis_nn

#endif  // TINYTRAIN_KERNELS_CMSIS_NN_COMMON_CHANNEL_PLANES_H_

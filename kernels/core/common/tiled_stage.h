/* Internal to the kernel core: the geometry of a tiled stage (TT_TILED_STAGE),
 * shared by tt_tiled_stage_get_buffer_size and tt_tiled_stage_s8 so that the
 * scratch size Prepare requests is the one Eval uses.
 *
 * Tensors of a stage are numbered 0 for the stage input and k + 1 for the
 * output of stage op k. For one tile, NeedRows() and NeedCols() walk the ops backwards and give
 * each tensor the rows and columns that tile needs of it (the hull over its
 * readers, clipped to the tensor), the stage input's too, which each tile copies
 * into the scratch buffer first; a PAD's output holds no bytes of its own but
 * aliases its input's patch, shifted by the pad, so a conv reading it sees the
 * padding as out-of-patch zeros, as it sees its own padding.
 *
 * Tiles run column strip by column strip, each strip's bands top to bottom. A band computes only the
 * rows of each tensor the band above did not, and a patch keeps the rows it shares with the next band
 * (a line buffer): a 3x3 conv's overlapping rows are computed once, and only the strips' columns are
 * recomputed per tile. Columns depend on the strip alone and rows on the band alone, which lets
 * tinytrain_tflm/plan/tiled_stage.py mirror the walk per axis. */
#ifndef TINYTRAIN_KERNELS_CORE_COMMON_TILED_STAGE_H_
#define TINYTRAIN_KERNELS_CORE_COMMON_TILED_STAGE_H_

#include <stdint.h>

#include "../tt_functions.h"
#include "../tt_schema_generated.h"
#include "conv_grad_loops.h"

namespace tinytrain_core {

struct Span {
  int32_t start;
  int32_t stop;
  int32_t length() const { return stop - start; }
};

// One description row, named (the layout is schema/tinytrain.json's).
struct StageOp {
  int32_t kind;
  int32_t input;
  int32_t input2;
  int32_t height, width, channels;
  int32_t kernel_h, kernel_w;
  tt_conv_params conv;  // strides, dilations, pads, depth multiplier, offsets, clamp (ADD: offsets and clamp)
  int32_t input2_offset, left_shift;
  int32_t input_multiplier, input_shift, input2_multiplier, input2_shift, output_multiplier, output_shift;
};

inline StageOp ReadStageOp(const int32_t* row) {
  StageOp op;
  op.kind = row[0], op.input = row[1], op.input2 = row[2];
  op.height = row[3], op.width = row[4], op.channels = row[5];
  op.kernel_h = row[6], op.kernel_w = row[7];
  op.conv.conv = tt_conv_grad_params{row[8], row[9], row[10], row[11], row[12], row[13]};
  op.conv.depth_multiplier = row[14];
  op.conv.input_offset = row[15], op.conv.output_offset = row[16];
  op.conv.activation_min = row[17], op.conv.activation_max = row[18];
  op.input2_offset = row[19], op.left_shift = row[20];
  op.input_multiplier = row[21], op.input_shift = row[22];
  op.input2_multiplier = row[23], op.input2_shift = row[24];
  op.output_multiplier = row[25], op.output_shift = row[26];
  return op;
}

inline StageOp StageOpAt(const tt_tiled_stage_params& params, int32_t k) {
  return ReadStageOp(params.description + k * TT_STAGE_ROW_FIELDS);
}

inline bool IsConv(const StageOp& op) { return op.kind == TT_STAGE_OP_CONV || op.kind == TT_STAGE_OP_DEPTHWISE; }

// Most tiles along an axis: it keeps TileSpan's arithmetic in 32 bits (no 64-bit division on a Cortex-M).
constexpr int32_t kMaxTilesPerAxis = 1024;

// Tile t of `parts` along an axis of `size`: edges at round(t * size / parts), halves up. With size = q * parts
// + r, that is t * q + round(t * r / parts), and t * r < parts^2 stays small.
inline Span TileSpan(int32_t size, int32_t parts, int32_t t) {
  const int32_t q = size / parts, r = size % parts;
  const auto edge = [&](int32_t i) { return i * q + (2 * i * r + parts) / (2 * parts); };
  return Span{edge(t), edge(t + 1)};
}

// Input span (unclipped) that one axis of op reads for output span `out`.
inline Span Window(const StageOp& op, bool rows, Span out) {
  if (op.kind == TT_STAGE_OP_ADD) return out;
  const int32_t kernel = rows ? op.kernel_h : op.kernel_w;
  const int32_t stride = rows ? op.conv.conv.stride_h : op.conv.conv.stride_w;
  const int32_t dilation = rows ? op.conv.conv.dilation_h : op.conv.conv.dilation_w;
  const int32_t pad = rows ? op.conv.conv.pad_top : op.conv.conv.pad_left;
  return Span{out.start * stride - pad, (out.stop - 1) * stride - pad + (kernel - 1) * dilation + 1};
}

inline Span Clip(Span span, int32_t size) {
  return Span{span.start > 0 ? span.start : 0, span.stop < size ? span.stop : size};
}

inline Span Hull(Span a, Span b) {
  return Span{a.start < b.start ? a.start : b.start, a.stop > b.stop ? a.stop : b.stop};
}

// Per stage tensor: its shape, what one tile needs of it (need) and where its bytes are (have, the patch
// its data holds: need, or for a PAD's output the aliased input's have shifted by the pad).
struct StageTile {
  tt_dims dims[TT_STAGE_MAX_OPS + 1];
  Span need_rows[TT_STAGE_MAX_OPS + 1], need_cols[TT_STAGE_MAX_OPS + 1];
  Span have_rows[TT_STAGE_MAX_OPS + 1], have_cols[TT_STAGE_MAX_OPS + 1];
  Span computed[TT_STAGE_MAX_OPS + 1];  // the rows of need this band computes (see Need)
  int32_t root[TT_STAGE_MAX_OPS + 1];  // the tensor whose bytes it is (itself but for PAD outputs)
};

// The tensors op reads: its input, and an ADD's second input.
inline int32_t Sources(const StageOp& op, int32_t* sources) {
  sources[0] = op.input, sources[1] = op.input2;
  return op.kind == TT_STAGE_OP_ADD ? 2 : 1;
}

inline bool ValidOffsets(const tt_conv_params& p) {
  return p.input_offset >= -127 && p.input_offset <= 128 && p.output_offset >= -128 && p.output_offset <= 127 &&
         p.activation_min >= -128 && p.activation_min <= p.activation_max && p.activation_max <= 127;
}

// Bound of every size and window field, so no product below overflows and no loop runs for long on a
// corrupted description (2^15: larger than any image an MCU holds).
constexpr int32_t kMaxExtent = 1 << 15;

// Every row's own checks, given the shapes of the tensors before it (see tt_tiled_stage_get_buffer_size).
inline bool ValidStage(const tt_tiled_stage_params* params, const tt_dims* input) {
  if (params == nullptr || params->description == nullptr || params->num_ops < 1 ||
      params->num_ops > TT_STAGE_MAX_OPS || params->tiles_h < 1 || params->tiles_w < 1 ||
      params->tiles_h > kMaxTilesPerAxis || params->tiles_w > kMaxTilesPerAxis || !ValidDims(input) ||
      input->n != 1) {
    return false;
  }
  tt_dims dims[TT_STAGE_MAX_OPS + 1];
  bool padded[TT_STAGE_MAX_OPS + 1] = {false};
  dims[0] = *input;
  for (int32_t k = 0; k < params->num_ops; ++k) {
    const StageOp op = StageOpAt(*params, k);
    int32_t sources[2];
    const int32_t count = Sources(op, sources);
    if (op.kind < TT_STAGE_OP_CONV || op.kind > TT_STAGE_OP_ADD || (count == 1 && op.input2 != -1)) return false;
    for (int32_t i = 0; i < count; ++i) {
      if (sources[i] < -1 || sources[i] >= k || (padded[sources[i] + 1] && !IsConv(op))) return false;
    }
    const tt_dims in = dims[op.input + 1];
    dims[k + 1] = tt_dims{1, op.height, op.width, op.channels};
    if (!ValidDims(&dims[k + 1]) || op.height > kMaxExtent || op.width > kMaxExtent || op.channels > kMaxExtent ||
        op.kernel_h > kMaxExtent || op.kernel_w > kMaxExtent || op.conv.conv.stride_h > kMaxExtent ||
        op.conv.conv.stride_w > kMaxExtent || op.conv.conv.dilation_h > kMaxExtent ||
        op.conv.conv.dilation_w > kMaxExtent || op.conv.conv.pad_top > kMaxExtent || op.conv.conv.pad_left > kMaxExtent) {
      return false;
    }
    padded[k + 1] = op.kind == TT_STAGE_OP_PAD;
    if (op.kind == TT_STAGE_OP_PAD) {
      if (op.conv.conv.pad_top < 0 || op.conv.conv.pad_left < 0 || op.height < in.h + op.conv.conv.pad_top ||
          op.width < in.w + op.conv.conv.pad_left || op.channels != in.c || k == params->num_ops - 1) {
        return false;
      }
      continue;
    }
    if (op.kind == TT_STAGE_OP_ADD) {
      const tt_dims other = dims[op.input2 + 1];
      if (in.h != op.height || in.w != op.width || in.c != op.channels || other.h != op.height ||
          other.w != op.width || other.c != op.channels || !ValidOffsets(op.conv) || op.input2_offset < -127 ||
          op.input2_offset > 128 || op.left_shift < 0 || op.left_shift > 20) {
        return false;
      }
      const int32_t shifts[] = {op.input_shift, op.input2_shift, op.output_shift};
      for (const int32_t shift : shifts) {
        if (shift < -31 || shift > 0) return false;
      }
      if (op.input_multiplier < 0 || op.input2_multiplier < 0 || op.output_multiplier < 0) return false;
      continue;
    }
    const bool depthwise = op.kind == TT_STAGE_OP_DEPTHWISE;
    if (!ValidConvParams(&op.conv.conv) || op.kernel_h < 1 || op.kernel_w < 1 || !ValidOffsets(op.conv) ||
        (depthwise && (op.conv.depth_multiplier < 1 || op.channels != in.c * op.conv.depth_multiplier))) {
      return false;
    }
    // Every output row and column reads at least one real input row and column.
    const Span rows = Window(op, true, Span{op.height - 1, op.height});
    const Span cols = Window(op, false, Span{op.width - 1, op.width});
    if (rows.start >= in.h || cols.start >= in.w || rows.stop <= 0 || cols.stop <= 0) return false;
  }
  const tt_dims& out = dims[params->num_ops];
  return params->tiles_h <= out.h && params->tiles_w <= out.w && input->h <= kMaxExtent && input->w <= kMaxExtent &&
         input->c <= kMaxExtent;
}

// The tile's shapes and which tensor's bytes each one's are (itself but for PAD outputs, its input's).
inline void StageShapes(const tt_tiled_stage_params& params, const tt_dims& input, StageTile* tile) {
  tile->dims[0] = input;
  tile->root[0] = 0;  // the input's patch is copied into the scratch buffer, as the other patches are written there
  for (int32_t k = 0; k < params.num_ops; ++k) {
    const StageOp op = StageOpAt(params, k);
    tile->dims[k + 1] = tt_dims{input.n, op.height, op.width, op.channels};
    tile->root[k + 1] = op.kind == TT_STAGE_OP_PAD ? tile->root[op.input + 1] : k + 1;
  }
}

// The rows of band ty (need_rows, computed, have_rows), given the tile's shapes (StageShapes); false where a
// tensor no later op reads has no rows in a strip's first band. `previous` is the need rows of the band above
// in the same column strip, null for a strip's first band: bands run top to bottom, and an op computes only
// the rows of its output the band above did not (computed), which the patch keeps (Layout). Its inputs are
// needed over the window of those rows only, so a 3x3 conv's overlapping rows are computed once: no row of
// halo is recomputed, only columns. Rows depend on the band alone, columns on the strip alone (NeedCols).
inline bool NeedRows(const tt_tiled_stage_params& params, int32_t ty, const Span* previous, StageTile* tile) {
  const int32_t n = params.num_ops;
  for (int32_t t = 0; t <= n; ++t) tile->need_rows[t] = Span{0, 0};
  tile->need_rows[n] = TileSpan(tile->dims[n].h, params.tiles_h, ty);
  for (int32_t k = n - 1; k >= 0; --k) {
    const Span need = tile->need_rows[k + 1];
    if (previous == nullptr && need.length() <= 0) return false;  // no op reads it
    const StageOp op = StageOpAt(params, k);
    tile->computed[k + 1] = need;  // a PAD's output is its input's patch: its rows come with it
    const Span above = previous != nullptr ? previous[k + 1] : Span{0, 0};
    if (op.kind != TT_STAGE_OP_PAD && need.length() > 0 && above.start <= need.start && above.stop > need.start) {
      tile->computed[k + 1] = Span{above.stop, need.stop};
    }
    if (tile->computed[k + 1].length() <= 0) continue;
    int32_t sources[2];
    for (int32_t i = 0, count = Sources(op, sources); i < count; ++i) {
      const int32_t t = sources[i] + 1;
      const Span rows = Clip(Window(op, true, tile->computed[k + 1]), tile->dims[t].h);
      if (rows.length() <= 0) continue;
      tile->need_rows[t] = tile->need_rows[t].length() > 0 ? Hull(tile->need_rows[t], rows) : rows;
    }
  }
  tile->computed[0] = tile->need_rows[0];
  tile->have_rows[0] = tile->need_rows[0];
  for (int32_t k = 0; k < n; ++k) {
    const StageOp op = StageOpAt(params, k);
    const Span have = tile->have_rows[op.input + 1];
    const int32_t shift = op.kind == TT_STAGE_OP_PAD ? op.conv.conv.pad_top : 0;
    tile->have_rows[k + 1] = op.kind == TT_STAGE_OP_PAD ? Span{have.start + shift, have.stop + shift}
                                                        : tile->need_rows[k + 1];
  }
  return true;
}

// The columns of strip tx (need_cols, have_cols), given the tile's shapes; false where a tensor no later op
// reads has no columns, or a conv's patch starts left of its window. A tensor two ops read is needed over
// the hull of both windows, whether or not the reader computes rows in a band, so that columns depend on
// the strip alone.
inline bool NeedCols(const tt_tiled_stage_params& params, int32_t tx, StageTile* tile) {
  const int32_t n = params.num_ops;
  for (int32_t t = 0; t <= n; ++t) tile->need_cols[t] = Span{0, 0};
  tile->need_cols[n] = TileSpan(tile->dims[n].w, params.tiles_w, tx);
  for (int32_t k = n - 1; k >= 0; --k) {
    if (tile->need_cols[k + 1].length() <= 0) return false;  // no op reads it
    const StageOp op = StageOpAt(params, k);
    int32_t sources[2];
    for (int32_t i = 0, count = Sources(op, sources); i < count; ++i) {
      const int32_t t = sources[i] + 1;
      const Span cols = Clip(Window(op, false, tile->need_cols[k + 1]), tile->dims[t].w);
      tile->need_cols[t] = tile->need_cols[t].length() > 0 ? Hull(tile->need_cols[t], cols) : cols;
    }
  }
  tile->have_cols[0] = tile->need_cols[0];
  for (int32_t k = 0; k < n; ++k) {
    const StageOp op = StageOpAt(params, k);
    const int32_t t = op.input + 1;
    if (op.kind == TT_STAGE_OP_PAD) {
      const int32_t shift = op.conv.conv.pad_left;
      tile->have_cols[k + 1] = Span{tile->have_cols[t].start + shift, tile->have_cols[t].stop + shift};
      continue;
    }
    tile->have_cols[k + 1] = tile->need_cols[k + 1];
    if (IsConv(op) && tile->have_cols[t].start < Window(op, false, tile->need_cols[k + 1]).start) {
      return false;  // (rows: the conv reads its patch from its window's first row on, see PatchArgs)
    }
  }
  return true;
}

// A conv op's arguments over output rows `rows` of its patch of one tile; the input starts at row
// *input_row of its patch, the pads are the window's rows and columns before it (zeros: the op's own
// padding or a PAD's).
struct ConvPatchArgs {
  tt_conv_params params;
  tt_dims input, filter, output;
};

inline ConvPatchArgs PatchArgs(const StageOp& op, const StageTile& tile, int32_t k, Span rows, int32_t* input_row) {
  const int32_t t = op.input + 1;
  const Span have = tile.have_rows[t];
  const int32_t window = Window(op, true, rows).start;
  const int32_t first = window > have.start ? window : have.start;
  *input_row = first - have.start;
  ConvPatchArgs args{op.conv, {1, have.stop - first, tile.have_cols[t].length(), tile.dims[t].c},
                     {op.channels, op.kernel_h, op.kernel_w, tile.dims[t].c},
                     {1, rows.length(), tile.need_cols[k + 1].length(), op.channels}};
  args.params.conv.pad_top = first - window;
  args.params.conv.pad_left = tile.have_cols[t].start - Window(op, false, tile.need_cols[k + 1]).start;
  if (op.kind == TT_STAGE_OP_DEPTHWISE) args.filter = tt_dims{1, op.kernel_h, op.kernel_w, op.channels};
  return args;
}

// The most scratch a conv of the stage asks for on this tile (its ctx, after the patches): none in the
// portable core, CMSIS-NN's im2col and the like where kernels/cmsis_nn replaces the convs. False when a
// conv rejects its arguments.
inline bool TileConvScratch(const tt_tiled_stage_params& params, const StageTile& tile, int32_t* bytes) {
  for (int32_t k = 0; k < params.num_ops; ++k) {
    const StageOp op = StageOpAt(params, k);
    if (!IsConv(op)) continue;
    const Span rows = tile.computed[k + 1];
    if (rows.length() <= 0) continue;
    int32_t input_row = 0;
    const ConvPatchArgs a = PatchArgs(op, tile, k, rows, &input_row);
    const int32_t size = op.kind == TT_STAGE_OP_DEPTHWISE
                             ? tt_depthwise_conv2d_s8_get_buffer_size(&a.params, &a.input, &a.filter, &a.output)
                             : tt_conv2d_s8_get_buffer_size(&a.params, &a.input, &a.filter, &a.output);
    if (size < 0) return false;
    *bytes = size > *bytes ? size : *bytes;
  }
  return true;
}

// What a conv's CMSIS-NN or portable scratch depends on along one axis of a tile (see PatchArgs): its input
// patch's extent from the window on, its output extent, and the pad before. Tiles whose convs agree on both
// axes ask for the same scratch.
struct AxisCall {
  int32_t input, output, pad;
  bool operator==(const AxisCall& other) const {
    return input == other.input && output == other.output && pad == other.pad;
  }
};

// Per stage op, its conv's AxisCall along rows (a band's) or columns (a strip's); {0, 0, 0} for an op that
// is no conv or computes no rows in the band. True when they equal `last`, which they then replace.
inline bool SameCalls(const tt_tiled_stage_params& params, const StageTile& tile, bool rows, AxisCall* last) {
  bool same = true;
  for (int32_t k = 0; k < params.num_ops; ++k) {
    const StageOp op = StageOpAt(params, k);
    AxisCall call{0, 0, 0};
    const int32_t t = op.input + 1;
    if (IsConv(op) && rows && tile.computed[k + 1].length() > 0) {
      const int32_t window = Window(op, true, tile.computed[k + 1]).start;
      const int32_t first = window > tile.have_rows[t].start ? window : tile.have_rows[t].start;
      call = AxisCall{tile.have_rows[t].stop - first, tile.computed[k + 1].length(), first - window};
    } else if (IsConv(op) && !rows) {
      call = AxisCall{tile.have_cols[t].length(), tile.need_cols[k + 1].length(),
                      tile.have_cols[t].start - Window(op, false, tile.need_cols[k + 1]).start};
    }
    same = same && call == last[k];
    last[k] = call;
  }
  return same;
}

// Where each tensor's patch lies in the scratch buffer (offset[t], -1 for none: PAD outputs, and the output
// of the last op when it writes into the stage output), the patches' size, and the most scratch a conv asks
// for on any tile. Tiles run column strip by column strip, each strip's bands top to bottom (see NeedRows).
// Rows depend on the band alone and columns on the strip alone, so a patch's largest tile is its most rows by
// its most columns, and the convs' scratch is asked for once per band whose convs' rows differ from the band
// above's, with each strip whose convs' columns differ from the strip before's: one pass over the bands and
// one over the strips per such band, not one per tile (Eval runs this too).
// Patches are sized for their largest tile and placed first fit by lifetime within a tile. A patch whose rows
// overlap the previous band's (carried) lives for the whole band: its shared rows wait for the next band.
// The input's patch is copied afresh per band instead (a copy costs less than the bytes kept).
inline bool Layout(const tt_tiled_stage_params& params, const tt_dims& input, int32_t* offset, int32_t* bytes,
                   int32_t* conv_bytes) {
  const int32_t n = params.num_ops;
  int32_t size[TT_STAGE_MAX_OPS + 1] = {0};
  int32_t most_rows[TT_STAGE_MAX_OPS + 1] = {0};
  int32_t most_cols[TT_STAGE_MAX_OPS + 1] = {0};
  int32_t last[TT_STAGE_MAX_OPS + 1] = {0};
  bool carried[TT_STAGE_MAX_OPS + 1] = {false};
  Span previous[TT_STAGE_MAX_OPS + 1];
  AxisCall band_calls[TT_STAGE_MAX_OPS] = {}, strip_calls[TT_STAGE_MAX_OPS] = {};
  StageTile tile;
  StageShapes(params, input, &tile);
  for (int32_t tx = 0; tx < params.tiles_w; ++tx) {
    if (!NeedCols(params, tx, &tile)) return false;
    for (int32_t t = 0; t <= n; ++t) {
      most_cols[t] = tile.need_cols[t].length() > most_cols[t] ? tile.need_cols[t].length() : most_cols[t];
    }
  }
  *conv_bytes = 0;
  for (int32_t ty = 0; ty < params.tiles_h; ++ty) {
    if (!NeedRows(params, ty, ty > 0 ? previous : nullptr, &tile)) return false;
    for (int32_t t = 0; t <= n; ++t) {
      most_rows[t] = tile.need_rows[t].length() > most_rows[t] ? tile.need_rows[t].length() : most_rows[t];
      carried[t] = carried[t] || tile.computed[t].start > tile.need_rows[t].start;
      previous[t] = tile.need_rows[t];
    }
    if (SameCalls(params, tile, true, band_calls) && ty > 0) continue;
    for (int32_t tx = 0; tx < params.tiles_w; ++tx) {
      NeedCols(params, tx, &tile);  // succeeded above
      if (SameCalls(params, tile, false, strip_calls) && tx > 0) continue;
      if (!TileConvScratch(params, tile, conv_bytes)) return false;
    }
  }
  for (int32_t t = 0; t <= n; ++t) {
    const int64_t patch = int64_t{most_rows[t]} * most_cols[t] * tile.dims[t].c;
    if (patch > INT32_MAX / 2) return false;  // no buffer of 1 GB: and the sums below stay in range
    size[t] = static_cast<int32_t>(patch);
  }
  int64_t sum = 0;
  for (int32_t t = 0; t <= n; ++t) sum += size[t] + 3;
  if (sum > INT32_MAX / 2) return false;  // so no offset below overflows
  for (int32_t k = 0; k < n; ++k) {
    const StageOp op = StageOpAt(params, k);
    int32_t sources[2];
    for (int32_t i = 0, count = Sources(op, sources); i < count; ++i) last[tile.root[sources[i] + 1]] = k;
  }
  for (int32_t t = 0; t <= n; ++t) last[t] = carried[t] ? n : last[t];
  *bytes = 0;
  for (int32_t t = 0; t <= n; ++t) {
    const bool stored = tile.root[t] == t && !(t == n && params.tiles_w == 1);
    offset[t] = -1;
    if (!stored) continue;
    const int32_t first = carried[t] ? -1 : t - 1, length = (size[t] + 3) / 4 * 4;
    int32_t at = 0;
    for (bool moved = true; moved;) {  // past every earlier patch alive with this one that it would overlap
      moved = false;
      for (int32_t u = 0; u < t; ++u) {
        if (offset[u] >= 0 && last[u] >= first && at < offset[u] + size[u] && offset[u] < at + length) {
          at = (offset[u] + size[u] + 3) / 4 * 4;
          moved = true;
        }
      }
    }
    offset[t] = at;
    *bytes = at + length > *bytes ? at + length : *bytes;
  }
  return true;
}

// The scratch the stage needs: its patches (offsets as Layout places them), then its convs' ctx at
// *conv_at, aligned for it.
inline bool StageScratch(const tt_tiled_stage_params& params, const tt_dims& input, int32_t* offset,
                         int32_t* conv_at, int32_t* conv_bytes, int32_t* bytes) {
  if (!Layout(params, input, offset, bytes, conv_bytes)) return false;
  *conv_at = (*bytes + 15) / 16 * 16;
  const int64_t total = int64_t{*conv_at} + *conv_bytes;
  if (total > INT32_MAX / 2) return false;
  if (*conv_bytes > 0) *bytes = static_cast<int32_t>(total);
  return true;
}

}  // namespace tinytrain_core

#endif  // TINYTRAIN_KERNELS_CORE_COMMON_TILED_STAGE_H_

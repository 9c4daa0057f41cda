#include <string.h>

#include "../common/conv_forward.h"
#include "../common/tiled_stage.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

namespace {

// TFLite's int8 ADD of two patches over `rows` x the tile's columns, each read where its patch (have) holds them.
void AddPatch(const core::StageOp& op, const core::StageTile& tile, const int8_t* const* data, int32_t k,
              core::Span rows, int8_t* out) {
  const core::Span cols = tile.need_cols[k + 1];
  const int32_t channels = op.channels;
  const int32_t a = op.input + 1, b = op.input2 + 1;
  for (int32_t y = rows.start; y < rows.stop; ++y) {
    const int8_t* x1 = data[a] + ((y - tile.have_rows[a].start) * tile.have_cols[a].length() +
                                  (cols.start - tile.have_cols[a].start)) * channels;
    const int8_t* x2 = data[b] + ((y - tile.have_rows[b].start) * tile.have_cols[b].length() +
                                  (cols.start - tile.have_cols[b].start)) * channels;
    for (int32_t i = 0; i < cols.length() * channels; ++i) {
      const int32_t left = static_cast<int32_t>(static_cast<uint32_t>(x1[i] + op.conv.input_offset) << op.left_shift);
      const int32_t right = static_cast<int32_t>(static_cast<uint32_t>(x2[i] + op.input2_offset) << op.left_shift);
      const int32_t sum = core::Requantize(left, op.input_multiplier, op.input_shift) +
                          core::Requantize(right, op.input2_multiplier, op.input2_shift);
      int32_t value = core::Requantize(sum, op.output_multiplier, op.output_shift) + op.conv.output_offset;
      value = value < op.conv.activation_min ? op.conv.activation_min : value;
      value = value > op.conv.activation_max ? op.conv.activation_max : value;
      *out++ = static_cast<int8_t>(value);
    }
  }
}

// Conv op k over output rows `rows` of its tile patch, reading its input's patch, with the convs' scratch `ctx`:
// tt_conv2d_s8 or tt_depthwise_conv2d_s8 past the checks Eval and Layout made.
tt_status ConvPatch(const tt_context* ctx, const core::StageOp& op, const tt_stage_weights& weights,
                    const core::StageTile& tile, const int8_t* const* data, int32_t k, core::Span rows, int8_t* out) {
  int32_t input_row = 0;
  const core::ConvPatchArgs a = core::PatchArgs(op, tile, k, rows, &input_row);
  const int8_t* input = data[op.input + 1] + input_row * a.input.w * a.input.c;
  if (op.kind == TT_STAGE_OP_DEPTHWISE) {  // checked once per Eval and geometry (see core::Conv2dS8)
    return core::DepthwiseConv2dS8(ctx, a.params, a.input, input, a.filter, weights.filter, weights.bias,
                                   weights.requant, a.output, out);
  }
  return core::Conv2dS8(ctx, a.params, a.input, input, a.filter, weights.filter, weights.bias, weights.requant,
                        a.output, out);
}

struct Image {
  const int8_t* data;
  const tt_dims* dims;
};

// The reader of an input in memory: a row's columns copied out of it.
tt_status ReadFromMemory(void* context, int32_t row, int32_t col, int32_t cols, int8_t* out) {
  const Image& image = *static_cast<const Image*>(context);
  memcpy(out, image.data + (row * image.dims->w + col) * image.dims->c, static_cast<size_t>(cols * image.dims->c));
  return TT_SUCCESS;
}

}  // namespace

extern "C" tt_status tt_tiled_stage_s8(const tt_tiled_stage_params* params, const tt_stage_weights* weights,
                                       int8_t* scratch, int32_t scratch_bytes, const tt_dims* input_dims,
                                       const int8_t* input, const tt_dims* output_dims, int8_t* output) {
  if (input == nullptr || input_dims == nullptr) return TT_ARG_ERROR;
  Image image{input, input_dims};
  return tt_tiled_stage_read_s8(params, weights, scratch, scratch_bytes, input_dims, ReadFromMemory, &image,
                                output_dims, output);
}

extern "C" tt_status tt_tiled_stage_read_s8(const tt_tiled_stage_params* params, const tt_stage_weights* weights,
                                            int8_t* scratch, int32_t scratch_bytes, const tt_dims* input_dims,
                                            tt_stage_row_reader read, void* context, const tt_dims* output_dims,
                                            int8_t* output) {
  int32_t offset[TT_STAGE_MAX_OPS + 1];
  int32_t needed = 0, conv_at = 0, conv_bytes = 0;
  if (!core::ValidStage(params, input_dims) || weights == nullptr || read == nullptr || output == nullptr ||
      output_dims == nullptr || !core::StageScratch(*params, *input_dims, offset, &conv_at, &conv_bytes, &needed) ||
      scratch_bytes < needed || (needed > 0 && scratch == nullptr)) {
    return TT_ARG_ERROR;
  }
  const tt_context conv_ctx{conv_bytes > 0 ? scratch + conv_at : nullptr, conv_bytes};
  const int32_t n = params->num_ops;
  const core::StageOp last = core::StageOpAt(*params, n - 1);
  if (output_dims->n != 1 || output_dims->h != last.height || output_dims->w != last.width ||
      output_dims->c != last.channels) {
    return TT_ARG_ERROR;
  }
  for (int32_t k = 0; k < n; ++k) {
    const core::StageOp op = core::StageOpAt(*params, k);
    if (core::IsConv(op) && (weights[k].filter == nullptr || !core::ValidRequantization(&weights[k].requant, op.channels))) {
      return TT_ARG_ERROR;
    }
  }
  const int32_t row_bytes = output_dims->w * output_dims->c;
  core::StageTile tile;
  core::Span previous[TT_STAGE_MAX_OPS + 1];  // the need rows of the band above, in this column strip
  const int8_t* data[TT_STAGE_MAX_OPS + 1];
  core::StageShapes(*params, *input_dims, &tile);
  for (int32_t tx = 0; tx < params->tiles_w; ++tx) {
    core::NeedCols(*params, tx, &tile);  // succeeded in Layout, as every band's NeedRows
    for (int32_t ty = 0; ty < params->tiles_h; ++ty) {
      core::NeedRows(*params, ty, ty > 0 ? previous : nullptr, &tile);
      const int32_t patch_row = tile.need_cols[0].length() * input_dims->c;
      for (int32_t y = tile.need_rows[0].start; y < tile.need_rows[0].stop; ++y) {
        const tt_status status = read(context, y, tile.need_cols[0].start, tile.need_cols[0].length(),
                                      scratch + offset[0] + (y - tile.need_rows[0].start) * patch_row);
        if (status != TT_SUCCESS) return status;
      }
      data[0] = scratch + offset[0];
      for (int32_t k = 0; k < n; ++k) {
        const core::StageOp op = core::StageOpAt(*params, k);
        const int32_t t = k + 1;
        if (op.kind == TT_STAGE_OP_PAD) {
          data[t] = data[op.input + 1];
          continue;
        }
        const bool direct = offset[t] < 0;  // the last op's row band, straight into the output
        const core::Span need = tile.need_rows[t];
        const int32_t patch_row_bytes = direct ? row_bytes : tile.need_cols[t].length() * op.channels;
        int8_t* patch = direct ? output + need.start * row_bytes : scratch + offset[t];
        const core::Span rows = tile.computed[t];
        const int32_t kept = (rows.start < need.stop ? rows.start : need.stop) - need.start;
        if (kept > 0) {  // rows the band above computed (see core::Need): to the patch's top
          memmove(patch, patch + (need.start - previous[t].start) * patch_row_bytes,
                  static_cast<size_t>(kept * patch_row_bytes));
        }
        data[t] = patch;
        if (rows.length() <= 0) continue;
        int8_t* out = patch + (rows.start - need.start) * patch_row_bytes;
        if (op.kind == TT_STAGE_OP_ADD) {
          AddPatch(op, tile, data, k, rows, out);
        } else {
          const tt_status status = ConvPatch(&conv_ctx, op, weights[k], tile, data, k, rows, out);
          if (status != TT_SUCCESS) return status;
        }
      }
      if (offset[n] >= 0) {  // a 2-D tile: its rows into the output
        const int32_t tile_row = tile.need_cols[n].length() * output_dims->c;
        for (int32_t y = 0; y < tile.need_rows[n].length(); ++y) {
          memcpy(output + (tile.need_rows[n].start + y) * row_bytes + tile.need_cols[n].start * output_dims->c,
                 scratch + offset[n] + y * tile_row, static_cast<size_t>(tile_row));
        }
      }
      for (int32_t t = 0; t <= n; ++t) previous[t] = tile.need_rows[t];
    }
  }
  return TT_SUCCESS;
}

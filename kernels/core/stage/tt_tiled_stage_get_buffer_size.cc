#include "../common/tiled_stage.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_tiled_stage_get_buffer_size(const tt_tiled_stage_params* params, const tt_dims* input_dims,
                                                    int32_t* bytes) {
  int32_t offset[TT_STAGE_MAX_OPS + 1];
  int32_t conv_at = 0, conv_bytes = 0;
  if (bytes == nullptr || !core::ValidStage(params, input_dims) ||
      !core::StageScratch(*params, *input_dims, offset, &conv_at, &conv_bytes, bytes)) {
    return TT_ARG_ERROR;
  }
  return TT_SUCCESS;
}

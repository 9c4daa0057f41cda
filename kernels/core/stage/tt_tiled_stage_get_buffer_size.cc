#include "../common/tiled_stage.h"
#include "../tt_functions.h"

namespace core = tinytrain_core;

extern "C" tt_status tt_tiled_stage_get_buffer_size(const tt_tiled_stage_params* params, const tt_dims* input_dims,
                                                    int32_t* bytes) {
  int32_t offset[TT_STAGE_MAX_OPS + 1];
  if (bytes == nullptr || !core::ValidStage(params, input_dims) || !core::Layout(*params, *input_dims, offset, bytes)) {
    return TT_ARG_ERROR;
  }
  return TT_SUCCESS;
}

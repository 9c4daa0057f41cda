// Entry points of the host plugin library for the pinned tflite-micro wheel:
// the registerer the wheel looks up by name and calls with its
// PythonOpsResolver, and the schema version.
#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "host_resolver.h"
#include "tinytrain_ops.h"

namespace {

#define TT_CUSTOM_OP(NAME, CUSTOM_NAME) {CUSTOM_NAME, tinytrain::Register_##NAME},
constexpr tinytrain::CustomOp kAllOps[] = {TT_FOR_EACH_OP(TT_CUSTOM_OP)};
#undef TT_CUSTOM_OP

}  // namespace

// Registerer for Interpreter(custom_op_registerers=["TinyTrainRegisterOps"]).
TT_EXPORT bool TinyTrainRegisterOps(void* resolver) {
  return tinytrain::AddToHostResolver(resolver, kAllOps, sizeof(kAllOps) / sizeof(kAllOps[0]));
}

// Lets Python refuse a stale library built from another schema version.
TT_EXPORT int TinyTrainSchemaVersion(void) { return TT_SCHEMA_VERSION; }

// The scratch bytes TT_TILED_STAGE requests in Prepare for a stage description on a [1, h, w, c] input, or -1
// where the kernel rejects it: the compiler's memory plan and its choice of a tiling call the kernel's own code.
TT_EXPORT int32_t TinyTrainTiledStageScratch(const int32_t* description, int32_t num_ops, int32_t tiles_h,
                                             int32_t tiles_w, int32_t h, int32_t w, int32_t c) {
  const tt_tiled_stage_params params{description, num_ops, tiles_h, tiles_w};
  const tt_dims input{1, h, w, c};
  int32_t bytes = 0;
  return tt_tiled_stage_get_buffer_size(&params, &input, &bytes) == TT_SUCCESS ? bytes : -1;
}

// The streamed sample of a model compiled with stream_input (tinytrain::SetStreamedInput): `image` (`bytes`
// long), or with `image` null a row reader, until the next call; both null take it away. The caller keeps
// them alive while it invokes.
TT_EXPORT void TinyTrainSetStreamedInput(const int8_t* image, int32_t bytes, tt_stage_row_reader read, void* context) {
  static tinytrain::StreamedInput input;
  input = tinytrain::StreamedInput{image, bytes, read, context};
  tinytrain::SetStreamedInput(image == nullptr && read == nullptr ? nullptr : &input);
}

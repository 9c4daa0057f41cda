// Entry points of the host plugin library for the pinned tflite-micro wheel:
// the registerer the wheel looks up by name and calls with its
// PythonOpsResolver, and the schema version.
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

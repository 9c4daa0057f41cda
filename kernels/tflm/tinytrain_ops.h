// Declarations of every tinytrain op's registration. The op list comes from
// the schema (TT_FOR_EACH_OP), so names are typed in one place only. A
// firmware adds them to its resolver with tinytrain_resolver.h.
#ifndef TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_
#define TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_

#include "../core/tt_schema_generated.h"
#include "tflm_api.h"

namespace tinytrain {

// Number of custom ops AddTinyTrainOps adds: size resolvers with it.
constexpr unsigned int kNumOps = TT_NUM_OPS;

#define TT_DECLARE_REGISTER(NAME, CUSTOM_NAME) const TFLMRegistration* Register_##NAME();
TT_FOR_EACH_OP(TT_DECLARE_REGISTER)
#undef TT_DECLARE_REGISTER

// A custom op as a resolver's AddCustom takes it.
struct CustomOp {
  const char* name;
  const TFLMRegistration* (*registration)();
};

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_

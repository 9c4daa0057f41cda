// Registration of every tinytrain custom op. The op list comes from the
// schema (TT_FOR_EACH_OP), so names are typed in one place only.
//
// Firmware (real TFLM headers):
//   tflite::MicroMutableOpResolver<kNumBuiltins + tinytrain::kNumOps> resolver;
//   ... resolver.AddConv2D(); ...
//   if (tinytrain::AddTinyTrainOps(resolver) != kTfLiteOk) { /* resolver too small */ }
#ifndef TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_
#define TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_

#include "../core/tt_schema_generated.h"
#include "tflm_api.h"

#if defined(TINYTRAIN_REAL_TFLM)
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#endif

namespace tinytrain {

// Number of custom ops AddTinyTrainOps adds: size resolvers with it.
constexpr unsigned int kNumOps = TT_NUM_OPS;

#define TT_DECLARE_REGISTER(NAME, CUSTOM_NAME) const TFLMRegistration* Register_##NAME();
TT_FOR_EACH_OP(TT_DECLARE_REGISTER)
#undef TT_DECLARE_REGISTER

#if defined(TINYTRAIN_REAL_TFLM)
// Adds every tinytrain op under its schema name. Fails (and TFLM prints why)
// when the resolver is full or an op is already registered.
template <unsigned int tOpCount>
TfLiteStatus AddTinyTrainOps(tflite::MicroMutableOpResolver<tOpCount>& resolver) {
#define TT_ADD_OP(NAME, CUSTOM_NAME) \
  if (resolver.AddCustom(CUSTOM_NAME, Register_##NAME()) != kTfLiteOk) return kTfLiteError;
  TT_FOR_EACH_OP(TT_ADD_OP)
#undef TT_ADD_OP
  return kTfLiteOk;
}
#endif

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_

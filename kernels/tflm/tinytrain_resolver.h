// Firmware only (real TFLM headers): adds every tinytrain op to a TFLM resolver.
//
//   tflite::MicroMutableOpResolver<kNumBuiltins + tinytrain::kNumOps> resolver;
//   ... resolver.AddConv2D(); ...
//   if (tinytrain::AddTinyTrainOps(resolver) != kTfLiteOk) { /* resolver too small */ }
#ifndef TINYTRAIN_KERNELS_TFLM_TINYTRAIN_RESOLVER_H_
#define TINYTRAIN_KERNELS_TFLM_TINYTRAIN_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tinytrain_ops.h"

namespace tinytrain {

// Adds every tinytrain op under its schema name. Fails (and TFLM prints why)
// when the resolver is full or an op is already registered.
template <unsigned int tOpCount>
TfLiteStatus AddTinyTrainOps(tflite::MicroMutableOpResolver<tOpCount>& resolver) {
// Legacy TFLM's AddCustom takes a non-const pointer; it only copies the registration.
#if defined(TINYTRAIN_LEGACY_TFLM_REGISTRATION)
#define TT_REGISTRATION(NAME) const_cast<TFLMRegistration*>(Register_##NAME())
#else
#define TT_REGISTRATION(NAME) Register_##NAME()
#endif
#define TT_ADD_OP(NAME, CUSTOM_NAME) \
  if (resolver.AddCustom(CUSTOM_NAME, TT_REGISTRATION(NAME)) != kTfLiteOk) return kTfLiteError;
  TT_FOR_EACH_OP(TT_ADD_OP)
#undef TT_ADD_OP
#undef TT_REGISTRATION
  return kTfLiteOk;
}

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_TINYTRAIN_RESOLVER_H_

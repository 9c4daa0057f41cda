// The one switch between the two kernel builds. A firmware build defines
// TINYTRAIN_REAL_TFLM (kernels/CMakeLists.txt does when given TFLM_ROOT; the
// Arduino IDE's ARDUINO define counts too, as sketches cannot pass defines to a
// library) and compiles the glue against TFLM's own headers; the host build for
// the pinned wheel uses tflm_abi.h. The glue uses only names both provide.
#ifndef TINYTRAIN_KERNELS_TFLM_TFLM_API_H_
#define TINYTRAIN_KERNELS_TFLM_TFLM_API_H_

#if defined(TINYTRAIN_REAL_TFLM) || defined(ARDUINO)
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_context.h"
#if __has_include("tensorflow/lite/micro/micro_common.h")
#include "tensorflow/lite/micro/micro_common.h"
#else
// TFLM before TFLMRegistration (mid-2023), e.g. the Arduino_TensorFlowLite
// library's last release: ops register a TfLiteRegistration, which has no
// reset callback (kernel_util.h's RegisterOp adapts).
#define TINYTRAIN_LEGACY_TFLM_REGISTRATION 1
typedef TfLiteRegistration TFLMRegistration;
#endif
#else
#include "tflm_abi.h"
#endif

#endif  // TINYTRAIN_KERNELS_TFLM_TFLM_API_H_

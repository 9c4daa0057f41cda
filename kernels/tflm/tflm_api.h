// The one switch between the two kernel builds. A firmware build defines
// TINYTRAIN_REAL_TFLM (kernels/CMakeLists.txt does when given TFLM_ROOT) and
// compiles the glue against TFLM's own headers; the host build for the pinned
// wheel uses tflm_abi.h. The glue uses only names both provide.
#ifndef TINYTRAIN_KERNELS_TFLM_TFLM_API_H_
#define TINYTRAIN_KERNELS_TFLM_TFLM_API_H_

#if defined(TINYTRAIN_REAL_TFLM)
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_context.h"
#else
#include "tflm_abi.h"
#endif

#endif  // TINYTRAIN_KERNELS_TFLM_TFLM_API_H_

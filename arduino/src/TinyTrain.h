// tinytrain for Arduino. Include it after <TensorFlowLite.h>: it gives
// tinytrain::AddTinyTrainOps(resolver) and tinytrain::kNumOps (see the
// TrainOnDevice example). The sources under tinytrain/ are tinytrain-tflm's
// kernels, copied here by `tinytrain-tflm arduino-library`.
#ifndef TINYTRAIN_ARDUINO_TINYTRAIN_H_
#define TINYTRAIN_ARDUINO_TINYTRAIN_H_

#include "tinytrain/tflm/tinytrain_resolver.h"

#endif  // TINYTRAIN_ARDUINO_TINYTRAIN_H_

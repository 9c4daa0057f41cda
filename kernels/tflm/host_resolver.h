// Host build only: adding custom ops to the pinned tflite-micro wheel's op
// resolver, for the registerers the wheel calls by name (register_host.cc for
// every tinytrain op, a generated host_registerer.cc for one model's).
#ifndef TINYTRAIN_KERNELS_TFLM_HOST_RESOLVER_H_
#define TINYTRAIN_KERNELS_TFLM_HOST_RESOLVER_H_

#include <stddef.h>

#include "tinytrain_ops.h"

// Entry points of a host plugin library are the only visible symbols.
#define TT_EXPORT extern "C" __attribute__((visibility("default")))

namespace tinytrain {

// Checks that `resolver` is the wheel's PythonOpsResolver, then appends each
// op as AddCustom would. False (with a line on stderr) when the layout is
// another build's, the resolver is full or an op is already registered.
bool AddToHostResolver(void* resolver, const CustomOp* ops, size_t count);

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_HOST_RESOLVER_H_

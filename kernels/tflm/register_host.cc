// Entry points of the host plugin library for the pinned tflite-micro wheel.
// The wheel looks a registerer up by name and calls it with its
// PythonOpsResolver, a MicroMutableOpResolver<200> whose layout was measured
// on that build (shared BRIEF section 2). This file appends our registrations
// to it exactly as AddCustom does, using no TFLM symbol, after checking that
// the object really has that layout: a mismatch is a message, not a crash.
#include <stdio.h>
#include <string.h>

#include "../core/tt_schema_generated.h"
#include "tinytrain_ops.h"

#define TT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

constexpr unsigned int kResolverCapacity = 200;
constexpr size_t kRegistrationsOffset = 8;    // after the vtable pointer
constexpr size_t kLengthOffset = 11208;       // 8 + 200 * sizeof(TFLMRegistration)
constexpr int32_t kBuiltinConv2d = 3;         // BuiltinOperator_CONV_2D
constexpr int32_t kBuiltinCustom = 32;        // BuiltinOperator_CUSTOM
constexpr int32_t kBuiltinCodeLimit = 1024;   // far above any BuiltinOperator value

static_assert(kLengthOffset == kRegistrationsOffset + kResolverCapacity * sizeof(TFLMRegistration),
              "resolver layout");

struct ResolverView {
  TFLMRegistration* registrations;
  unsigned int* length;
};

ResolverView View(void* resolver) {
  auto* base = static_cast<unsigned char*>(resolver);
  return {reinterpret_cast<TFLMRegistration*>(base + kRegistrationsOffset),
          reinterpret_cast<unsigned int*>(base + kLengthOffset)};
}

// The wheel pre-registers its builtin ops (117 on 1fae604), CONV_2D among
// them; anything else means another TFLM build with another layout.
const char* LayoutProblem(const ResolverView& view) {
  const unsigned int length = *view.length;
  if (length == 0 || length > kResolverCapacity) return "registration count out of range";
  bool has_conv = false;
  for (unsigned int i = 0; i < length; ++i) {
    const TFLMRegistration& r = view.registrations[i];
    if (r.builtin_code < 0 || r.builtin_code >= kBuiltinCodeLimit) return "builtin code out of range";
    if (r.builtin_code == kBuiltinCustom && r.custom_name == nullptr) return "custom op without a name";
    if (r.builtin_code == kBuiltinConv2d && r.invoke != nullptr) has_conv = true;
  }
  return has_conv ? nullptr : "no CONV_2D registration found";
}

bool IsRegistered(const ResolverView& view, const char* name) {
  for (unsigned int i = 0; i < *view.length; ++i) {
    const TFLMRegistration& r = view.registrations[i];
    if (r.builtin_code == kBuiltinCustom && strcmp(r.custom_name, name) == 0) return true;
  }
  return false;
}

bool AddCustom(const ResolverView& view, const char* name, const TFLMRegistration* registration) {
  if (*view.length >= kResolverCapacity) {
    fprintf(stderr, "tinytrain: resolver is full, cannot add %s\n", name);
    return false;
  }
  if (IsRegistered(view, name)) {
    fprintf(stderr, "tinytrain: op %s is already registered\n", name);
    return false;
  }
  TFLMRegistration& slot = view.registrations[*view.length];
  slot = *registration;
  slot.builtin_code = kBuiltinCustom;
  slot.custom_name = name;
  *view.length += 1;
  return true;
}

}  // namespace

// Registerer for Interpreter(custom_op_registerers=["TinyTrainRegisterOps"]).
TT_EXPORT bool TinyTrainRegisterOps(void* resolver) {
  if (resolver == nullptr) return false;
  const ResolverView view = View(resolver);
  if (const char* problem = LayoutProblem(view)) {
    fprintf(stderr,
            "tinytrain: the op resolver does not have the layout of tflite-micro "
            "0.dev20261002031052 (%s); install that exact version\n",
            problem);
    return false;
  }
#define TT_ADD_OP(NAME, CUSTOM_NAME) \
  if (!AddCustom(view, CUSTOM_NAME, tinytrain::Register_##NAME())) return false;
  TT_FOR_EACH_OP(TT_ADD_OP)
#undef TT_ADD_OP
  return true;
}

// Lets Python refuse a stale library built from another schema version.
TT_EXPORT int TinyTrainSchemaVersion(void) { return TT_SCHEMA_VERSION; }

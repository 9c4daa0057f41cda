// The wheel's op resolver, seen through the layout measured on the pinned
// build (shared BRIEF section 2): a MicroMutableOpResolver<200> whose
// registrations this file appends to exactly as AddCustom does, using no TFLM
// symbol, after checking that the object really has that layout: a mismatch
// is a message, not a crash.
#include "host_resolver.h"

#include <stdio.h>
#include <string.h>

namespace tinytrain {
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

bool AddToHostResolver(void* resolver, const CustomOp* ops, size_t count) {
  if (resolver == nullptr) return false;
  const ResolverView view = View(resolver);
  if (const char* problem = LayoutProblem(view)) {
    fprintf(stderr,
            "tinytrain: the op resolver does not have the layout of tflite-micro "
            "0.dev20261002031052 (%s); install that exact version\n",
            problem);
    return false;
  }
  for (size_t i = 0; i < count; ++i) {
    if (!AddCustom(view, ops[i].name, ops[i].registration())) return false;
  }
  return true;
}

}  // namespace tinytrain

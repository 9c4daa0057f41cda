#include "../tt_functions.h"
#include "activation_pass.h"

extern "C" tt_status tt_activation_mask_s8(const tt_activation_params* params, int32_t count, const int8_t* y,
                                           uint8_t* mask) {
  if (!tinytrain_core::ValidActivationParams(params) || count < 1 || y == nullptr || mask == nullptr) {
    return TT_ARG_ERROR;
  }
  for (int32_t byte = 0; byte < TT_ACTIVATION_MASK_BYTES(count); ++byte) {
    uint8_t bits = 0;  // The last byte's bits past `count` stay 0.
    for (int32_t bit = 0; bit < 8 && byte * 8 + bit < count; ++bit) {
      if (tinytrain_core::InsideClampRange(*params, y[byte * 8 + bit])) bits |= static_cast<uint8_t>(1u << bit);
    }
    mask[byte] = bits;
  }
  return TT_SUCCESS;
}

#include "../tt_functions.h"
#include "grad_io.h"

extern "C" tt_status tt_grad_add(int32_t count, const tt_grad_in* a, const tt_grad_in* b, tt_grad_out* sum) {
  if (count < 1 || !tinytrain_core::ValidGradIn(a) || !tinytrain_core::ValidGradIn(b) ||
      !tinytrain_core::ValidGradOut(sum)) {
    return TT_ARG_ERROR;
  }
  tinytrain_core::WithGradReader(*a, [&](auto a_values) {
    tinytrain_core::WithGradReader(*b, [&](auto b_values) {
      tinytrain_core::WriteGrad(*sum, [&](auto sink) {
        for (int32_t i = 0; i < count; ++i) sink(a_values[i] + b_values[i]);
      });
    });
  });
  return TT_SUCCESS;
}

#include "../tt_functions.h"
#include "grad_io.h"

extern "C" tt_status tt_grad_add(int32_t count, const tt_grad_in* a, const tt_grad_in* b, tt_grad_out* sum) {
  if (count < 1 || !tinytrain_core::ValidGradIn(a) || !tinytrain_core::ValidGradIn(b) ||
      !tinytrain_core::ValidGradOut(sum)) {
    return TT_ARG_ERROR;
  }
  const tinytrain_core::CountShape shape{count};
  const float reference = tinytrain_core::GradAddReference(*a, *b);
  tinytrain_core::WithGradReader(*a, [&](auto a_values) {
    tinytrain_core::WithGradReader(*b, [&](auto b_values) {
      tinytrain_core::WriteGrad(
          *sum, [&](auto& sink) { tinytrain_core::GradAdd(shape, a_values, b_values, sink); }, reference);
    });
  });
  return TT_SUCCESS;
}

#include "../common/grad_io.h"
#include "../tt_functions.h"

extern "C" tt_status tt_sgd_accumulate(const tt_sgd_dims* dims, const tt_grad_in* grad, float* sum) {
  if (dims == nullptr || !tinytrain_core::ValidGradIn(grad) || sum == nullptr || dims->outer < 1 ||
      dims->channels_to_update < 1 || dims->inner < 1) {
    return TT_ARG_ERROR;
  }
  const int32_t count = dims->outer * dims->channels_to_update * dims->inner;
  tinytrain_core::WithGradReader(*grad, [&](auto g) {
    for (int32_t i = 0; i < count; ++i) sum[i] += g[i];
  });
  return TT_SUCCESS;
}

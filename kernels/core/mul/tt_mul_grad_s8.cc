#include "../common/grad_io.h"
#include "../tt_functions.h"
#include "mul_grad.h"

namespace {

bool ValidDims(const tt_dims* d) { return d != nullptr && d->n >= 1 && d->h >= 1 && d->w >= 1 && d->c >= 1; }

}  // namespace

extern "C" tt_status tt_mul_grad_s8(const tt_quant_params* other_quant, const tt_dims* grad_output_dims,
                                    const tt_grad_in* grad_output, const tt_dims* other_dims, const int8_t* other,
                                    const tt_dims* grad_input_dims, tt_grad_out* grad_input) {
  if (other_quant == nullptr || !(other_quant->scale > 0.0f) || other_quant->zero_point < -128 ||
      other_quant->zero_point > 127 || !ValidDims(grad_output_dims) || !ValidDims(other_dims) ||
      !ValidDims(grad_input_dims) || other == nullptr || !tinytrain_core::ValidGradIn(grad_output) ||
      !tinytrain_core::ValidGradOut(grad_input) ||
      !tinytrain_core::BroadcastsTo(*other_dims, *grad_output_dims) ||
      !tinytrain_core::BroadcastsTo(*grad_input_dims, *grad_output_dims)) {
    return TT_ARG_ERROR;
  }
  const tinytrain_core::MulGradShape shape{*other_quant, *grad_output_dims, *other_dims, *grad_input_dims};
  tinytrain_core::WithGrads(*grad_output, *grad_input,
                            [&](auto grad, auto& sink) { tinytrain_core::MulGrad(shape, grad, other, sink); });
  return TT_SUCCESS;
}

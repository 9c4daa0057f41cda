// Declarations of every tinytrain op's registration. The op list comes from
// the schema (TT_FOR_EACH_OP), so names are typed in one place only. A
// firmware adds them to its resolver with tinytrain_resolver.h.
#ifndef TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_
#define TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "tflm_api.h"

namespace tinytrain {

// Number of custom ops AddTinyTrainOps adds: size resolvers with it.
constexpr unsigned int kNumOps = TT_NUM_OPS;

#define TT_DECLARE_REGISTER(NAME, CUSTOM_NAME) const TFLMRegistration* Register_##NAME();
TT_FOR_EACH_OP(TT_DECLARE_REGISTER)
#undef TT_DECLARE_REGISTER

// A custom op as a resolver's AddCustom takes it.
struct CustomOp {
  const char* name;
  const TFLMRegistration* (*registration)();
};

// The sample of a training model compiled with a streamed input (compile(stream_input=True)): its tiled
// first stage (TT_TILED_STAGE) reads the image from here, a few rows per tile into its scratch buffer,
// and the image is no tensor of the arena. Set it before every Invoke(); it stays until set again.
// Either `image`, the whole int8 sample [h, w, c] row-major (train_model.h's kSampleBytes: a constant
// in flash, a camera's frame buffer, or any RAM outside the arena, which still counts as the device's
// RAM), or, with `image` null, `read`, which fills one row's columns on demand (a camera or file
// that delivers rows; halo rows are asked for again by each tile that needs them).
struct StreamedInput {
  const int8_t* image;
  int32_t bytes;  // image's bytes: Invoke fails when they are fewer than the sample's
  tt_stage_row_reader read;
  void* context;  // read's first argument
};

// One source per program: nullptr takes it away (Invoke then fails with a message naming the call).
void SetStreamedInput(const StreamedInput* input);

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_TINYTRAIN_OPS_H_

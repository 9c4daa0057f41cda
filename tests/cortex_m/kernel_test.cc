// Runs every kernel core function on the cases of references.h (generated in NumPy by
// generate_references.py) and checks the outputs: exact for integer outputs, within the
// documented bound for float ones. Prints one line per case,
//   PASS <case> digest=<FNV-1a of every output byte> instructions=<count or n/a>
// (FAIL with the mismatches above it), then a summary; returns 1 if any case failed. The same
// program runs bare metal on QEMU's Cortex-M boards and on the host, so the digests show
// whether both computed bit-identical outputs.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "case_types.h"
#include "platform.h"
#include "references.h"
#include "tt_blob.h"

namespace {

constexpr int kMaxMismatchesPrinted = 6;

// Outputs go here; inputs stay const (in flash on the target). Before each case they are filled
// with a pattern no kernel writes, so an element a kernel skips cannot pass by accident.
float g_f32[kMaxResultElements];
int8_t g_s8[kMaxResultElements];
int32_t g_s32[kMaxResultElements];
float g_momentum[kMaxResultElements];
float g_scale;
float g_loss;
// The forward convolutions' scratch: none in the portable core, CMSIS-NN's in the cmsis-nn kernel set.
alignas(8) int8_t g_scratch[8192];
constexpr uint8_t kUnwritten = 0xA5;  // as float: -2.9e-16, a NaN-free value no case expects

void FillUnwritten() {
  memset(g_f32, kUnwritten, sizeof(g_f32));
  memset(g_s8, kUnwritten, sizeof(g_s8));
  memset(g_s32, kUnwritten, sizeof(g_s32));
  memset(&g_scale, kUnwritten, sizeof(g_scale));
  memset(&g_loss, kUnwritten, sizeof(g_loss));
}

// The outcome of one case: mismatches, a digest of the outputs and the instruction count.
class CaseReport {
 public:
  explicit CaseReport(const char* name) : name_(name) { FillUnwritten(); }

  // Runs the kernel call `call` (returning tt_status) under the instruction counter.
  template <typename Call>
  tt_status Measure(Call&& call) {
    StartInstructionCount();
    const tt_status status = call();
    instructions_ = InstructionCount();
    return status;
  }

  void Mismatch(const char* format, ...) __attribute__((format(printf, 2, 3)));

  void ExpectStatus(tt_status got, tt_status want) {
    if (got != want) Mismatch("status %d (%s), want %d", got, tt_status_message(got), want);
  }

  // Outputs enter the digest in the order the kernel wrote them.
  void Digest(const void* bytes, size_t length) {
    const auto* p = static_cast<const uint8_t*>(bytes);
    for (size_t i = 0; i < length; ++i) digest_ = (digest_ ^ p[i]) * 16777619u;
  }

  // Prints the case's line; returns whether it passed.
  bool Finish() const {
    printf("%s %s digest=%08lx instructions=", mismatches_ == 0 ? "PASS" : "FAIL", name_,
           static_cast<unsigned long>(digest_));
    if (instructions_ < 0) {
      printf("n/a\n");
    } else {
      printf("%lu\n", static_cast<unsigned long>(instructions_));
    }
    return mismatches_ == 0;
  }

 private:
  const char* name_;
  int mismatches_ = 0;
  uint32_t digest_ = 2166136261u;
  int64_t instructions_ = -1;
};

void CaseReport::Mismatch(const char* format, ...) {
  if (mismatches_++ >= kMaxMismatchesPrinted) return;
  va_list args;
  va_start(args, format);
  printf("  %s: ", name_);
  vprintf(format, args);
  printf("\n");
  va_end(args);
}

double D(float x) { return static_cast<double>(x); }  // printf takes doubles

tt_grad_in GradIn(const GradOperand& g) {
  if (g.type == TT_GRAD_S8) return tt_grad_in{TT_GRAD_S8, g.s8, g.scale, 0};
  return tt_grad_in{TT_GRAD_F32, g.f32, 0.0f, 0};
}

tt_grad_out GradOut(tt_grad_type type) {
  if (type == TT_GRAD_S8) return tt_grad_out{TT_GRAD_S8, g_s8, &g_scale, nullptr};
  return tt_grad_out{TT_GRAD_F32, g_f32, nullptr, nullptr};
}

// Checks the gradient in g_f32 or g_s8 / g_scale against `want` (see ExpectedGrad).
void CheckGrad(const ExpectedGrad& want, CaseReport& report) {
  if (want.type == TT_GRAD_F32) {
    report.Digest(g_f32, sizeof(float) * want.count);
    for (int32_t i = 0; i < want.count; ++i) {
      if (!(fabsf(g_f32[i] - want.values[i]) <= want.tolerance[i])) {
        report.Mismatch("[%ld] got %.9g, want %.9g +- %.3g", static_cast<long>(i), D(g_f32[i]), D(want.values[i]),
                        D(want.tolerance[i]));
      }
    }
    return;
  }
  report.Digest(g_s8, want.count);
  report.Digest(&g_scale, sizeof(g_scale));
  if (want.s8_levels != nullptr) {
    if (memcmp(&g_scale, &want.s8_scale, sizeof(float)) != 0) {
      report.Mismatch("scale %.9g, want exactly %.9g", D(g_scale), D(want.s8_scale));
    }
    for (int32_t i = 0; i < want.count; ++i) {
      if (g_s8[i] != want.s8_levels[i]) report.Mismatch("[%ld] level %d, want %d", static_cast<long>(i), g_s8[i], want.s8_levels[i]);
    }
    return;
  }
  float max_abs = 0.0f;
  float max_tolerance = 0.0f;
  for (int32_t i = 0; i < want.count; ++i) {
    max_abs = fmaxf(max_abs, fabsf(want.values[i]));
    max_tolerance = fmaxf(max_tolerance, want.tolerance[i]);
  }
  // The kernel's scale is max|its float values| / 127; each value is within tolerance of want.
  const float want_scale = max_abs / 127.0f;
  if (!(fabsf(g_scale - want_scale) <= max_tolerance / 127.0f + 0x1p-22f * want_scale)) {
    report.Mismatch("scale %.9g, want %.9g", D(g_scale), D(want_scale));
  }
  // Rounding to the int8 step adds half a step (and a float rounding of the product).
  const float half_step = 0.5f * g_scale * (1.0f + 0x1p-20f);
  for (int32_t i = 0; i < want.count; ++i) {
    const float got = g_scale * static_cast<float>(g_s8[i]);
    if (!(fabsf(got - want.values[i]) <= half_step + want.tolerance[i])) {
      report.Mismatch("[%ld] got %d * %.9g = %.9g, want %.9g +- %.3g", static_cast<long>(i), g_s8[i], D(g_scale), D(got),
                      D(want.values[i]), D(half_step + want.tolerance[i]));
    }
  }
}

// Runs a kernel that writes one gradient, call(&result) returning its status, and checks it.
template <typename Call>
bool RunGradKernel(const char* name, const ExpectedGrad& expected, Call&& call) {
  CaseReport report(name);
  tt_grad_out result = GradOut(expected.type);
  report.ExpectStatus(report.Measure([&] { return call(&result); }), TT_SUCCESS);
  CheckGrad(expected, report);
  return report.Finish();
}

bool RunLayerGrad(const LayerGradCase& c) {
  const tt_grad_in grad_output = GradIn(c.grad_output);
  return RunGradKernel(c.name, c.expected, [&](tt_grad_out* result) {
    switch (c.kernel) {
      case LayerGradKernel::kConvInput:
        return tt_conv2d_input_grad_s8(&c.geometry.conv, &c.filter_quant, &c.grad_output_dims, &grad_output,
                                       &c.operand_dims, c.operand, &c.result_dims, result);
      case LayerGradKernel::kConvFilter:
        return tt_conv2d_filter_grad_s8(&c.geometry.conv, &c.input_quant, &c.grad_output_dims, &grad_output,
                                        &c.operand_dims, c.operand, &c.result_dims, result);
      case LayerGradKernel::kDepthwiseInput:
        return tt_depthwise_conv2d_input_grad_s8(&c.geometry, &c.filter_quant, &c.grad_output_dims, &grad_output,
                                                 &c.operand_dims, c.operand, &c.result_dims, result);
      case LayerGradKernel::kDepthwiseFilter:
        return tt_depthwise_conv2d_filter_grad_s8(&c.geometry, &c.input_quant, &c.grad_output_dims, &grad_output,
                                                  &c.operand_dims, c.operand, &c.result_dims, result);
      case LayerGradKernel::kFullyConnectedInput:
        return tt_fully_connected_input_grad_s8(&c.filter_quant, &c.grad_output_dims, &grad_output, &c.operand_dims,
                                                c.operand, &c.result_dims, result);
      case LayerGradKernel::kFullyConnectedFilter:
        return tt_fully_connected_filter_grad_s8(&c.input_quant, &c.grad_output_dims, &grad_output, &c.operand_dims,
                                                 c.operand, &c.result_dims, result);
    }
    return TT_ARG_ERROR;
  });
}

bool RunForwardConv(const ForwardConvCase& c) {
  CaseReport report(c.name);
  const tt_requantization requant{c.multiplier, c.shift};
  const auto scratch_size = c.depthwise ? tt_depthwise_conv2d_s8_get_buffer_size : tt_conv2d_s8_get_buffer_size;
  const tt_context scratch{g_scratch, scratch_size(&c.params, &c.input_dims, &c.filter_dims, &c.output_dims)};
  if (scratch.size < 0 || scratch.size > static_cast<int32_t>(sizeof(g_scratch))) {
    report.Mismatch("scratch of %ld bytes, the test has %u", static_cast<long>(scratch.size),
                    static_cast<unsigned>(sizeof(g_scratch)));
    return report.Finish();
  }
  const tt_status status = report.Measure([&] {
    const auto kernel = c.depthwise ? tt_depthwise_conv2d_s8 : tt_conv2d_s8;
    return kernel(&scratch, &c.params, &c.input_dims, c.input, &c.filter_dims, c.filter, c.bias, &requant, &c.output_dims, g_s8);
  });
  report.ExpectStatus(status, TT_SUCCESS);
  const int32_t count = c.output_dims.n * c.output_dims.h * c.output_dims.w * c.output_dims.c;
  report.Digest(g_s8, count);
  for (int32_t i = 0; i < count; ++i) {
    if (g_s8[i] != c.expected[i]) report.Mismatch("output [%ld] is %d, want %d", static_cast<long>(i), g_s8[i], c.expected[i]);
  }
  return report.Finish();
}

bool RunBiasGrad(const BiasGradCase& c) {
  const tt_grad_in grad_output = GradIn(c.grad_output);
  return RunGradKernel(c.name, c.expected, [&](tt_grad_out* result) {
    return tt_bias_grad(&c.grad_dims, &grad_output, c.channels_to_update, result);
  });
}

bool RunPoolGrad(const PoolGradCase& c) {
  const tt_grad_in grad_output = GradIn(c.grad_output);
  return RunGradKernel(c.name, c.expected, [&](tt_grad_out* result) {
    switch (c.kernel) {
      case PoolKernel::kAverage:
        return tt_avg_pool2d_grad(&c.params, &c.grad_output_dims, &grad_output, &c.input_dims, result);
      case PoolKernel::kMax:
        return tt_max_pool2d_grad_s8(&c.params, &c.grad_output_dims, &grad_output, &c.input_dims, c.input, result);
      case PoolKernel::kMean:
        return tt_mean_grad(&c.input_dims, &grad_output, result);
    }
    return TT_ARG_ERROR;
  });
}

bool RunActivationMask(const ActivationCase& c) {
  CaseReport report(c.name);
  uint8_t* mask = reinterpret_cast<uint8_t*>(g_s8);
  report.ExpectStatus(report.Measure([&] { return tt_activation_mask_s8(&c.params, c.count, c.y, mask); }), TT_SUCCESS);
  const int32_t bytes = TT_ACTIVATION_MASK_BYTES(c.count);
  report.Digest(mask, bytes);
  for (int32_t i = 0; i < bytes; ++i) {
    if (mask[i] != c.expected_mask[i]) {
      report.Mismatch("mask byte %ld is 0x%02x, want 0x%02x", static_cast<long>(i), mask[i], c.expected_mask[i]);
    }
  }
  return report.Finish();
}

bool RunActivation(const ActivationCase& c) {
  if (c.kernel == ActivationKernel::kMask) return RunActivationMask(c);
  const tt_grad_in grad_output = GradIn(c.grad_output);
  return RunGradKernel(c.name, c.expected, [&](tt_grad_out* result) {
    if (c.kernel == ActivationKernel::kGradFromOutput) {
      return tt_activation_grad_s8(&c.params, c.count, c.y, &grad_output, result);
    }
    return tt_activation_grad_mask(c.count, c.mask, &grad_output, result);
  });
}

bool RunLoss(const LossCase& c) {
  CaseReport report(c.name);
  const tt_status status = report.Measure([&] {
    if (c.quantized_grad) {
      return tt_softmax_cross_entropy_qgrad_s8(&c.params, &c.logits_quant, &c.logits_dims, c.logits, c.labels, &g_loss,
                                               g_s8, &g_scale);
    }
    return tt_softmax_cross_entropy_s8(&c.params, &c.logits_quant, &c.logits_dims, c.logits, c.labels, &g_loss, g_f32);
  });
  report.ExpectStatus(status, c.status);
  if (c.status != TT_SUCCESS) {
    // Nothing may be written when the labels are rejected.
    uint8_t unwritten[sizeof(float)];
    memset(unwritten, kUnwritten, sizeof(unwritten));
    if (memcmp(&g_loss, unwritten, sizeof(float)) != 0) report.Mismatch("loss written despite the error");
    for (int32_t i = 0; i < c.expected.count; ++i) {
      if (memcmp(&g_f32[i], unwritten, sizeof(float)) != 0) report.Mismatch("gradient %ld written despite the error", static_cast<long>(i));
    }
    return report.Finish();
  }
  report.Digest(&g_loss, sizeof(g_loss));
  if (!(fabsf(g_loss - c.loss) <= c.loss_tolerance)) {
    report.Mismatch("loss %.9g, want %.9g +- %.3g", D(g_loss), D(c.loss), D(c.loss_tolerance));
  }
  CheckGrad(c.expected, report);
  return report.Finish();
}

bool RunGradAdd(const GradAddCase& c) {
  const tt_grad_in a = GradIn(c.a);
  const tt_grad_in b = GradIn(c.b);
  return RunGradKernel(c.name, c.expected, [&](tt_grad_out* sum) { return tt_grad_add(c.count, &a, &b, sum); });
}

bool RunElementLoss(const ElementLossCase& c) {
  CaseReport report(c.name);
  tt_grad_out grad = GradOut(c.expected.type);
  report.ExpectStatus(report.Measure([&] {
    if (c.labels != nullptr) return tt_binary_cross_entropy_s8(&c.quant, c.count, c.prediction, c.labels, &g_loss, &grad);
    return tt_mean_squared_error_s8(&c.quant, &c.target_quant, c.count, c.prediction, c.target, &g_loss, &grad);
  }),
                      TT_SUCCESS);
  report.Digest(&g_loss, sizeof(g_loss));
  if (!(fabsf(g_loss - c.loss) <= c.loss_tolerance)) {
    report.Mismatch("loss %.9g, want %.9g +- %.3g", D(g_loss), D(c.loss), D(c.loss_tolerance));
  }
  CheckGrad(c.expected, report);
  return report.Finish();
}

bool RunUnaryGrad(const UnaryGradCase& c) {
  const tt_grad_in grad_output = GradIn(c.grad_output);
  return RunGradKernel(c.name, c.expected, [&](tt_grad_out* grad_input) {
    return tt_unary_grad_s8(&c.params, c.count, c.saved, &grad_output, grad_input);
  });
}

bool RunMulGrad(const MulGradCase& c) {
  const tt_grad_in grad_output = GradIn(c.grad_output);
  return RunGradKernel(c.name, c.expected, [&](tt_grad_out* grad_input) {
    return tt_mul_grad_s8(&c.other_quant, &c.grad_output_dims, &grad_output, &c.other_dims, c.other,
                          &c.grad_input_dims, grad_input);
  });
}

bool RunSgd(const SgdCase& c) {
  CaseReport report(c.name);
  const int32_t grad_count = c.dims.outer * c.dims.channels_to_update * c.dims.inner;
  if (c.momentum != nullptr) memcpy(g_momentum, c.momentum, sizeof(float) * grad_count);
  float* momentum = c.momentum != nullptr ? g_momentum : nullptr;
  if (c.s32) {
    memcpy(g_s32, c.parameter_s32, sizeof(int32_t) * c.parameter_count);
  } else {
    memcpy(g_s8, c.parameter_s8, c.parameter_count);
  }
  const tt_grad_in grad = GradIn(c.grad);
  uint32_t rng_state = c.rng_state;
  const tt_status status = report.Measure([&] {
    // No accumulator: the update applies this gradient at once (mini-batches are the host tests' case).
    if (c.s32) {
      return tt_sgd_update_s32(&rng_state, &c.params, c.num_scales, c.scales, &c.dims, &grad, momentum, nullptr, g_s32);
    }
    return tt_sgd_update_s8(&rng_state, &c.params, c.num_scales, c.scales, &c.dims, &grad, momentum, nullptr, g_s8);
  });
  report.ExpectStatus(status, TT_SUCCESS);
  for (int32_t i = 0; i < c.parameter_count; ++i) {
    const long got = c.s32 ? g_s32[i] : g_s8[i];
    const long want = c.s32 ? c.expected_s32[i] : c.expected_s8[i];
    if (got != want) report.Mismatch("parameter [%ld] is %ld, want %ld", static_cast<long>(i), got, want);
  }
  report.Digest(c.s32 ? static_cast<const void*>(g_s32) : g_s8, c.parameter_count * (c.s32 ? sizeof(int32_t) : 1));
  if (momentum != nullptr) {
    report.Digest(momentum, sizeof(float) * grad_count);
    if (memcmp(momentum, c.expected_momentum, sizeof(float) * grad_count) != 0) {
      for (int32_t i = 0; i < grad_count; ++i) {
        if (momentum[i] != c.expected_momentum[i]) {
          report.Mismatch("momentum [%ld] is %.9g, want %.9g", static_cast<long>(i), D(momentum[i]), D(c.expected_momentum[i]));
        }
      }
    }
  }
  report.Digest(&rng_state, sizeof(rng_state));
  if (rng_state != c.expected_rng_state) {
    report.Mismatch("rng state %lu, want %lu", static_cast<unsigned long>(rng_state),
                    static_cast<unsigned long>(c.expected_rng_state));
  }
  return report.Finish();
}

bool RunCrc(const CrcCase& c) {
  CaseReport report(c.name);
  uint32_t crc = 0;
  report.ExpectStatus(report.Measure([&] {
    crc = tt_crc32(c.data, static_cast<size_t>(c.length));
    return TT_SUCCESS;
  }),
                      TT_SUCCESS);
  report.Digest(&crc, sizeof(crc));
  if (crc != c.crc) report.Mismatch("crc %08lx, want %08lx", static_cast<unsigned long>(crc), static_cast<unsigned long>(c.crc));
  return report.Finish();
}

bool RunTopLevel(const TopLevelCase& c) {
  CaseReport report(c.name);
  int32_t top_level = -1;
  report.ExpectStatus(report.Measure([&] {
    top_level = tt_grad_top_level(c.count, c.levels);
    return TT_SUCCESS;
  }),
                      TT_SUCCESS);
  report.Digest(&top_level, sizeof(top_level));
  if (top_level != c.top_level) {
    report.Mismatch("top level %ld, want %ld", static_cast<long>(top_level), static_cast<long>(c.top_level));
  }
  return report.Finish();
}

uint8_t g_blob[512];  // the fleet cases' uploads

bool RunFleet(const FleetCase& c) {
  CaseReport report(c.name);
  const bool s32 = c.type == TT_FLEET_S32;
  if (s32) {
    memcpy(g_s32, c.initial_s32, sizeof(int32_t) * c.parameter_count);
  } else {
    memcpy(g_s8, c.initial_s8, c.parameter_count);
  }
  const tt_fleet_tensor tensor{c.tensor, c.type, c.outer, c.channels, c.channels_trained, c.inner,
                               c.num_scales, c.scales, s32 ? static_cast<void*>(g_s32) : g_s8};
  const tt_fleet_info upload_info{c.round, c.num_samples};
  size_t written = 0;
  report.ExpectStatus(tt_fleet_update_write(&upload_info, &tensor, 1, g_blob, sizeof(g_blob), &written), TT_SUCCESS);
  report.Digest(g_blob, written);
  if (written != static_cast<size_t>(c.upload_length) || memcmp(g_blob, c.upload, written) != 0) {
    report.Mismatch("upload of %lu bytes differs from the reference's %ld", static_cast<unsigned long>(written),
                    static_cast<long>(c.upload_length));
  }
  tt_fleet_info info{0, 0};
  const tt_status status =
      report.Measure([&] { return tt_fleet_update_apply(c.blob, static_cast<size_t>(c.blob_length), &tensor, 1, &info); });
  report.ExpectStatus(status, c.status);
  for (int32_t i = 0; i < c.parameter_count; ++i) {
    const long got = s32 ? g_s32[i] : g_s8[i];
    const long want = s32 ? c.expected_s32[i] : c.expected_s8[i];
    if (got != want) report.Mismatch("value [%ld] is %ld, want %ld", static_cast<long>(i), got, want);
  }
  report.Digest(s32 ? static_cast<const void*>(g_s32) : g_s8, c.parameter_count * (s32 ? sizeof(int32_t) : 1));
  return report.Finish();
}

template <typename Case, size_t N>
void RunAll(const Case (&cases)[N], bool (*run)(const Case&), int& passed, int& failed) {
  for (const Case& c : cases) {
    if (run(c)) {
      ++passed;
    } else {
      ++failed;
    }
  }
}

// Counts a loop of known length: the factor InstructionCount() assumes must reproduce it.
void PrintCalibration() {
  constexpr uint32_t kIterations = 100000;
  StartInstructionCount();
  SpinInstructions(kIterations);
  const int64_t counted = InstructionCount();
  if (counted < 0) {
    printf("CALIBRATION n/a: this platform counts no instructions\n");
  } else {
    printf("CALIBRATION loop of %lu instructions counted as %lu\n", static_cast<unsigned long>(2 * kIterations),
           static_cast<unsigned long>(counted));
  }
}

}  // namespace

int main() {
  printf("tinytrain kernel core test on %s\n", PlatformName());
  PrintCalibration();
  int passed = 0;
  int failed = 0;
  RunAll(kLayerGradCases, RunLayerGrad, passed, failed);
  RunAll(kForwardConvCases, RunForwardConv, passed, failed);
  RunAll(kBiasGradCases, RunBiasGrad, passed, failed);
  RunAll(kPoolGradCases, RunPoolGrad, passed, failed);
  RunAll(kActivationCases, RunActivation, passed, failed);
  RunAll(kLossCases, RunLoss, passed, failed);
  RunAll(kGradAddCases, RunGradAdd, passed, failed);
  RunAll(kSgdCases, RunSgd, passed, failed);
  RunAll(kCrcCases, RunCrc, passed, failed);
  RunAll(kUnaryGradCases, RunUnaryGrad, passed, failed);
  RunAll(kMulGradCases, RunMulGrad, passed, failed);
  RunAll(kElementLossCases, RunElementLoss, passed, failed);
  RunAll(kFleetCases, RunFleet, passed, failed);
  RunAll(kTopLevelCases, RunTopLevel, passed, failed);
  printf("SUMMARY %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

// The ops whose core kernel can be generated for one model
// (tinytrain_tflm/firmware/codegen.py): all but TT_INIT_VARIABLES (a copy) and the
// forward convs TT_CONV_2D and TT_DEPTHWISE_CONV_2D (always generic). Each is an
// op struct with
//   OpData   its persistent data, with a member `kernel` that Eval calls;
//   Kernel   the type of that member: a core function pointer, or one per
//            variant for ops with several core functions (SGD, ...);
//   kName, kGeneric (the generic core function);
//   Init, Prepare (every check; leaves `kernel` unset), Eval, kReset (or null);
//   Matches<Spec>(context, node, data): whether a generated spec was made for these shapes,
//            quantization, options and gradient representation.
// The generic registration (Register_<NAME>) sets kGeneric after Prepare;
// a generated one picks from its table of specializations (PrepareSpecialized),
// so all checks stay in Prepare and Eval is the same code for both.
#ifndef TINYTRAIN_KERNELS_TFLM_SPECIALIZABLE_OPS_H_
#define TINYTRAIN_KERNELS_TFLM_SPECIALIZABLE_OPS_H_

#include <stddef.h>
#include <stdint.h>

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"
#include "layer_grad_util.h"
#include "softmax_cross_entropy.h"
#include "tflm_api.h"

namespace tinytrain {

// Equality of the values a kernel is specialized on. Floats compare exactly:
// generated constants are the model's float32 values, written as hex literals.
inline bool Same(const tt_dims& a, const tt_dims& b) { return a.n == b.n && a.h == b.h && a.w == b.w && a.c == b.c; }
inline bool Same(const tt_conv_grad_params& a, const tt_conv_grad_params& b) {
  return a.stride_h == b.stride_h && a.stride_w == b.stride_w && a.dilation_h == b.dilation_h &&
         a.dilation_w == b.dilation_w && a.pad_top == b.pad_top && a.pad_left == b.pad_left;
}
inline bool Same(const tt_depthwise_conv_grad_params& a, const tt_depthwise_conv_grad_params& b) {
  return Same(a.conv, b.conv) && a.depth_multiplier == b.depth_multiplier;
}
inline bool Same(const tt_quant_params& a, const tt_quant_params& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point;
}
inline bool SameScales(const float* a, const float* b, int32_t count) {
  for (int32_t i = 0; i < count; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}
inline bool Same(const tt_filter_quant_params& a, const tt_filter_quant_params& b) {
  return a.count == b.count && SameScales(a.scale, b.scale, a.count);
}
inline bool Same(const tt_activation_params& a, const tt_activation_params& b) {
  return a.lower_q == b.lower_q && a.upper_q == b.upper_q;
}
inline bool Same(const tt_pool_params& a, const tt_pool_params& b) {
  return a.filter_h == b.filter_h && a.filter_w == b.filter_w && a.stride_h == b.stride_h &&
         a.stride_w == b.stride_w && a.pad_top == b.pad_top && a.pad_left == b.pad_left;
}
// Not the learning rate: TT_SGD reads it at run time (its learning-rate input), a generated kernel too.
inline bool Same(const tt_sgd_params& a, const tt_sgd_params& b) {
  return a.momentum == b.momentum && a.qas == b.qas && a.rounding == b.rounding;
}
inline bool Same(const tt_sgd_dims& a, const tt_sgd_dims& b) {
  return a.outer == b.outer && a.channels == b.channels && a.channels_to_update == b.channels_to_update &&
         a.inner == b.inner;
}

using ResetFunction = void (*)(TfLiteContext* context, void* buffer);

#define TT_OP_FUNCTIONS                                                         \
  static void* Init(TfLiteContext* context, const char* buffer, size_t length); \
  static TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node);        \
  static TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node)

// What the six layer-gradient op structs share: their OpData
// (layer_grad_util.h), generic kernel, how shapes become the core's dims, and
// matching against a spec of core/common/layer_grad_kernels.h. Fully connected
// ops keep no params: their specs' are kFullyConnectedAsConv.
template <typename OpDataType, typename KernelType, KernelType kGenericKernel, bool kWithParams,
          LayerGradDimsOf kDimsOfShapes>
struct LayerGradOp {
  using OpData = OpDataType;
  using Kernel = KernelType;
  static constexpr Kernel kGeneric = kGenericKernel;
  static constexpr ResetFunction kReset = nullptr;
  static constexpr bool kHasParams = kWithParams;
  static constexpr LayerGradDimsOf kDimsOf = kDimsOfShapes;
  // The shapes are read from the node's tensors (Prepare has checked them), not from OpData.
  template <typename Spec>
  static bool Matches(TfLiteContext* context, const TfLiteNode* node, const OpData& data) {
    if constexpr (kHasParams) {
      if (!Same(data.params, Spec::params)) return false;
    }
    if (data.grad_type != Spec::grad_type || !Same(data.quant, Spec::quant)) return false;
    const LayerGradTensors tensors(context, node);
    if (tensors.grad_output.get() == nullptr || tensors.operand.get() == nullptr || tensors.result.get() == nullptr) {
      return false;
    }
    const LayerGradDims dims = DimsOf<kDimsOf>(tensors);
    return Same(dims.grad_output, Spec::grad_output) && Same(dims.operand, Spec::operand) &&
           Same(dims.result, Spec::result);
  }
};

// A conv or depthwise gradient op over core function `kernel`.
template <typename Quant, typename Params, typename Kernel, Kernel kernel>
using ConvGradOp = LayerGradOp<ConvGradOpData<Quant, Params, Kernel>, Kernel, kernel, true, NhwcDims>;

// A fully connected gradient op over core function `kernel`, with its dims.
template <typename Quant, typename Kernel, Kernel kernel, LayerGradDimsOf kDimsOf>
using FullyConnectedGradOp = LayerGradOp<LayerGradOpData<Quant, Kernel>, Kernel, kernel, false, kDimsOf>;

struct Conv2dInputGradOp
    : ConvGradOp<tt_filter_quant_params, tt_conv_grad_params, decltype(&tt_conv2d_input_grad_s8),
                 tt_conv2d_input_grad_s8> {
  static constexpr const char* kName = "TT_CONV_2D_INPUT_GRAD";
  TT_OP_FUNCTIONS;
};

struct Conv2dFilterGradOp
    : ConvGradOp<tt_quant_params, tt_conv_grad_params, decltype(&tt_conv2d_filter_grad_s8), tt_conv2d_filter_grad_s8> {
  static constexpr const char* kName = "TT_CONV_2D_FILTER_GRAD";
  TT_OP_FUNCTIONS;
};

struct DepthwiseConv2dInputGradOp
    : ConvGradOp<tt_filter_quant_params, tt_depthwise_conv_grad_params, decltype(&tt_depthwise_conv2d_input_grad_s8),
                 tt_depthwise_conv2d_input_grad_s8> {
  static constexpr const char* kName = "TT_DEPTHWISE_CONV_2D_INPUT_GRAD";
  TT_OP_FUNCTIONS;
};

struct DepthwiseConv2dFilterGradOp
    : ConvGradOp<tt_quant_params, tt_depthwise_conv_grad_params, decltype(&tt_depthwise_conv2d_filter_grad_s8),
                 tt_depthwise_conv2d_filter_grad_s8> {
  static constexpr const char* kName = "TT_DEPTHWISE_CONV_2D_FILTER_GRAD";
  TT_OP_FUNCTIONS;
};

struct FullyConnectedInputGradOp
    : FullyConnectedGradOp<tt_filter_quant_params, decltype(&tt_fully_connected_input_grad_s8),
                           tt_fully_connected_input_grad_s8, FullyConnectedInputGradDims> {
  static constexpr const char* kName = "TT_FULLY_CONNECTED_INPUT_GRAD";
  TT_OP_FUNCTIONS;
};

struct FullyConnectedFilterGradOp
    : FullyConnectedGradOp<tt_quant_params, decltype(&tt_fully_connected_filter_grad_s8),
                           tt_fully_connected_filter_grad_s8, FullyConnectedFilterGradDims> {
  static constexpr const char* kName = "TT_FULLY_CONNECTED_FILTER_GRAD";
  TT_OP_FUNCTIONS;
};

struct BiasGradOp {
  using Kernel = decltype(&tt_bias_grad);
  struct OpData {
    tt_status options_status;
    tt_bias_grad_options options;
    tt_grad_type grad_type;  // Representation of every gradient operand.
    tt_dims grad_dims;       // Shape of grad_output in NHWC.
    int32_t channels_to_update;
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_BIAS_GRAD";
  static constexpr Kernel kGeneric = tt_bias_grad;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return data.grad_type == Spec::grad_type && Same(data.grad_dims, Spec::grad_output) &&
           data.channels_to_update == Spec::channels_to_update;
  }
  static constexpr ResetFunction kReset = nullptr;
  TT_OP_FUNCTIONS;
};

// The average and max pooling ops differ only in the max pool's saved input,
// and their options have the same fields.
template <typename Options, typename KernelType, KernelType kGenericKernel>
struct PoolGradOp {
  using Kernel = KernelType;
  struct OpData {
    tt_status options_status;
    Options options;
    tt_pool_params params;
    tt_grad_type grad_type;    // Representation of both gradients.
    tt_dims grad_output_dims;  // [n, oh, ow, c]
    tt_dims grad_input_dims;   // [n, ih, iw, c], also the shape of the max pool's saved input
    Kernel kernel;
  };
  static constexpr Kernel kGeneric = kGenericKernel;
  static constexpr ResetFunction kReset = nullptr;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return data.grad_type == Spec::grad_type && Same(data.params, Spec::params) &&
           Same(data.grad_output_dims, Spec::grad_output) && Same(data.grad_input_dims, Spec::grad_input);
  }
};

struct AveragePool2dGradOp
    : PoolGradOp<tt_average_pool_2d_grad_options, decltype(&tt_avg_pool2d_grad), tt_avg_pool2d_grad> {
  static constexpr const char* kName = "TT_AVERAGE_POOL_2D_GRAD";
  TT_OP_FUNCTIONS;
};

struct MaxPool2dGradOp
    : PoolGradOp<tt_max_pool_2d_grad_options, decltype(&tt_max_pool2d_grad_s8), tt_max_pool2d_grad_s8> {
  static constexpr const char* kName = "TT_MAX_POOL_2D_GRAD";
  TT_OP_FUNCTIONS;
};

struct MeanGradOp {
  using Kernel = decltype(&tt_mean_grad);
  struct OpData {
    tt_status options_status;
    tt_mean_grad_options options;
    tt_grad_type grad_type;   // Representation of both gradients.
    tt_dims grad_input_dims;  // [n, ih, iw, c]; grad_output is [n, c]
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_MEAN_GRAD";
  static constexpr Kernel kGeneric = tt_mean_grad;
  static constexpr ResetFunction kReset = nullptr;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return data.grad_type == Spec::grad_type && Same(data.grad_input_dims, Spec::grad_input);
  }
  TT_OP_FUNCTIONS;
};

struct SoftmaxCrossEntropyOp {
  using Kernel = SoftmaxCrossEntropyKernel;
  using OpData = SoftmaxCrossEntropyOpData;
  static constexpr const char* kName = "TT_SOFTMAX_CROSS_ENTROPY";
  static constexpr Kernel kGeneric = {tt_softmax_cross_entropy_s8, tt_softmax_cross_entropy_qgrad_s8};
  static constexpr ResetFunction kReset = nullptr;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return data.quantized_grad == Spec::quantized_grad &&
           data.params.label_smoothing == Spec::params.label_smoothing && Same(data.logits_quant, Spec::logits_quant) &&
           Same(data.logits_dims, Spec::logits);
  }
  TT_OP_FUNCTIONS;
};

struct ActivationMaskOp {
  using Kernel = decltype(&tt_activation_mask_s8);
  struct OpData {
    tt_status options_status;
    tt_activation_mask_options options;
    tt_activation_params params;
    int32_t count;  // Elements of y.
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_ACTIVATION_MASK";
  static constexpr Kernel kGeneric = tt_activation_mask_s8;
  static constexpr ResetFunction kReset = nullptr;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return Same(data.params, Spec::params) && data.count == Spec::count;
  }
  TT_OP_FUNCTIONS;
};

struct ActivationGradOp {
  // One function per kind of saved activation; Prepare sets the one the node reads.
  struct Kernel {
    decltype(&tt_activation_grad_s8) from_output;
    decltype(&tt_activation_grad_mask) from_mask;
  };
  struct OpData {
    tt_status options_status;
    tt_activation_grad_options options;
    tt_activation_params params;
    tt_grad_type grad_type;   // Representation of both gradients.
    int32_t count;            // Elements of each gradient.
    bool activation_is_mask;  // uint8 mask from TT_ACTIVATION_MASK rather than the int8 output.
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_ACTIVATION_GRAD";
  static constexpr Kernel kGeneric = {tt_activation_grad_s8, tt_activation_grad_mask};
  static constexpr ResetFunction kReset = nullptr;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return data.grad_type == Spec::grad_type && data.activation_is_mask == Spec::activation_is_mask &&
           Same(data.params, Spec::params) && data.count == Spec::count;
  }
  TT_OP_FUNCTIONS;
};

struct UnaryGradOp {
  using Kernel = decltype(&tt_unary_grad_s8);
  struct OpData {
    tt_status options_status;
    tt_unary_grad_options options;
    tt_unary_params params;  // The function, its slope and the saved tensor's quantization.
    tt_grad_type grad_type;  // Representation of both gradients.
    int32_t count;           // Elements of each gradient and of the saved tensor.
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_UNARY_GRAD";
  static constexpr Kernel kGeneric = tt_unary_grad_s8;
  static constexpr ResetFunction kReset = nullptr;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return data.grad_type == Spec::grad_type && data.params.function == Spec::params.function &&
           data.params.alpha == Spec::params.alpha && Same(data.params.saved, Spec::params.saved) &&
           data.count == Spec::count;
  }
  TT_OP_FUNCTIONS;
};

struct MulGradOp {
  using Kernel = decltype(&tt_mul_grad_s8);
  struct OpData {
    tt_status options_status;
    tt_mul_grad_options options;
    tt_quant_params other_quant;  // The other operand's.
    tt_grad_type grad_type;       // Representation of both gradients.
    tt_dims grad_output_dims;     // y's NHWC view
    tt_dims other_dims;           // the other operand's, each y's or 1
    tt_dims grad_input_dims;      // this operand's, each y's or 1
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_MUL_GRAD";
  static constexpr Kernel kGeneric = tt_mul_grad_s8;
  static constexpr ResetFunction kReset = nullptr;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return data.grad_type == Spec::grad_type && Same(data.other_quant, Spec::other_quant) &&
           Same(data.grad_output_dims, Spec::grad_output) && Same(data.other_dims, Spec::other) &&
           Same(data.grad_input_dims, Spec::grad_input);
  }
  TT_OP_FUNCTIONS;
};

struct GradAddOp {
  using Kernel = decltype(&tt_grad_add);
  struct OpData {
    tt_status options_status;
    tt_grad_add_options options;
    tt_grad_type grad_type;  // Representation of every gradient operand.
    int32_t count;           // Elements of each operand.
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_GRAD_ADD";
  static constexpr Kernel kGeneric = tt_grad_add;
  static constexpr ResetFunction kReset = nullptr;
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    return data.grad_type == Spec::grad_type && data.count == Spec::count;
  }
  TT_OP_FUNCTIONS;
};

struct SgdOp {
  // One function per parameter type; Prepare sets the one for the parameter's.
  struct Kernel {
    decltype(&tt_sgd_update_s8) int8;
    decltype(&tt_sgd_update_s32) int32;
  };
  struct OpData {
    tt_status options_status;
    tt_sgd_params params;  // The options but the seed.
    uint32_t seed;         // Stochastic rounding's, nonzero: rng_state after Init and reset().
    tt_grad_type grad_type;
    tt_sgd_dims dims;
    const float* scales;     // The parameter's quantization scales, in the model flatbuffer.
    int32_t num_scales;      // 1 (per-tensor) or one per channel.
    uint32_t rng_state;      // Stochastic rounding's xorshift32 state; the seed after Init and reset().
    int32_t accumulated;     // Samples in the accumulator since the last update; 0 after Init and reset().
    bool parameter_is_int8;  // An int8 weight, else an int32 bias.
    // 0, or the rows of the layer output gradient [rows, channels] that an int32 bias's grad input is
    // (a fused TT_BIAS_GRAD, tinytrain_tflm.passes.fusion): Eval then sums it per channel and updates
    // with tt_sgd_update_channel_sums_s32, never `kernel`.
    int32_t summed_rows;
    Kernel kernel;
  };
  static constexpr const char* kName = "TT_SGD";
  static constexpr Kernel kGeneric = {tt_sgd_update_s8, tt_sgd_update_s32};
  // A bias update that sums its layer's output gradient never runs the kernel: any spec will do, so a
  // generated build needs none for it (codegen makes none).
  template <typename Spec>
  static bool Matches(TfLiteContext*, const TfLiteNode*, const OpData& data) {
    if (data.summed_rows > 0) return true;
    return data.grad_type == Spec::grad_type && data.parameter_is_int8 == Spec::parameter_is_int8 &&
           Same(data.params, Spec::params) && Same(data.dims, Spec::dims) && data.num_scales == Spec::num_scales &&
           SameScales(data.scales, Spec::scales, data.num_scales);
  }
  TT_OP_FUNCTIONS;
  // reset() restarts training, so the rounding noise restarts too: runs repeat exactly.
  static void Reset(TfLiteContext* context, void* buffer);
  static constexpr ResetFunction kReset = Reset;
};

#undef TT_OP_FUNCTIONS

// Prepare of a generic registration: every check, then the generic kernel.
template <typename Op>
TfLiteStatus PrepareGeneric(TfLiteContext* context, TfLiteNode* node) {
  TT_ENSURE_OK(Op::Prepare(context, node));
  static_cast<typename Op::OpData*>(node->user_data)->kernel = Op::kGeneric;
  return kTfLiteOk;
}

// The registration of Op with `prepare`: PrepareGeneric<Op> or a generated
// one that calls PrepareSpecialized.
template <typename Op>
constexpr TFLMRegistration RegisterSpecializable(TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node)) {
  return RegisterOp(Op::Init, prepare, Op::Eval, Op::kReset);
}

// The generic registration, which Register_<NAME>() returns.
template <typename Op>
const TFLMRegistration* RegisterGeneric() {
  static const TFLMRegistration registration = RegisterSpecializable<Op>(PrepareGeneric<Op>);
  return &registration;
}

// One kernel generated for one set of shapes, quantization and options.
template <typename Op>
struct Specialization {
  bool (*matches)(TfLiteContext* context, const TfLiteNode* node, const typename Op::OpData& data);
  typename Op::Kernel kernel;
};

// Prepare of a generated registration: every check, then the specialization
// made for this node. None matches when the kernels were generated for
// another model: that is an error, as there is no generic kernel to fall back on.
template <typename Op, size_t kCount>
TfLiteStatus PrepareSpecialized(TfLiteContext* context, TfLiteNode* node,
                                const Specialization<Op> (&table)[kCount]) {
  TT_ENSURE_OK(Op::Prepare(context, node));
  auto* data = static_cast<typename Op::OpData*>(node->user_data);
  for (const Specialization<Op>& specialization : table) {
    if (specialization.matches(context, node, *data)) {
      data->kernel = specialization.kernel;
      return kTfLiteOk;
    }
  }
  context->ReportError(context,
                       "%s: no generated kernel matches this op's shapes, quantization and options: "
                       "the kernels were generated for another model (run tinytrain-tflm codegen on this one)",
                       Op::kName);
  return kTfLiteError;
}

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_SPECIALIZABLE_OPS_H_

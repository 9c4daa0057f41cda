// Glue shared by the gradient ops of the layers with an int8 filter: CONV_2D,
// DEPTHWISE_CONV_2D and FULLY_CONNECTED, each with an input-gradient and a
// filter-gradient op. All six are single-gradient backward ops (kernel_util.h)
// with the same operands:
//   inputs  (grad_output, grad_output_scale, operand, control), the operand
//           being the filter (input gradient) or the forward input (filter gradient);
//   outputs (gradient[, its scale]).
#ifndef TINYTRAIN_KERNELS_TFLM_LAYER_GRAD_UTIL_H_
#define TINYTRAIN_KERNELS_TFLM_LAYER_GRAD_UTIL_H_

#include <stdint.h>

#include "../core/tt_functions.h"
#include "../core/tt_schema_generated.h"
#include "kernel_util.h"

namespace tinytrain {

constexpr int kLayerGradOutput = kGradOpGradInput;  // followed by its scale input
constexpr int kLayerGradOperand = 2;
constexpr int kLayerGradInputs = 4;                 // the control input last
constexpr int kLayerGradResult = kGradOpGradOutput;  // followed by its scale output when int8
// A conv or depthwise input-gradient op fused with the ReLU/ReLU6 backward of
// the layer before (tinytrain_tflm/passes/fusion.py) also reads that layer's
// 1-bit activation mask, just before the control input, and zeroes its result
// where the mask is 0 once the result is written.
constexpr int kLayerGradMask = 3;
constexpr int kMaskedLayerGradInputs = kLayerGradInputs + 1;

// Shapes of an op's three tensors as the core takes them: NHWC for conv and
// depthwise, matrices (rows in n, columns in c) for fully connected.
struct LayerGradDims {
  tt_dims grad_output;
  tt_dims operand;  // filter or forward input
  tt_dims result;   // grad_input or grad_filter
};

// How an op derives its LayerGradDims from its tensors' shapes (grad_output,
// operand, result), in Prepare from the temporary tensors and in Eval from the
// eval tensors: shapes are not kept in the op data.
using LayerGradDimsOf = LayerGradDims (*)(const TfLiteIntArray* grad_output, const TfLiteIntArray* operand,
                                          const TfLiteIntArray* result);

// What Prepare records for Eval, in every op here.
template <typename Quant, typename Kernel>
struct LayerGradOpData {
  tt_status options_status;  // Of parsing the options in Init.
  tt_grad_type grad_type;    // Representation of every gradient operand.
  Quant quant;               // Filter scales (in the model flatbuffer) or the forward input's quantization.
  Kernel kernel;             // The core function Eval calls: generic or generated (specializable_ops.h).
};

// Conv and depthwise ops also keep their geometry.
template <typename Quant, typename Params, typename Kernel>
struct ConvGradOpData : LayerGradOpData<Quant, Kernel> {
  Params params;  // Their options, kept by InitConvGrad; range-checked in Prepare.
};

// An op's three tensors for the length of one Prepare.
struct LayerGradTensors {
  LayerGradTensors(TfLiteContext* context, const TfLiteNode* node)
      : grad_output(context, node->inputs->data[kLayerGradOutput]),
        operand(context, node->inputs->data[kLayerGradOperand]),
        result(context, node->outputs->data[kLayerGradResult]) {}

  TempTensor grad_output;
  TempTensor operand;  // filter or forward input
  TempTensor result;   // grad_input or grad_filter
};

constexpr int kAnyRank = -1;

// The rank a tensor must have (or kAnyRank), with names for messages.
struct TensorSpec {
  const char* name;
  int rank;
  const char* layout;  // e.g. "[n, oh, ow, cout]"
};

// Checks each tensor was allocated and has its spec's rank (in grad_output,
// operand, result order), and that no dimension is empty. The first check of
// every Prepare holding a LayerGradTensors.
inline TfLiteStatus CheckShapes(TfLiteContext* context, const char* op_name, const LayerGradTensors& tensors,
                                const TensorSpec (&specs)[3]) {
  const TfLiteTensor* ordered[3] = {tensors.grad_output.get(), tensors.operand.get(), tensors.result.get()};
  for (int t = 0; t < 3; ++t) {
    const TensorSpec& spec = specs[t];
    TT_ENSURE_MSG(context, ordered[t] != nullptr, op_name, "arena too small: no room for temporary tensor %s in Prepare",
                  spec.name);
    const TfLiteIntArray* dims = ordered[t]->dims;
    TT_ENSURE_MSG(context, spec.rank == kAnyRank || dims->size == spec.rank, op_name, "%s must be %d-D %s, got rank %d",
                  spec.name, spec.rank, spec.layout, dims->size);
    for (int i = 0; i < dims->size; ++i) {
      TT_ENSURE_MSG(context, dims->data[i] >= 1, op_name, "%s has an empty dimension %d", spec.name, i);
    }
  }
  return kTfLiteOk;
}

// The LayerGradDimsOf of conv and depthwise ops.
inline LayerGradDims NhwcDims(const TfLiteIntArray* grad_output, const TfLiteIntArray* operand,
                              const TfLiteIntArray* result) {
  return LayerGradDims{DimsNHWC(grad_output), DimsNHWC(operand), DimsNHWC(result)};
}

// A matrix as the core takes it: rows in n, columns in c.
inline tt_dims Matrix(int rows, int columns) { return tt_dims{rows, 1, 1, columns}; }

// The LayerGradDimsOf of TT_FULLY_CONNECTED_INPUT_GRAD: grad_output [n, out],
// filter [out, in], grad_input (n * in elements, any rank).
inline LayerGradDims FullyConnectedInputGradDims(const TfLiteIntArray* grad_output, const TfLiteIntArray* filter,
                                                 const TfLiteIntArray*) {
  const int batch = grad_output->data[0], outputs = grad_output->data[1], inputs = filter->data[1];
  return LayerGradDims{Matrix(batch, outputs), Matrix(outputs, inputs), Matrix(batch, inputs)};
}

// The LayerGradDimsOf of TT_FULLY_CONNECTED_FILTER_GRAD: grad_output [n, out],
// input (n * in elements, any rank), grad_filter [c_update, in].
inline LayerGradDims FullyConnectedFilterGradDims(const TfLiteIntArray* grad_output, const TfLiteIntArray*,
                                                  const TfLiteIntArray* grad_filter) {
  const int batch = grad_output->data[0], outputs = grad_output->data[1];
  const int channels_to_update = grad_filter->data[0], inputs = grad_filter->data[1];
  return LayerGradDims{Matrix(batch, outputs), Matrix(batch, inputs), Matrix(channels_to_update, inputs)};
}

template <LayerGradDimsOf kDimsOf>
LayerGradDims DimsOf(const LayerGradTensors& tensors) {
  return kDimsOf(tensors.grad_output->dims, tensors.operand->dims, tensors.result->dims);
}

// The input count of an input-gradient op: with or without a fused mask.
inline int InputGradInputs(const TfLiteNode* node) {
  return node->inputs->size == kMaskedLayerGradInputs ? kMaskedLayerGradInputs : kLayerGradInputs;
}

// A fused mask (kLayerGradMask) must hold one bit per element of the result.
inline TfLiteStatus PrepareFusedMask(TfLiteContext* context, const TfLiteNode* node, const char* op_name,
                                     const tt_dims& result) {
  if (node->inputs->size != kMaskedLayerGradInputs) return kTfLiteOk;
  TT_TEMP_TENSOR(mask, context, node->inputs->data[kLayerGradMask], op_name);
  const int64_t count = static_cast<int64_t>(result.n) * result.h * result.w * result.c;
  TT_ENSURE_MSG(context, count <= INT32_MAX, op_name, "grad_input has too many elements for a mask");
  const int bytes = TT_ACTIVATION_MASK_BYTES(static_cast<int32_t>(count));
  TT_ENSURE_MSG(context,
                mask.get() != nullptr && mask->type == kTfLiteUInt8 && NumElements(mask->dims) == bytes, op_name,
                "mask input %d must be uint8 [%d] (one bit per element of grad_input)", kLayerGradMask, bytes);
  return kTfLiteOk;
}

// Eval of any of the six ops (an op struct of specializable_ops.h). The core
// functions take (params, quant, grad_output, operand, result) in that order,
// fully connected ones no params. A fused mask is applied in place to the
// written result: zeroing values keeps an int8 result's scale, so the levels
// are those of the unfused pair of ops.
template <typename Op>
TfLiteStatus EvalLayerGrad(TfLiteContext* context, TfLiteNode* node) {
  using OpData = typename Op::OpData;
  const TfLiteEvalTensor* operand = EvalInput(context, node, kLayerGradOperand);
  const LayerGradDims dims = Op::kDimsOf(EvalInput(context, node, kLayerGradOutput)->dims, operand->dims,
                                         EvalOutput(context, node, kLayerGradResult)->dims);
  const uint8_t* mask =
      node->inputs->size == kMaskedLayerGradInputs ? EvalInput(context, node, kLayerGradMask)->data.uint8 : nullptr;
  return EvalGradOp<OpData>(
      context, node, Op::kName, [&](const OpData& data, const tt_grad_in* grad_output, tt_grad_out* result) {
        tt_status status;
        if constexpr (Op::kHasParams) {
          status = data.kernel(&data.params, &data.quant, &dims.grad_output, grad_output, &dims.operand,
                               operand->data.int8, &dims.result, result);
        } else {
          status = data.kernel(&data.quant, &dims.grad_output, grad_output, &dims.operand, operand->data.int8,
                               &dims.result, result);
        }
        if (status != TT_SUCCESS || mask == nullptr) return status;
        const tt_grad_in written{result->type, result->data, result->type == TT_GRAD_S8 ? *result->scale : 1.0f, 0};
        return tt_activation_grad_mask(dims.result.n * dims.result.h * dims.result.w * dims.result.c, mask, &written,
                                       result);
      });
}

// The forward input of a filter-gradient op: int8, per-tensor quantized.
inline TfLiteStatus PrepareInputQuant(TfLiteContext* context, const char* op_name, const TfLiteTensor* input,
                                      tt_quant_params* quant) {
  TT_ENSURE_MSG(context, input->type == kTfLiteInt8, op_name, "input must be int8, got %s", TypeName(input->type));
  TT_ENSURE_MSG(context, IsPerTensorQuantized(input) && input->params.scale > 0.0f, op_name,
                "input needs per-tensor quantization with a positive scale");
  *quant = QuantParams(input);
  return kTfLiteOk;
}

// The filter of an input-gradient op: int8, symmetric, one scale or one per
// output channel along `axis`. Only the scale array is kept: TFLM points it
// into the model flatbuffer, unlike the temp quantization record around it.
inline TfLiteStatus PrepareFilterQuant(TfLiteContext* context, const char* op_name, const TfLiteTensor* filter,
                                       int axis, int channels, tt_filter_quant_params* quant) {
  TT_ENSURE_MSG(context, filter->type == kTfLiteInt8, op_name, "filter must be int8, got %s", TypeName(filter->type));
  const auto* affine = filter->quantization.type == kTfLiteAffineQuantization
                           ? static_cast<const TfLiteAffineQuantization*>(filter->quantization.params)
                           : nullptr;
  TT_ENSURE_MSG(context, affine != nullptr && affine->scale != nullptr && affine->zero_point != nullptr, op_name,
                "filter must be quantized");
  const int count = affine->scale->size;
  TT_ENSURE_MSG(context, count == 1 || (count == channels && affine->quantized_dimension == axis), op_name,
                "filter needs 1 scale or %d on axis %d, got %d on axis %d", channels, axis, count,
                static_cast<int>(affine->quantized_dimension));
  TT_ENSURE_MSG(context, affine->zero_point->size == count, op_name, "filter has %d scales but %d zero points", count,
                affine->zero_point->size);
  for (int c = 0; c < count; ++c) {
    TT_ENSURE_MSG(context, affine->scale->data[c] > 0.0f && affine->zero_point->data[c] == 0, op_name,
                  "filter channel %d needs a positive scale and zero point 0", c);
  }
  // TFLM points a tensor's scales into the model flatbuffer (flatbuffer_utils.cc, little-endian
  // targets), which outlives the interpreter: keep the pointer, copy nothing.
  *quant = tt_filter_quant_params{affine->scale->data, count};
  return kTfLiteOk;
}

// Init of a conv or depthwise op, which keeps its options as its params.
template <typename Options>
void ParamsFromOptions(const Options& options, tt_conv_grad_params* params) {
  *params = tt_conv_grad_params{options.stride_h,   options.stride_w, options.dilation_h,
                                options.dilation_w, options.pad_top,  options.pad_left};
}

template <typename Options>
void ParamsFromOptions(const Options& options, tt_depthwise_conv_grad_params* params) {
  ParamsFromOptions(options, &params->conv);
  params->depth_multiplier = options.depth_multiplier;
}

template <typename OpData, typename Options>
void* InitConvGrad(TfLiteContext* context, const char* buffer, size_t length,
                   tt_status (*parse)(const uint8_t*, size_t, Options*)) {
  return InitKeeping<OpData>(context, buffer, length, parse,
                             [](const Options& options, OpData& data) { ParamsFromOptions(options, &data.params); });
}

// Strides, dilations and pads range-checked.
inline TfLiteStatus CheckConvParams(TfLiteContext* context, const char* op_name, const tt_conv_grad_params& params) {
  TT_ENSURE_MSG(context, params.stride_h >= 1 && params.stride_w >= 1, op_name, "strides must be >= 1, got %d, %d",
                static_cast<int>(params.stride_h), static_cast<int>(params.stride_w));
  TT_ENSURE_MSG(context, params.dilation_h >= 1 && params.dilation_w >= 1, op_name,
                "dilations must be >= 1, got %d, %d", static_cast<int>(params.dilation_h),
                static_cast<int>(params.dilation_w));
  TT_ENSURE_MSG(context, params.pad_top >= 0 && params.pad_left >= 0, op_name, "pads must be >= 0, got %d, %d",
                static_cast<int>(params.pad_top), static_cast<int>(params.pad_left));
  return kTfLiteOk;
}

// TFLite sizes each axis of CONV_2D and DEPTHWISE_CONV_2D as SAME
// (out = ceil(in / stride)) or VALID (out = (in - effective kernel) / stride + 1),
// then pads (out - 1) * stride + effective kernel - in in total (none if
// negative), the smaller half first.
inline int TfliteOutputSize(bool same, int in, int64_t effective_kernel, int stride) {
  if (same) return static_cast<int>((static_cast<int64_t>(in) + stride - 1) / stride);
  return in >= effective_kernel ? static_cast<int>((in - effective_kernel) / stride + 1) : 0;
}

inline int TflitePadBefore(int in, int out, int64_t effective_kernel, int stride) {
  // Callers have checked out against TfliteOutputSize: (out - 1) * stride < in, so the pad fits an int.
  const int64_t total_pad = static_cast<int64_t>(out - 1) * stride + effective_kernel - in;
  return total_pad > 0 ? static_cast<int>(total_pad / 2) : 0;
}

// (kernel - 1) * dilation + 1, in 64 bits: options come from the model and may be anything >= 1.
inline TfLiteStatus EffectiveKernel(TfLiteContext* context, const char* op_name, const char* axis, int kernel,
                                    int dilation, int64_t* effective_kernel) {
  *effective_kernel = static_cast<int64_t>(kernel - 1) * dilation + 1;
  TT_ENSURE_MSG(context, *effective_kernel <= INT32_MAX, op_name, "%s: kernel %d with dilation %d is too large", axis,
                kernel, dilation);
  return kTfLiteOk;
}

// A backward op's resolved pad must be the one TFLite applies for SAME or
// VALID: anything else means the options and shapes do not describe one
// TFLite convolution.
inline TfLiteStatus CheckConvAxis(TfLiteContext* context, const char* op_name, const char* axis, const char* pad_name,
                                  int in, int out, int kernel, int stride, int dilation, int pad) {
  int64_t effective_kernel = 0;
  TT_ENSURE_OK(EffectiveKernel(context, op_name, axis, kernel, dilation, &effective_kernel));
  const int same_out = TfliteOutputSize(true, in, effective_kernel, stride);
  const int valid_out = TfliteOutputSize(false, in, effective_kernel, stride);
  TT_ENSURE_MSG(context, out == same_out || out == valid_out, op_name,
                "%s: output %d is neither SAME (%d) nor VALID (%d) for input %d, kernel %d, stride %d, dilation %d",
                axis, out, same_out, valid_out, in, kernel, stride, dilation);
  const int tflite_pad = TflitePadBefore(in, out, effective_kernel, stride);
  TT_ENSURE_MSG(context, pad == tflite_pad, op_name, "%s is %d but TFLite pads %d for %s output %d", pad_name, pad,
                tflite_pad, axis, out);
  return kTfLiteOk;
}

// grad_output [n, oh, ow, *] against the forward input [n, ih, iw, *] and the
// kernel's taps (h, w of `kernel`).
inline TfLiteStatus CheckConvGeometry(TfLiteContext* context, const char* op_name, const tt_conv_grad_params& params,
                                      const tt_dims& grad_output, const tt_dims& input, const tt_dims& kernel) {
  TT_ENSURE_MSG(context, grad_output.n == input.n, op_name, "grad_output has batch %d but the input has %d",
                static_cast<int>(grad_output.n), static_cast<int>(input.n));
  TT_ENSURE_OK(CheckConvAxis(context, op_name, "height", "pad_top", input.h, grad_output.h, kernel.h, params.stride_h,
                             params.dilation_h, params.pad_top));
  return CheckConvAxis(context, op_name, "width", "pad_left", input.w, grad_output.w, kernel.w, params.stride_w,
                       params.dilation_w, params.pad_left);
}

}  // namespace tinytrain

#endif  // TINYTRAIN_KERNELS_TFLM_LAYER_GRAD_UTIL_H_

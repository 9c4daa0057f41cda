/* Public API of the tinytrain kernel core, in the shape of CMSIS-NN's
 * arm_nnfunctions.h: functions named tt_<op>[_variant]_<dtype>, arguments
 * ordered op params, quant params, then (dims, data) pairs with outputs last,
 * a tt_status result, no allocation, no printing, no TFLM type. */
#ifndef TINYTRAIN_KERNELS_CORE_TT_FUNCTIONS_H_
#define TINYTRAIN_KERNELS_CORE_TT_FUNCTIONS_H_

#include <stdint.h>

#include "tt_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Options of the softmax cross-entropy loss. */
typedef struct {
  float label_smoothing; /**< e in [0, 1): target = (1 - e) * onehot + e / classes. */
} tt_softmax_cross_entropy_params;

/**
 * Index of the first label outside [0, num_classes), or -1 when all are valid.
 * The loss functions call it before writing anything; glue code calls it again
 * after TT_LABEL_OUT_OF_RANGE to name the offending label.
 */
int32_t tt_first_label_out_of_range(const int32_t* labels, int32_t count, int32_t num_classes);

/**
 * Mean softmax cross-entropy of int8 logits and its float32 gradient.
 *
 * loss = mean_n( logsumexp(x_n) - sum_c t_nc x_nc ), x = scale * (q - zero_point);
 * grad_nc = (softmax(x_n)_c - t_nc) / batch, the derivative of loss w.r.t. x,
 * except 0 where a logit at 127 (-128) would be pushed up (down): saturated
 * logits cannot move, and chasing them only grows weights (clipped STE).
 * Softmax is taken on integer differences q - max(q), so it cannot overflow.
 *
 * @param[in]  params       label smoothing in [0, 1)
 * @param[in]  logits_quant per-tensor quantization of the logits, scale > 0
 * @param[in]  logits_dims  n = batch >= 1, c = classes >= 2, h = w = 1
 * @param[in]  logits       int8 [n, c]
 * @param[in]  labels       int32 [n], each in [0, c)
 * @param[out] loss         one float
 * @param[out] grad         float32 [n, c]
 * @return TT_SUCCESS; TT_ARG_ERROR or TT_LABEL_OUT_OF_RANGE with no output written
 */
tt_status tt_softmax_cross_entropy_s8(const tt_softmax_cross_entropy_params* params,
                                      const tt_quant_params* logits_quant,
                                      const tt_dims* logits_dims, const int8_t* logits,
                                      const int32_t* labels, float* loss, float* grad);

/**
 * As tt_softmax_cross_entropy_s8, with the gradient quantized to int8 at a
 * scale chosen at run time: grad_scale = max|grad| / 127 (1/127 when every
 * gradient is zero), zero point 0, values in [-127, 127] so the range is
 * symmetric. Computes the softmax twice (once for the max, once to quantize)
 * instead of holding a float row: no scratch memory.
 *
 * @param[out] grad        int8 [n, c]
 * @param[out] grad_scale  one float, > 0
 */
tt_status tt_softmax_cross_entropy_qgrad_s8(const tt_softmax_cross_entropy_params* params,
                                            const tt_quant_params* logits_quant,
                                            const tt_dims* logits_dims, const int8_t* logits,
                                            const int32_t* labels, float* loss, int8_t* grad,
                                            float* grad_scale);

/**
 * d loss / d bias of a convolution or fully connected layer: the output
 * gradient summed over every dimension but the channels.
 *
 * @param[in]  grad_dims          shape of grad_output; rows = n * h * w, c channels
 * @param[in]  grad_output        d loss / d layer output (after the activation's backward)
 * @param[in]  channels_to_update c_update in [1, c]: only the first channels are computed
 * @param[out] grad_bias          [c_update]
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_bias_grad(const tt_dims* grad_dims, const tt_grad_in* grad_output, int32_t channels_to_update,
                       tt_grad_out* grad_bias);

/**
 * Geometry of a forward CONV_2D, and the spatial part of DEPTHWISE_CONV_2D, as
 * TFLite defines it: output (oy, ox) with kernel tap (ky, kx) reads input row
 * oy * stride_h + ky * dilation_h - pad_top and column
 * ox * stride_w + kx * dilation_w - pad_left; rows and columns outside the
 * input are zero padding. The gradient functions accept any output size >= 1
 * and compute the exact gradient of the convolution these numbers describe;
 * the TFLM glue restricts them to TFLite's SAME and VALID padding.
 */
typedef struct {
  int32_t stride_h;   /**< >= 1. */
  int32_t stride_w;   /**< >= 1. */
  int32_t dilation_h; /**< >= 1. */
  int32_t dilation_w; /**< >= 1. */
  int32_t pad_top;    /**< >= 0: zero rows above the input. */
  int32_t pad_left;   /**< >= 0: zero columns left of the input. */
} tt_conv_grad_params;

/** Geometry of a forward DEPTHWISE_CONV_2D: output channel c * depth_multiplier + j reads input channel c. */
typedef struct {
  tt_conv_grad_params conv; /**< Strides, dilations and pads, as for CONV_2D. */
  int32_t depth_multiplier; /**< >= 1: output channels per input channel. */
} tt_depthwise_conv_grad_params;

/**
 * Quantization of an int8 filter, symmetric as TFLite requires (zero points 0):
 * real = scale[c] * q for output channel c when per-channel, scale[0] * q for
 * every channel when per-tensor.
 */
typedef struct {
  const float* scale; /**< count values, each > 0. */
  int32_t count;      /**< 1 (per-tensor) or the filter's number of output channels (per-channel). */
} tt_filter_quant_params;

/**
 * d loss / d input of CONV_2D, the transposed convolution of the output
 * gradient with the real filter:
 * gx[n, iy, ix, ci] = sum of gz[n, oy, ox, co] * scale[co] * filter[co, ky, kx, ci]
 * over every (co, ky, kx) and output (oy, ox) whose tap (ky, kx) reads (iy, ix).
 * Needs no forward input. An int8 grad_output is summed as integers: each level
 * times scale[co] / max scale rounded to an integer step 2^-bits of a level
 * (bits = min(7, 16 - ceil(log2(kh * kw * cout)))), so each term is within one
 * such step of the exact one; then times the scales once (common/s8_grad_sums.h).
 *
 * @param[in]  params           strides and dilations >= 1, pads >= 0
 * @param[in]  filter_quant     1 or cout scales, each > 0
 * @param[in]  grad_output_dims [n, oh, ow, cout], every dimension >= 1
 * @param[in]  grad_output      d loss / d real output
 * @param[in]  filter_dims      [cout, kh, kw, cin], every dimension >= 1
 * @param[in]  filter           int8 [cout, kh, kw, cin]
 * @param[in]  grad_input_dims  [n, ih, iw, cin]: n and cin as above, ih and iw >= 1
 * @param[out] grad_input       d loss / d real input
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_conv2d_input_grad_s8(const tt_conv_grad_params* params, const tt_filter_quant_params* filter_quant,
                                  const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                  const tt_dims* filter_dims, const int8_t* filter, const tt_dims* grad_input_dims,
                                  tt_grad_out* grad_input);

/**
 * d loss / d filter of CONV_2D for the first c_update output channels, the
 * correlation of the real forward input with the output gradient:
 * gw[co, ky, kx, ci] = sum over (n, oy, ox) of gz[n, oy, ox, co] * x[n, iy, ix, ci],
 * (iy, ix) being what tap (ky, kx) of output (oy, ox) reads (x = 0 in the
 * padding). Needs no filter. An int8 grad_output's levels times the centered
 * inputs are summed exactly as integers, then times both scales; so are the
 * depthwise filter gradient's, and the depthwise input gradient's (levels times
 * weights) when m = 1.
 *
 * @param[in]  params           strides and dilations >= 1, pads >= 0
 * @param[in]  input_quant      per-tensor quantization of the input, scale > 0
 * @param[in]  grad_output_dims [n, oh, ow, cout], every dimension >= 1
 * @param[in]  grad_output      d loss / d real output
 * @param[in]  input_dims       [n, ih, iw, cin]: n as above, every dimension >= 1
 * @param[in]  input            int8 forward input
 * @param[in]  grad_filter_dims [c_update, kh, kw, cin]: c_update in [1, cout], kh and kw >= 1
 * @param[out] grad_filter      d loss / d real filter, first c_update output channels
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_conv2d_filter_grad_s8(const tt_conv_grad_params* params, const tt_quant_params* input_quant,
                                   const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                   const tt_dims* input_dims, const int8_t* input, const tt_dims* grad_filter_dims,
                                   tt_grad_out* grad_filter);

/**
 * d loss / d input of DEPTHWISE_CONV_2D (m = depth_multiplier):
 * gx[n, iy, ix, ci] = sum of gz[n, oy, ox, oc] * scale[oc] * filter[0, ky, kx, oc]
 * over oc = ci * m + j for j < m, every (ky, kx), and every output (oy, ox)
 * whose tap (ky, kx) reads (iy, ix). Needs no forward input.
 *
 * @param[in]  params           strides and dilations >= 1, pads >= 0, depth_multiplier >= 1
 * @param[in]  filter_quant     1 or cin * m scales, each > 0
 * @param[in]  grad_output_dims [n, oh, ow, cin * m], every dimension >= 1
 * @param[in]  grad_output      d loss / d real output
 * @param[in]  filter_dims      [1, kh, kw, cin * m], kh and kw >= 1
 * @param[in]  filter           int8 [1, kh, kw, cin * m]
 * @param[in]  grad_input_dims  [n, ih, iw, cin]: n as above, every dimension >= 1
 * @param[out] grad_input       d loss / d real input
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_depthwise_conv2d_input_grad_s8(const tt_depthwise_conv_grad_params* params,
                                            const tt_filter_quant_params* filter_quant,
                                            const tt_dims* grad_output_dims, const tt_grad_in* grad_output,
                                            const tt_dims* filter_dims, const int8_t* filter,
                                            const tt_dims* grad_input_dims, tt_grad_out* grad_input);

/**
 * d loss / d filter of DEPTHWISE_CONV_2D for the first c_update output
 * channels (m = depth_multiplier):
 * gw[0, ky, kx, oc] = sum over (n, oy, ox) of gz[n, oy, ox, oc] * x[n, iy, ix, oc / m],
 * (iy, ix) being what tap (ky, kx) of output (oy, ox) reads (x = 0 in the
 * padding). Needs no filter.
 *
 * @param[in]  params           strides and dilations >= 1, pads >= 0, depth_multiplier >= 1
 * @param[in]  input_quant      per-tensor quantization of the input, scale > 0
 * @param[in]  grad_output_dims [n, oh, ow, cin * m], every dimension >= 1
 * @param[in]  grad_output      d loss / d real output
 * @param[in]  input_dims       [n, ih, iw, cin]: n as above, every dimension >= 1
 * @param[in]  input            int8 forward input
 * @param[in]  grad_filter_dims [1, kh, kw, c_update]: c_update in [1, cin * m], kh and kw >= 1
 * @param[out] grad_filter      d loss / d real filter, first c_update output channels
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_depthwise_conv2d_filter_grad_s8(const tt_depthwise_conv_grad_params* params,
                                             const tt_quant_params* input_quant, const tt_dims* grad_output_dims,
                                             const tt_grad_in* grad_output, const tt_dims* input_dims,
                                             const int8_t* input, const tt_dims* grad_filter_dims,
                                             tt_grad_out* grad_filter);

/**
 * d loss / d input of FULLY_CONNECTED: gx[n, i] = sum over o of gz[n, o] * scale[o] * filter[o, i].
 * Computed as the CONV_2D input gradient of a 1x1 convolution over [n, 1, 1, in].
 * Matrices are tt_dims with h = w = 1: n rows, c columns.
 *
 * @param[in]  filter_quant     1 or out scales, each > 0
 * @param[in]  grad_output_dims [n, 1, 1, out], n and out >= 1
 * @param[in]  grad_output      d loss / d real output
 * @param[in]  filter_dims      [out, 1, 1, in], in >= 1
 * @param[in]  filter           int8 [out, in]
 * @param[in]  grad_input_dims  [n, 1, 1, in]
 * @param[out] grad_input       d loss / d real input
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_fully_connected_input_grad_s8(const tt_filter_quant_params* filter_quant, const tt_dims* grad_output_dims,
                                           const tt_grad_in* grad_output, const tt_dims* filter_dims,
                                           const int8_t* filter, const tt_dims* grad_input_dims,
                                           tt_grad_out* grad_input);

/**
 * d loss / d filter of FULLY_CONNECTED for the first c_update output rows:
 * gw[o, i] = sum over n of gz[n, o] * x[n, i]. Computed as the CONV_2D filter
 * gradient of a 1x1 convolution over [n, 1, 1, in]. Matrices are tt_dims
 * with h = w = 1: n rows, c columns.
 *
 * @param[in]  input_quant      per-tensor quantization of the input, scale > 0
 * @param[in]  grad_output_dims [n, 1, 1, out], n and out >= 1
 * @param[in]  grad_output      d loss / d real output
 * @param[in]  input_dims       [n, 1, 1, in], in >= 1
 * @param[in]  input            int8 forward input [n, in]
 * @param[in]  grad_filter_dims [c_update, 1, 1, in]: c_update in [1, out]
 * @param[out] grad_filter      d loss / d real filter, first c_update rows
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_fully_connected_filter_grad_s8(const tt_quant_params* input_quant, const tt_dims* grad_output_dims,
                                            const tt_grad_in* grad_output, const tt_dims* input_dims,
                                            const int8_t* input, const tt_dims* grad_filter_dims,
                                            tt_grad_out* grad_filter);

/**
 * Copies a constant tensor's bytes into a variable tensor: trainable
 * parameters start from the model's values (in flash) and live in RAM.
 *
 * @param[in]  bytes       number of bytes, >= 1
 * @param[in]  source      `bytes` bytes
 * @param[out] destination `bytes` bytes, not overlapping source
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_copy(int32_t bytes, const void* source, void* destination);

/** Clamp range of a fused activation (ReLU, ReLU6, clamp) in its int8 output's quantized domain. */
typedef struct {
  int32_t lower_q; /**< Gradient passes only where y > lower_q; in [-129, upper_q), -129 for no lower clamp. */
  int32_t upper_q; /**< Gradient passes only where y < upper_q; in (lower_q, 128], 128 for no upper clamp. */
} tt_activation_params;

/** Bytes of the 1-bit mask of `count` elements. */
#define TT_ACTIVATION_MASK_BYTES(count) (((count) + 7) / 8)

/**
 * Packs where a fused activation's gradient passes into one bit per element:
 * bit i % 8 of byte i / 8 (least significant first) is set iff
 * lower_q < y[i] < upper_q. Backward then keeps 1 bit instead of 8.
 *
 * @param[in]  params clamp range
 * @param[in]  count  number of elements, >= 1
 * @param[in]  y      int8 [count], the activation's output
 * @param[out] mask   uint8 [TT_ACTIVATION_MASK_BYTES(count)]; unused bits of the last byte are 0
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_activation_mask_s8(const tt_activation_params* params, int32_t count, const int8_t* y, uint8_t* mask);

/**
 * Backward of a fused activation from its saved int8 output:
 * grad_input[i] = grad_output[i] where lower_q < y[i] < upper_q, else 0.
 * An int8 gradient keeps grad_output's scale (*grad_input->scale is set to it)
 * and its values are copied exactly.
 *
 * @param[in]  params      clamp range
 * @param[in]  count       number of elements, >= 1
 * @param[in]  y           int8 [count], the activation's output
 * @param[in]  grad_output [count], d loss / d y
 * @param[out] grad_input  [count], same representation as grad_output
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_activation_grad_s8(const tt_activation_params* params, int32_t count, const int8_t* y,
                                const tt_grad_in* grad_output, tt_grad_out* grad_input);

/**
 * As tt_activation_grad_s8, reading the pass pattern from the mask written by
 * tt_activation_mask_s8 instead of the activation.
 *
 * grad_input may be grad_output itself (an input-gradient op fused with the
 * mask, tinytrain_tflm/passes/fusion.py): each element is read before it is
 * written.
 *
 * @param[in]  count       number of elements, >= 1
 * @param[in]  mask        uint8 [TT_ACTIVATION_MASK_BYTES(count)]
 * @param[in]  grad_output [count]
 * @param[out] grad_input  [count], same representation as grad_output
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_activation_grad_mask(int32_t count, const uint8_t* mask, const tt_grad_in* grad_output,
                                  tt_grad_out* grad_input);

/**
 * Sum of two gradients of one tensor, e.g. a tensor read by two ops such as
 * the input of a residual block: sum[i] = a[i] + b[i]. The operands may be in
 * either representation; an int8 sum gets its own run-time scale.
 *
 * @param[in]  count number of elements of each operand, >= 1
 * @param[in]  a     [count]
 * @param[in]  b     [count]
 * @param[out] sum   [count]; may not alias a or b when it is int8 (the values are read twice)
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_grad_add(int32_t count, const tt_grad_in* a, const tt_grad_in* b, tt_grad_out* sum);

/**
 * The largest magnitude among int8 gradient levels: tt_grad_in's top_level,
 * which the glue measures on every int8 gradient a backward op reads.
 *
 * @param[in] count  number of levels, >= 0
 * @param[in] levels [count]
 * @return max |levels[i]|, in [0, 128]; 0 when count is 0
 */
int32_t tt_grad_top_level(int32_t count, const int8_t* levels);

/** Which element-wise activation function tt_unary_grad_s8 differentiates, and its saved tensor. */
typedef struct {
  int32_t function;      /**< TT_UNARY_LOGISTIC, TT_UNARY_TANH, TT_UNARY_HARD_SWISH or TT_UNARY_LEAKY_RELU. */
  float alpha;           /**< TT_UNARY_LEAKY_RELU's slope for x <= 0, finite; ignored by the others. */
  tt_quant_params saved; /**< Quantization of the saved int8 tensor: scale > 0, zero point in [-128, 127]. */
} tt_unary_params;

/**
 * Backward of an element-wise activation function y = f(x):
 * grad_input[i] = f'(x[i]) * grad_output[i], with f' evaluated in float from
 * the saved int8 tensor: y for LOGISTIC (f' = y (1 - y)) and TANH (1 - y^2),
 * x for HARD_SWISH ((2x + 3) / 6 inside (-3, 3), 0 below, 1 above) and
 * LEAKY_RELU (1 for x > 0, alpha otherwise). Reading y for the sigmoid and
 * tanh saves their input; f' from the rounded y differs from f' at the exact
 * x by at most |1 - 2y| (resp. 2|y|) times half of y's scale.
 *
 * @param[in]  params      function, slope and the saved tensor's quantization
 * @param[in]  count       number of elements, >= 1
 * @param[in]  saved       int8 [count], y or x as params->function says
 * @param[in]  grad_output [count], d loss / d y
 * @param[out] grad_input  [count], d loss / d x; an int8 one gets its own run-time scale
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_unary_grad_s8(const tt_unary_params* params, int32_t count, const int8_t* saved,
                           const tt_grad_in* grad_output, tt_grad_out* grad_input);

/**
 * d loss / d a of the element-wise product y = a * b with TFLite broadcasting
 * over NHWC dims (a dimension of a or b is y's or 1): grad_a = grad_y * b,
 * summed over every dimension along which a was broadcast. Called once per
 * operand that needs a gradient, with the other operand as `other`.
 *
 * @param[in]  other_quant      quantization of b: scale > 0, zero point in [-128, 127]
 * @param[in]  grad_output_dims y's dims, each >= 1
 * @param[in]  grad_output      [y], d loss / d y
 * @param[in]  other_dims       b's dims, each y's or 1
 * @param[in]  other            int8 [b]
 * @param[in]  grad_input_dims  a's dims, each y's or 1
 * @param[out] grad_input       [a], d loss / d a; an int8 one gets its own run-time scale
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_mul_grad_s8(const tt_quant_params* other_quant, const tt_dims* grad_output_dims,
                         const tt_grad_in* grad_output, const tt_dims* other_dims, const int8_t* other,
                         const tt_dims* grad_input_dims, tt_grad_out* grad_input);

/**
 * Mean binary cross-entropy of one int8 logit per sample against 0/1 labels:
 * loss = mean_i [max(z_i, 0) - y_i z_i + log(1 + exp(-|z_i|))], z_i the
 * dequantized logit, and grad_i = (sigmoid(z_i) - y_i) / batch, zero where
 * the logit sits at an int8 limit and the gradient would push it further out
 * (as the softmax loss does). tt_expf / tt_logf: the same bits on every target.
 *
 * @param[in]  logits_quant scale > 0
 * @param[in]  batch        samples, >= 1
 * @param[in]  logits       int8 [batch]
 * @param[in]  labels       int32 [batch], each 0 or 1
 * @param[out] loss         float [1]
 * @param[out] grad         [batch]; an int8 one gets its own run-time scale
 * @return TT_SUCCESS; TT_LABEL_OUT_OF_RANGE (nothing written) for a label other than 0 and 1;
 *         TT_ARG_ERROR (nothing written) for a bad argument
 */
tt_status tt_binary_cross_entropy_s8(const tt_quant_params* logits_quant, int32_t batch, const int8_t* logits,
                                     const int32_t* labels, float* loss, tt_grad_out* grad);

/**
 * Mean squared error of an int8 output against an int8 target, each with its
 * own quantization: loss = mean_i (o_i - t_i)^2 over all `count` elements, and
 * grad_i = 2 (o_i - t_i) / count, zero where o_i sits at an int8 limit and the
 * gradient would push it further out.
 *
 * @param[in]  output_quant scale > 0
 * @param[in]  target_quant scale > 0
 * @param[in]  count        elements, >= 1
 * @param[in]  output       int8 [count]
 * @param[in]  target       int8 [count]
 * @param[out] loss         float [1]
 * @param[out] grad         [count]; an int8 one gets its own run-time scale
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_mean_squared_error_s8(const tt_quant_params* output_quant, const tt_quant_params* target_quant,
                                   int32_t count, const int8_t* output, const int8_t* target, float* loss,
                                   tt_grad_out* grad);

/**
 * Geometry of a TFLite 2-D pooling: output (oy, ox) pools input rows
 * oy * stride_h - pad_top .. + filter_h - 1 and the columns likewise, over the
 * rows and columns inside the input only (padding is never averaged, never a
 * maximum). Every window must hold at least one input element.
 */
typedef struct {
  int32_t filter_h; /**< Window height, >= 1. */
  int32_t filter_w; /**< Window width, >= 1. */
  int32_t stride_h; /**< >= 1. */
  int32_t stride_w; /**< >= 1. */
  int32_t pad_top;  /**< In [0, filter_h), and (oh - 1) * stride_h - pad_top < ih. */
  int32_t pad_left; /**< In [0, filter_w), and (ow - 1) * stride_w - pad_left < iw. */
} tt_pool_params;

/**
 * d loss / d input of AVERAGE_POOL_2D: each window's output gradient divided
 * by the number of its in-bounds elements and given to each of them,
 *   grad_input[n,iy,ix,c] = sum over windows (oy,ox) containing (iy,ix) of grad_output[n,oy,ox,c] / count(oy,ox).
 *
 * @param[in]  params           pooling geometry
 * @param[in]  grad_output_dims [n, oh, ow, c], all >= 1
 * @param[in]  grad_output      d loss / d pooled output
 * @param[in]  grad_input_dims  [n, ih, iw, c]: the forward input's shape, same n and c
 * @param[out] grad_input       d loss / d forward input
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_avg_pool2d_grad(const tt_pool_params* params, const tt_dims* grad_output_dims,
                             const tt_grad_in* grad_output, const tt_dims* grad_input_dims, tt_grad_out* grad_input);

/**
 * d loss / d input of MAX_POOL_2D: each window's output gradient goes to the
 * first maximum of its in-bounds elements in row-major order (TensorFlow's
 * choice on ties),
 *   grad_input[n,iy,ix,c] = sum over windows (oy,ox) whose first maximum is (iy,ix) of grad_output[n,oy,ox,c].
 * Uses no scratch memory: a window's maximum is found again for each element
 * it contains, about filter_h * filter_w / (stride_h * stride_w) scans.
 *
 * @param[in]  params           pooling geometry
 * @param[in]  grad_output_dims [n, oh, ow, c], all >= 1
 * @param[in]  grad_output      d loss / d pooled output
 * @param[in]  input_dims       [n, ih, iw, c], same n and c
 * @param[in]  input            int8, the forward input (any quantization: only its order matters)
 * @param[out] grad_input       [n, ih, iw, c], d loss / d forward input
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_max_pool2d_grad_s8(const tt_pool_params* params, const tt_dims* grad_output_dims,
                                const tt_grad_in* grad_output, const tt_dims* input_dims, const int8_t* input,
                                tt_grad_out* grad_input);

/**
 * d loss / d input of MEAN over height and width (global average pooling):
 * grad_input[n,iy,ix,c] = grad_output[n,c] / (ih * iw).
 *
 * @param[in]  grad_input_dims [n, ih, iw, c], all >= 1: the forward input's shape
 * @param[in]  grad_output     [n, c], d loss / d mean
 * @param[out] grad_input      [n, ih, iw, c]
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_mean_grad(const tt_dims* grad_input_dims, const tt_grad_in* grad_output, tt_grad_out* grad_input);

/** Options of an SGD update (schema op SGD). */
typedef struct {
  float learning_rate; /**< Step size in real units, > 0. */
  float momentum;      /**< Coefficient in [0, 1); 0 means plain SGD with no momentum buffer. */
  int32_t qas;         /**< 1: quantization-aware scaling (integer step lr * g / s); 0: naive (lr * s * g). */
  int32_t rounding;    /**< TT_ROUND_TRUNCATE, TT_ROUND_NEAREST or TT_ROUND_STOCHASTIC (tt_schema_generated.h). */
} tt_sgd_params;

/**
 * A parameter tensor seen along its quantized dimension as [outer, channels,
 * inner]; its gradient is [outer, channels_to_update, inner]: the first
 * channels are updated (e.g. a conv filter [cout, kh, kw, cin] on axis 0 is
 * [1, cout, kh * kw * cin]; a depthwise filter [1, kh, kw, c] on axis 3 is
 * [kh * kw, c, 1]).
 */
typedef struct {
  int32_t outer;              /**< Product of the dimensions before the quantized one, >= 1. */
  int32_t channels;           /**< The parameter's size along the quantized dimension, >= 1. */
  int32_t channels_to_update; /**< The gradient's size along it, in [1, channels]. */
  int32_t inner;              /**< Product of the dimensions after the quantized one, >= 1. */
} tt_sgd_dims;

/**
 * The gradients of a mini-batch's samples so far, summed, which the next
 * update averages with its own (gradient accumulation).
 */
typedef struct {
  float* sum;    /**< float32 [outer, channels_to_update, inner]; an update reads it, then zeroes it. */
  int32_t count; /**< Samples summed into it, >= 0. */
} tt_sgd_accumulator;

/**
 * sum += grad, element by element (a mini-batch sample's gradient, not yet applied).
 *
 * @param[in]     dims the parameter as [outer, channels, inner]
 * @param[in]     grad [outer, channels_to_update, inner]
 * @param[in,out] sum  float32 [outer, channels_to_update, inner]
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_sgd_accumulate(const tt_sgd_dims* dims, const tt_grad_in* grad, float* sum);

/**
 * One SGD step on an int8 weight tensor, in place. For each element of the
 * first channels_to_update channels, with g its gradient w.r.t. the real
 * (dequantized) weight and f_c = learning_rate / s_c with QAS, learning_rate * s_c
 * without (s_c = scales[c], or scales[0] when num_scales is 1):
 *   with an accumulator g = (sum + g) / (count + 1), the mean over the mini-batch, and sum = 0;
 *   v = g, or with momentum m = momentum * m + g and v = m;
 *   q = saturate(q + round(-f_c * v)) to [-127, 127], the change clamped to +-256 (int32: +-2^32) first;
 * round is ROUND_STOCHASTIC's floor(x + u) with u = (r >> 8) * 2^-24, r the next number of the generator.
 * Float arithmetic is single precision in exactly this order. One case runs in fixed point instead: with
 * an int8 gradient (levels l at scale s_g), ROUND_STOCHASTIC, no momentum and no accumulator, the change
 * per level k = -f_c * s_g (float), clamped to +-256, is M * L / 2^32 with L the smallest power of two
 * that keeps M = round(k * 2^32 / L) (ties away from zero) within int32, and
 *   q = saturate(q + floor((l * L * M + r) / 2^32))
 * in exact integer arithmetic: unbiased to |l| * L * 2^-33 quanta (L = 1 for |k| < 1/2).
 *
 * @param[in,out] rng_state    xorshift32 state of ROUND_STOCHASTIC, nonzero, advanced once per updated
 *                             element, channel by channel (c, then outer, then inner); not read with
 *                             the other roundings (may then be NULL)
 * @param[in]     params       learning_rate > 0, qas, momentum and rounding
 * @param[in]     num_scales   1 (per-tensor) or >= channels_to_update (per-channel)
 * @param[in]     scales       the parameter's quantization scales, each > 0
 * @param[in]     dims         the parameter as [outer, channels, inner]
 * @param[in]     grad         [outer, channels_to_update, inner]
 * @param[in,out] momentum     float32 [outer, channels_to_update, inner] iff params->momentum > 0, else NULL
 * @param[in,out] accumulator  the mini-batch's summed gradients, or NULL to step with grad alone
 * @param[in,out] parameter    int8 [outer, channels, inner]
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_sgd_update_s8(uint32_t* rng_state, const tt_sgd_params* params, int32_t num_scales, const float* scales,
                           const tt_sgd_dims* dims, const tt_grad_in* grad, float* momentum,
                           tt_sgd_accumulator* accumulator, int8_t* parameter);

/**
 * As tt_sgd_update_s8 for an int32 bias (scale s_weight * s_input per
 * channel), saturating to the int32 range. The sum is formed in int64, so it
 * cannot overflow before saturating.
 *
 * @param[in,out] parameter int32 [outer, channels, inner]
 */
tt_status tt_sgd_update_s32(uint32_t* rng_state, const tt_sgd_params* params, int32_t num_scales,
                            const float* scales, const tt_sgd_dims* dims, const tt_grad_in* grad, float* momentum,
                            tt_sgd_accumulator* accumulator, int32_t* parameter);

/**
 * As tt_sgd_update_s32 on an int32 bias [channels], every channel updated, with the bias gradient
 * formed where it is read: g_c is channel c of the layer's output gradient summed over its rows,
 * exactly as tt_bias_grad sums it (an int8 gradient's levels as integers, times its scale), but
 * never stored, so no bias-gradient tensor exists. No accumulator: a mini-batch sums its samples'
 * bias gradients through tt_bias_grad and tt_sgd_update_s32.
 *
 * @param[in]     grad_dims   the output gradient's shape: rows = n * h * w, channels = c
 * @param[in]     grad_output [rows, channels]
 * @param[in,out] momentum    float32 [channels] iff params->momentum > 0, else NULL
 * @param[in,out] parameter   int32 [channels]
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_sgd_update_channel_sums_s32(uint32_t* rng_state, const tt_sgd_params* params, int32_t num_scales,
                                         const float* scales, const tt_dims* grad_dims, const tt_grad_in* grad_output,
                                         float* momentum, int32_t* parameter);

/**
 * Everything a forward int8 convolution needs besides its tensors: the
 * geometry, the zero points as TFLite's kernels apply them, and the clamp of
 * the fused activation. The per-channel requantization is an argument of its
 * own: it is read from the model, not computed here.
 */
typedef struct {
  tt_conv_grad_params conv; /**< Strides, dilations and pads. */
  int32_t depth_multiplier; /**< Depthwise only (>= 1); ignored by tt_conv2d_s8. */
  int32_t input_offset;     /**< Minus the input's zero point, in [-127, 128]. */
  int32_t output_offset;    /**< The output's zero point, in [-128, 127]. */
  int32_t activation_min;   /**< Clamp of the output, -128 <= min <= max <= 127. */
  int32_t activation_max;
} tt_conv_params;

/**
 * Per-output-channel requantization of an int32 accumulator to the output's
 * scale: acc * multiplier[c] * 2^(shift[c] - 31), rounded as TFLite's
 * MultiplyByQuantizedMultiplier rounds (twice: a rounding doubling high
 * multiply, then a rounding right shift).
 */
typedef struct {
  const int32_t* multiplier; /**< One per output channel, >= 0. */
  const int32_t* shift;      /**< One per output channel, in [-31, 30]. */
} tt_requantization;

/**
 * Forward CONV_2D on int8, bit-identical to TFLite's reference kernel:
 * out[n, oy, ox, co] = clamp(requant_co(bias[co] + sum of
 * filter[co, ky, kx, ci] * (x[n, iy, ix, ci] + input_offset)) + output_offset)
 * over the taps inside the input. Writes output rows in order, so the output
 * may overlap input rows no later output row reads (tinytrain_tflm/plan/overlap.py).
 *
 * @param[in]  ctx          scratch of tt_conv2d_s8_get_buffer_size bytes (NULL when that is 0)
 * @param[in]  params       geometry (strides, dilations >= 1, pads >= 0), offsets, clamp
 * @param[in]  input_dims   [n, ih, iw, cin]
 * @param[in]  filter_dims  [cout, kh, kw, cin]
 * @param[in]  bias         [cout], or NULL for none
 * @param[in]  requant      cout multipliers and shifts
 * @param[in]  output_dims  [n, oh, ow, cout]
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_conv2d_s8(const tt_context* ctx, const tt_conv_params* params, const tt_dims* input_dims,
                       const int8_t* input, const tt_dims* filter_dims, const int8_t* filter, const int32_t* bias,
                       const tt_requantization* requant, const tt_dims* output_dims, int8_t* output);

/**
 * Bytes of scratch tt_conv2d_s8 needs in ctx for these arguments: 0 in the
 * portable core; the Cortex-M version (kernels/cmsis_nn) asks CMSIS-NN.
 *
 * @return the size, or -1 when the arguments are invalid
 */
int32_t tt_conv2d_s8_get_buffer_size(const tt_conv_params* params, const tt_dims* input_dims,
                                     const tt_dims* filter_dims, const tt_dims* output_dims);

/**
 * Forward DEPTHWISE_CONV_2D on int8 (m = depth_multiplier), bit-identical to
 * TFLite's reference kernel: output channel oc = ci * m + j sums
 * filter[0, ky, kx, oc] * (x[n, iy, ix, ci] + input_offset), then as tt_conv2d_s8.
 *
 * @param[in]  ctx          scratch of tt_depthwise_conv2d_s8_get_buffer_size bytes (NULL when that is 0)
 * @param[in]  params       as tt_conv2d_s8's, depth_multiplier >= 1
 * @param[in]  input_dims   [n, ih, iw, cin]
 * @param[in]  filter_dims  [1, kh, kw, cin * m]
 * @param[in]  bias         [cin * m], or NULL for none
 * @param[in]  requant      cin * m multipliers and shifts
 * @param[in]  output_dims  [n, oh, ow, cin * m]
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_depthwise_conv2d_s8(const tt_context* ctx, const tt_conv_params* params, const tt_dims* input_dims,
                                 const int8_t* input, const tt_dims* filter_dims, const int8_t* filter,
                                 const int32_t* bias, const tt_requantization* requant, const tt_dims* output_dims,
                                 int8_t* output);

/** As tt_conv2d_s8_get_buffer_size, for tt_depthwise_conv2d_s8. */
int32_t tt_depthwise_conv2d_s8_get_buffer_size(const tt_conv_params* params, const tt_dims* input_dims,
                                               const tt_dims* filter_dims, const tt_dims* output_dims);

/**
 * A frozen stage of int8 convolutions run tile by tile (TT_TILED_STAGE). The
 * description is the op's constant int32 [num_ops, TT_STAGE_ROW_FIELDS] table
 * (its layout: schema/tinytrain.json); stage op k reads the stage input (-1)
 * or an earlier op's output, and the last op's output is the stage output.
 */
typedef struct {
  const int32_t* description; /**< int32 [num_ops, TT_STAGE_ROW_FIELDS]. */
  int32_t num_ops;            /**< 1 to TT_STAGE_MAX_OPS. */
  int32_t tiles_h;            /**< Tiles along the output's height, 1 to its height. */
  int32_t tiles_w;            /**< Tiles along the output's width, 1 to its width. */
} tt_tiled_stage_params;

/** The constant tensors of one stage op: a conv's, or all NULL for PAD and ADD. */
typedef struct {
  const int8_t* filter;    /**< Conv [cout, kh, kw, cin], depthwise [1, kh, kw, cout]. */
  const int32_t* bias;     /**< [cout], or NULL for none. */
  tt_requantization requant;
} tt_stage_weights;

/**
 * Scratch bytes tt_tiled_stage_s8 needs for this stage and input, after
 * checking the description: every op's geometry against its input's shape,
 * each tensor read by later ops only, a PAD's output read by convs only, and
 * no conv whose tile patch starts before its window (a tensor two readers
 * need over different windows must be read by an ADD for all but one). The
 * intermediate patches of one tile share the buffer by lifetime, and a tile
 * reuses it whole.
 *
 * @param[in]  params      the stage
 * @param[in]  input_dims  [1, ih, iw, cin]
 * @param[out] bytes       scratch bytes (0 for a stage with no intermediate patch)
 * @return TT_SUCCESS, or TT_ARG_ERROR
 */
tt_status tt_tiled_stage_get_buffer_size(const tt_tiled_stage_params* params, const tt_dims* input_dims, int32_t* bytes);

/**
 * Runs the stage tile by tile, bit-identical to its ops run whole: each conv
 * as tt_conv2d_s8 or tt_depthwise_conv2d_s8, each ADD as TFLite's int8 ADD,
 * each PAD with the zero point. With tiles_w 1 the tiles are row bands, run top
 * to bottom: a band reads every input row it needs before it writes its output
 * rows, so the output may overlap the input as far as a single conv's could.
 *
 * @param[in]  params       the stage, as for tt_tiled_stage_get_buffer_size
 * @param[in]  weights      num_ops entries
 * @param[in]  scratch      at least tt_tiled_stage_get_buffer_size's bytes
 * @param[in]  input_dims   [1, ih, iw, cin]
 * @param[in]  input        int8 stage input
 * @param[in]  output_dims  the last op's output shape
 * @param[out] output       int8 stage output
 * @return TT_SUCCESS, or TT_ARG_ERROR with nothing written
 */
tt_status tt_tiled_stage_s8(const tt_tiled_stage_params* params, const tt_stage_weights* weights, int8_t* scratch,
                            int32_t scratch_bytes, const tt_dims* input_dims, const int8_t* input,
                            const tt_dims* output_dims, int8_t* output);

/**
 * Fills `out` with columns [col, col + cols) of row `row` of a streamed stage
 * input ([1, ih, iw, cin] int8, row-major), cols * cin bytes: the firmware's
 * source of an image that is not in the arena (a camera, flash, a file).
 * Returns TT_SUCCESS, or any other status to stop the stage.
 */
typedef tt_status (*tt_stage_row_reader)(void* context, int32_t row, int32_t col, int32_t cols, int8_t* out);

/**
 * tt_tiled_stage_s8 with its input read through `read` instead of from
 * memory: each tile asks for the input rows and columns it needs, straight
 * into its input patch in the scratch buffer (halo rows are asked for again
 * by the tiles that share them). The stage holds no whole copy of the input.
 *
 * @param[in]  read     called once per input row of each tile's patch
 * @param[in]  context  passed to `read`
 * @return TT_SUCCESS, `read`'s status when it fails, or TT_ARG_ERROR
 */
tt_status tt_tiled_stage_read_s8(const tt_tiled_stage_params* params, const tt_stage_weights* weights,
                                 int8_t* scratch, int32_t scratch_bytes, const tt_dims* input_dims,
                                 tt_stage_row_reader read, void* context, const tt_dims* output_dims, int8_t* output);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYTRAIN_KERNELS_CORE_TT_FUNCTIONS_H_

/* Types shared by every tinytrain kernel core function: status codes, shapes
 * and quantization parameters. Plain C so the core can be called from C, C++,
 * or Python through ctypes, with no TFLM type anywhere. */
#ifndef TINYTRAIN_KERNELS_CORE_TT_TYPES_H_
#define TINYTRAIN_KERNELS_CORE_TT_TYPES_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Result of every core function. Only TT_SUCCESS means outputs were written. */
typedef enum {
  TT_SUCCESS = 0,
  TT_ARG_ERROR = -1,           /**< NULL pointer or a shape/parameter outside its documented range. */
  TT_LABEL_OUT_OF_RANGE = -2,  /**< A label is negative or not below the number of classes. */
  TT_BLOB_TRUNCATED = -3,      /**< A blob ends before its header or its declared payload does. */
  TT_BLOB_BAD_MAGIC = -4,      /**< A blob does not start with the tinytrain magic. */
  TT_BLOB_BAD_VERSION = -5,    /**< A blob was written for another schema version. */
  TT_BLOB_WRONG_KIND = -6,     /**< A blob belongs to another op or metadata record. */
  TT_BLOB_BAD_CHECKSUM = -7,   /**< A blob's payload does not match its CRC-32. */
  TT_BLOB_BAD_LENGTH = -8,     /**< A blob's payload length differs from what its kind holds. */
  TT_FLEET_MISMATCH = -9,      /**< A fleet update's tensors differ from the model's trained ones. */
  TT_FLEET_OUT_OF_RANGE = -10, /**< A fleet update holds an int8 value of -128 (weights are symmetric). */
  TT_CHECKPOINT_FOREIGN = -11, /**< A checkpoint was written for another training model (identity or tensors differ). */
  TT_CHECKPOINT_STORAGE = -12, /**< The checkpoint storage's read, erase or write callback failed. */
  TT_CHECKPOINT_NONE = -13,    /**< Neither checkpoint slot holds a valid checkpoint of this model. */
} tt_status;

/** One line of English for a status, for error reports. Never NULL. */
const char* tt_status_message(tt_status status);

/** Tensor shape in NHWC order; unused dimensions are 1. */
typedef struct {
  int32_t n;
  int32_t h;
  int32_t w;
  int32_t c;
} tt_dims;

/**
 * Scratch memory the caller provides (in TFLM, from the arena, requested in
 * Prepare): `size` bytes at `buf`. A function that needs none accepts NULL.
 */
typedef struct {
  void* buf;
  int32_t size;
} tt_context;

/** Per-tensor affine quantization: real = scale * (q - zero_point). */
typedef struct {
  float scale;
  int32_t zero_point;
} tt_quant_params;

/** How a gradient tensor is stored: one representation per training model. */
typedef enum {
  TT_GRAD_F32 = 0, /**< float32 values: the reference. */
  TT_GRAD_S8 = 1,  /**< int8 values times one run-time scale, zero point 0: 4x less memory. */
} tt_grad_type;

/** A gradient a kernel reads: value i is data[i] (F32) or scale * data[i] (S8). */
typedef struct {
  tt_grad_type type;
  const void* data;
  float scale; /**< S8 only, > 0. */
  /** S8 only: max |data[i]| (tt_grad_top_level) when the caller measured it, 0 when not: the
   * reference of the gradient a kernel writes from this one (see tt_grad_out). */
  int32_t top_level;
} tt_grad_in;

/**
 * Delayed scaling of an S8 gradient: what one training step leaves for the
 * next, kept in a variable tensor (zeroed by TFLM at allocation and reset).
 */
typedef struct {
  /** The predicted max|g| / reference (see tt_grad_out): a moving average over the
   * steps whose values were not all 0, a quarter on the newest; +0 before the first
   * step, -0 while every step had all-0 values. */
  float gain;
  /** Steps that took a second pass over the values: a count, exact below 2^24. */
  float second_passes;
} tt_grad_history;

/**
 * A gradient a kernel writes. For S8 the kernel picks the scale, stores it in
 * *scale and writes values in [-127, 127] rounded to nearest:
 * - with no history, or one whose gain is +0 (the first step after allocation
 *   or reset): a first pass finds max|g|, a second quantizes at max|g| / 127
 *   (scale 1 when every value is 0);
 * - with a gain of -0 (every step so far had all-0 values): one pass at scale
 *   1; a second at max|g| / 127 if a value was not 0;
 * - with a history whose gain is > 0: one pass at scale
 *   sqrt(2) * gain * reference / 127, reference being the exact scale of the
 *   gradient the kernel reads: scale * top_level / 127 when its top_level is
 *   given, else its scale (1 when it reads float32 or none). The levels
 *   stand if the largest one is in [45, 127] or every value is 0; otherwise (a
 *   value saturated, or more than 1.5 bits of resolution went unused) a second
 *   pass quantizes at max|g| / 127.
 * - a kernel that knows max|g| before writing (the filter gradient of a
 *   pointwise layer over one pixel, a fully connected one at batch 1: an outer
 *   product) writes in one pass at max|g| / 127, whatever the history.
 * A step whose values were not all 0 moves the history's gain a quarter of the
 * way to its max|g| / reference (all the way from +0 or -0); an all-0 step
 * leaves it, or makes it -0 from +0.
 */
typedef struct {
  tt_grad_type type;
  void* data;
  float* scale;             /**< S8 only. */
  tt_grad_history* history; /**< S8 only; null for the two passes of every step. */
} tt_grad_out;

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYTRAIN_KERNELS_CORE_TT_TYPES_H_

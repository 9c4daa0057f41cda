/* Fleet update payload: the values of a training model's trained tensors
 * (int8 weights and int32 biases of the trained channels, with their scales),
 * as a device uploads them after a round of local training and as it receives
 * the fleet's global values for the next round. Portable: no TFLM type; the
 * firmware fills a tt_fleet_tensor per trained variable (its tensor index in
 * the training model, its RAM data and its per-channel scales) and calls these.
 *
 * Layout (little-endian), the tinytrain blob header with its own magic:
 *   0  u32 magic "TTFU"   4 u16 version (1)   6 u16 kind (1: values)
 *   8  u32 payload bytes  12 u32 CRC-32 of the payload
 *   16 payload: u32 round, u32 num_samples, u32 num_tensors, then per tensor
 *      u32 tensor index, u32 type (1 int8, 2 int32), u32 count (trained values),
 *      u32 num_scales,
 *      f32 scales[num_scales], values (int8: count bytes then zero padding to
 *      4 bytes; int32: 4 * count bytes).
 * tinytrain_tflm/fleet/payload.py writes and reads the same layout. */
#ifndef TINYTRAIN_KERNELS_CORE_FLEET_TT_FLEET_UPDATE_H_
#define TINYTRAIN_KERNELS_CORE_FLEET_TT_FLEET_UPDATE_H_

#include <stddef.h>
#include <stdint.h>

#include "../tt_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TT_FLEET_MAGIC 0x55465454u /* "TTFU" */
#define TT_FLEET_VERSION 1
#define TT_FLEET_KIND_VALUES 1

/** Element type of a trained tensor. */
typedef enum {
  TT_FLEET_S8 = 1,  /**< int8 weights, saturated to [-127, 127] as TT_SGD does. */
  TT_FLEET_S32 = 2, /**< int32 biases. */
} tt_fleet_type;

/**
 * One trained tensor of the device's training model, laid out as TT_SGD sees it:
 * [outer, channels, inner] with the quantized axis in the middle, of which
 * channels [0, channels_trained) train. Only those travel: an update holds
 * outer * channels_trained * inner values, in that order.
 */
typedef struct {
  uint32_t tensor;           /**< Index of its RAM variable in the training model's subgraph 0. */
  tt_fleet_type type;        /**< Element type of `values`. */
  uint32_t outer;            /**< >= 1 */
  uint32_t channels;         /**< >= 1 */
  uint32_t channels_trained; /**< In [1, channels]. */
  uint32_t inner;            /**< >= 1 */
  uint32_t num_scales;       /**< channels_trained, or 1 for a per-tensor scale. */
  const float* scales;       /**< The trained channels' fixed scales: an update must carry exactly these. */
  void* values;              /**< The whole variable, int8_t or int32_t[outer * channels * inner]. */
} tt_fleet_tensor;

/** The header fields of an update. */
typedef struct {
  uint32_t round;       /**< Federated round the values belong to. */
  uint32_t num_samples; /**< Samples the device trained on (the weight in FedAvg); 0 for global values. */
} tt_fleet_info;

/** Bytes tt_fleet_update_write needs for `tensors`; 0 if an argument is invalid. */
size_t tt_fleet_update_size(const tt_fleet_tensor* tensors, uint32_t num_tensors);

/**
 * Writes the current values of `tensors` as an update blob.
 * @param[out] blob     capacity bytes; tt_fleet_update_size bytes are written
 * @param[out] written  bytes written
 * @return TT_SUCCESS, TT_ARG_ERROR (invalid tensor or capacity too small)
 */
tt_status tt_fleet_update_write(const tt_fleet_info* info, const tt_fleet_tensor* tensors, uint32_t num_tensors,
                                uint8_t* blob, size_t capacity, size_t* written);

/**
 * Checks a blob completely against the device's trained tensors without
 * changing anything: header, CRC-32, lengths, and for every tensor in order
 * the same index, type, count and bit-identical scales; int8 values in
 * [-127, 127].
 * @param[out] info  the blob's round and sample count (may be NULL)
 * @return TT_SUCCESS, a TT_BLOB_* status, TT_FLEET_MISMATCH or TT_FLEET_OUT_OF_RANGE
 */
tt_status tt_fleet_update_check(const uint8_t* blob, size_t length, const tt_fleet_tensor* tensors,
                                uint32_t num_tensors, tt_fleet_info* info);

/**
 * tt_fleet_update_check, then, only if it succeeded, copies the blob's values
 * into every tensor's `values`. A rejected blob changes nothing.
 */
tt_status tt_fleet_update_apply(const uint8_t* blob, size_t length, const tt_fleet_tensor* tensors,
                                uint32_t num_tensors, tt_fleet_info* info);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYTRAIN_KERNELS_CORE_FLEET_TT_FLEET_UPDATE_H_

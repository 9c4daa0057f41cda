/* Device checkpoint: the trained state of a training model (every variable TT_SGD updates, its
 * momentum and its stochastic-rounding generator's state, every int8 gradient's scale history) saved
 * to, and restored from, a storage the firmware provides (RAM, a flash page or two, a file) through
 * read/erase/write callbacks. Portable: no TFLM type; the firmware fills a tt_checkpoint_tensor per
 * checkpointed entry (kernels/tflm/tinytrain_checkpoint.h does it from a MicroInterpreter) and calls
 * these. An entry is a tensor or, with TT_CHECKPOINT_ROUNDING_STATE set in its index, a 4-byte state
 * an op keeps outside the tensors; the core treats both alike.
 *
 * The storage holds two slots of slot_bytes each. A save writes the slot that does not hold the
 * newest valid checkpoint, with the next sequence number, erasing it first and writing its header
 * last: a power loss during a save leaves the other slot, the last good state, untouched. A restore
 * takes the valid slot with the newest sequence; a slot that is empty, corrupt (CRC-32), of another
 * format version or of another model (identity, tensor table) is skipped, and with no valid slot
 * nothing is changed, so the variables keep the pretrained values TT_INIT_VARIABLES copied.
 *
 * Slot layout (little-endian), the tinytrain blob header with its own magic:
 *   0  u32 magic "TTCK"   4 u16 version (2)   6 u16 kind (1: training state)
 *   8  u32 payload bytes  12 u32 CRC-32 of the payload
 *   16 payload: u32 sequence, u32 model identity, u32 num_tensors (entries),
 *      per entry u32 index (a tensor index, or TT_CHECKPOINT_ROUNDING_STATE | op index), u32 bytes,
 *      then per entry its bytes, zero-padded to a multiple of 4.
 * Version 1 had no rounding-state entries; a version-1 slot is refused as TT_BLOB_BAD_VERSION (its
 * resumed training would not be bit-identical), so the first boot of a version-2 firmware keeps the
 * pretrained values until its first save.
 * The model identity is the CRC-32 of the training model's .tflite bytes (tt_checkpoint_model_id).
 * tinytrain_tflm/runtime/checkpoint.py writes and reads the same layout. */
#ifndef TINYTRAIN_KERNELS_CORE_CHECKPOINT_TT_CHECKPOINT_H_
#define TINYTRAIN_KERNELS_CORE_CHECKPOINT_TT_CHECKPOINT_H_

#include <stddef.h>
#include <stdint.h>

#include "../tt_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TT_CHECKPOINT_MAGIC 0x4B435454u /* "TTCK" */
#define TT_CHECKPOINT_VERSION 2
#define TT_CHECKPOINT_KIND_STATE 1
#define TT_CHECKPOINT_SLOTS 2
/** Set in an entry's index: the entry is not a tensor but the uint32 stochastic-rounding generator state
 *  of the TT_SGD op whose operator index (subgraph 0) is in the low bits. */
#define TT_CHECKPOINT_ROUNDING_STATE 0x80000000u

/** One checkpointed entry: a variable (its index in the training model's subgraph 0) or an op's rounding
 *  state, and its RAM data. */
typedef struct {
  uint32_t tensor; /**< Tensor index in subgraph 0, or TT_CHECKPOINT_ROUNDING_STATE | TT_SGD's op index. */
  uint32_t bytes;  /**< Bytes of `data`, >= 1. */
  void* data;      /**< The variable's data in the arena. */
} tt_checkpoint_tensor;

/**
 * Where checkpoints live: two slots of slot_bytes. Every callback returns 0 on success and anything
 * else on failure; offsets are within the slot. Writes come with offsets and lengths that are
 * multiples of 4, each slot byte written at most once after an erase (what NOR flash allows).
 */
typedef struct {
  void* context;       /**< Passed to every callback. */
  uint32_t slot_bytes; /**< Capacity of one slot: at least tt_checkpoint_size. */
  int (*read)(void* context, uint32_t slot, uint32_t offset, void* out, uint32_t length);
  int (*erase)(void* context, uint32_t slot); /**< Readies a slot for writing; NULL when writes need no erase (RAM). */
  int (*write)(void* context, uint32_t slot, uint32_t offset, const void* data, uint32_t length);
} tt_checkpoint_storage;

/** What the storage holds, as the last restore or save found or left it. */
typedef struct {
  int32_t slot;                             /**< Slot of the newest valid checkpoint, -1 for none. */
  uint32_t sequence;                        /**< Its sequence number (0 with none). */
  tt_status slot_status[TT_CHECKPOINT_SLOTS]; /**< Per slot, TT_SUCCESS or why it was rejected. */
} tt_checkpoint_state;

/** The model identity a checkpoint carries: CRC-32 of the training model's bytes. */
uint32_t tt_checkpoint_model_id(const uint8_t* model, size_t size);

/** Bytes one slot needs for `tensors`, header included; 0 if an argument is invalid. */
size_t tt_checkpoint_size(const tt_checkpoint_tensor* tensors, uint32_t num_tensors);

/**
 * Restores the newest valid checkpoint of this model into the tensors' data. Each slot is checked
 * whole (header, CRC-32, identity, tensor table) before any byte of a tensor changes.
 * Call it after the first Invoke: TT_INIT_VARIABLES copies the pretrained values then.
 * @param[out] state  what the slots hold, for the next tt_checkpoint_save
 * @return TT_SUCCESS (restored), TT_CHECKPOINT_NONE (nothing changed; state->slot_status says why
 *         each slot was refused), TT_CHECKPOINT_STORAGE or TT_ARG_ERROR
 */
tt_status tt_checkpoint_restore(const tt_checkpoint_storage* storage, uint32_t model_id,
                                const tt_checkpoint_tensor* tensors, uint32_t num_tensors,
                                tt_checkpoint_state* state);

/**
 * Saves the tensors' current data into the slot `state` does not name as the newest, with the next
 * sequence number, and on success updates `state` to it. On failure (a callback failed: power lost,
 * flash worn) `state` is unchanged, so the next save writes the same slot again and the last good
 * checkpoint stays.
 * @param[in,out] state  as tt_checkpoint_restore or the last save left it
 * @return TT_SUCCESS, TT_CHECKPOINT_STORAGE or TT_ARG_ERROR (a slot too small among them)
 */
tt_status tt_checkpoint_save(const tt_checkpoint_storage* storage, uint32_t model_id,
                             const tt_checkpoint_tensor* tensors, uint32_t num_tensors,
                             tt_checkpoint_state* state);

/** Storage over one RAM buffer of TT_CHECKPOINT_SLOTS * slot_bytes: slot s at s * slot_bytes. */
typedef struct {
  uint8_t* bytes;
  uint32_t slot_bytes;
} tt_checkpoint_ram;

/** A tt_checkpoint_storage whose callbacks read and write `ram` (which must outlive it). */
tt_checkpoint_storage tt_checkpoint_ram_storage(tt_checkpoint_ram* ram);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYTRAIN_KERNELS_CORE_CHECKPOINT_TT_CHECKPOINT_H_

/* Bounds-checked reader of the versioned blobs that carry custom-op options and
 * training metadata (layout in schema/README.md). Every read checks the
 * remaining length first, so a truncated, padded or corrupted blob yields a
 * status, never an out-of-bounds read. Values are little-endian and read byte
 * by byte: the blob needs no alignment and the reader works on any host. */
#ifndef TINYTRAIN_KERNELS_CORE_TT_BLOB_H_
#define TINYTRAIN_KERNELS_CORE_TT_BLOB_H_

#include <stddef.h>
#include <stdint.h>

#include "tt_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Size of the blob header: magic, version, kind, payload length, CRC-32. */
#define TT_BLOB_HEADER_BYTES 16

/** Read position inside one blob's payload. */
typedef struct {
  const uint8_t* cursor; /**< Next unread payload byte. */
  const uint8_t* end;    /**< One past the payload's last byte. */
} tt_blob_reader;

/** CRC-32 (IEEE 802.3, as zlib.crc32) of `length` bytes. Bitwise: no table in flash. */
uint32_t tt_crc32(const uint8_t* data, size_t length);

/** The CRC-32 of (the bytes `crc` covers, then `data`), as zlib.crc32(data, crc): a checksum computed
 * in pieces, for data read or written in chunks. tt_crc32(d, n) is tt_crc32_extend(0, d, n). */
uint32_t tt_crc32_extend(uint32_t crc, const uint8_t* data, size_t length);

/**
 * Writes a blob header: magic, version, kind, payload length and the payload's CRC-32 (`crc`), into
 * the TT_BLOB_HEADER_BYTES at `header`.
 */
void tt_blob_write_header(uint8_t* header, uint32_t magic, uint16_t version, uint16_t kind, uint32_t payload_length,
                          uint32_t crc);

/**
 * Checks a blob's header and checksum and positions `reader` on its payload.
 * @param[in]  blob    the blob; may be NULL only when length is 0
 * @param[in]  length  total bytes of the blob, header included
 * @param[in]  magic, version, kind  what the header must hold
 * @return TT_SUCCESS, or the first TT_BLOB_* problem found
 */
tt_status tt_blob_open(tt_blob_reader* reader, const uint8_t* blob, size_t length,
                       uint32_t magic, uint16_t version, uint16_t kind);

/** Reads the next int32 field; TT_BLOB_BAD_LENGTH if the payload is shorter than its kind. */
tt_status tt_blob_read_i32(tt_blob_reader* reader, int32_t* value);

/** Reads the next float32 field; TT_BLOB_BAD_LENGTH if the payload is shorter than its kind. */
tt_status tt_blob_read_f32(tt_blob_reader* reader, float* value);

/** Points *bytes at the next `count` payload bytes and skips them; TT_BLOB_BAD_LENGTH if fewer remain. */
tt_status tt_blob_read_bytes(tt_blob_reader* reader, size_t count, const uint8_t** bytes);

/** TT_SUCCESS when every payload byte was read, else TT_BLOB_BAD_LENGTH. */
tt_status tt_blob_finish(const tt_blob_reader* reader);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYTRAIN_KERNELS_CORE_TT_BLOB_H_

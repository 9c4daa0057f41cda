#include "../tt_blob.h"

#include <string.h>

namespace {

uint32_t ReadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

void WriteU32(uint8_t* p, uint32_t value) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint16_t ReadU16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

}  // namespace

extern "C" uint32_t tt_crc32(const uint8_t* data, size_t length) { return tt_crc32_extend(0, data, length); }

extern "C" uint32_t tt_crc32_extend(uint32_t crc, const uint8_t* data, size_t length) {
  crc = ~crc;
  for (size_t i = 0; i < length; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
  }
  return ~crc;
}

extern "C" void tt_blob_write_header(uint8_t* header, uint32_t magic, uint16_t version, uint16_t kind,
                                     uint32_t payload_length, uint32_t crc) {
  WriteU32(header, magic);
  header[4] = static_cast<uint8_t>(version & 0xFF);
  header[5] = static_cast<uint8_t>(version >> 8);
  header[6] = static_cast<uint8_t>(kind & 0xFF);
  header[7] = static_cast<uint8_t>(kind >> 8);
  WriteU32(header + 8, payload_length);
  WriteU32(header + 12, crc);
}

extern "C" tt_status tt_blob_open(tt_blob_reader* reader, const uint8_t* blob, size_t length,
                                  uint32_t magic, uint16_t version, uint16_t kind) {
  if (reader == nullptr || (blob == nullptr && length != 0)) return TT_ARG_ERROR;
  if (length < TT_BLOB_HEADER_BYTES) return TT_BLOB_TRUNCATED;
  if (ReadU32(blob) != magic) return TT_BLOB_BAD_MAGIC;
  if (ReadU16(blob + 4) != version) return TT_BLOB_BAD_VERSION;
  if (ReadU16(blob + 6) != kind) return TT_BLOB_WRONG_KIND;
  const uint32_t payload_length = ReadU32(blob + 8);
  // Compared as a subtraction so a huge declared length cannot overflow.
  if (payload_length > length - TT_BLOB_HEADER_BYTES) return TT_BLOB_TRUNCATED;
  if (payload_length != length - TT_BLOB_HEADER_BYTES) return TT_BLOB_BAD_LENGTH;
  const uint8_t* payload = blob + TT_BLOB_HEADER_BYTES;
  if (tt_crc32(payload, payload_length) != ReadU32(blob + 12)) return TT_BLOB_BAD_CHECKSUM;
  reader->cursor = payload;
  reader->end = payload + payload_length;
  return TT_SUCCESS;
}

extern "C" tt_status tt_blob_read_i32(tt_blob_reader* reader, int32_t* value) {
  if (reader->end - reader->cursor < 4) return TT_BLOB_BAD_LENGTH;
  *value = static_cast<int32_t>(ReadU32(reader->cursor));
  reader->cursor += 4;
  return TT_SUCCESS;
}

extern "C" tt_status tt_blob_read_f32(tt_blob_reader* reader, float* value) {
  if (reader->end - reader->cursor < 4) return TT_BLOB_BAD_LENGTH;
  const uint32_t bits = ReadU32(reader->cursor);
  memcpy(value, &bits, sizeof(*value));
  reader->cursor += 4;
  return TT_SUCCESS;
}

extern "C" tt_status tt_blob_read_bytes(tt_blob_reader* reader, size_t count, const uint8_t** bytes) {
  if (static_cast<size_t>(reader->end - reader->cursor) < count) return TT_BLOB_BAD_LENGTH;
  *bytes = reader->cursor;
  reader->cursor += count;
  return TT_SUCCESS;
}

extern "C" tt_status tt_blob_finish(const tt_blob_reader* reader) {
  return reader->cursor == reader->end ? TT_SUCCESS : TT_BLOB_BAD_LENGTH;
}

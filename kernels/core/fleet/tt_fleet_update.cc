#include "tt_fleet_update.h"

#include <string.h>

#include "../tt_blob.h"

namespace {

constexpr size_t kTensorHeaderBytes = 16;  // index, type, count, num_scales

// Bytes of a tensor's values in the blob, int8 padded so the next field stays 4-byte aligned.
size_t ValueBytes(tt_fleet_type type, uint32_t count) {
  return type == TT_FLEET_S8 ? (static_cast<size_t>(count) + 3u) & ~static_cast<size_t>(3u) : 4u * count;
}

// Values an update carries for `t`; 0 when `t` is invalid or that count overflows 32 bits.
uint32_t TrainedCount(const tt_fleet_tensor& t) {
  if ((t.type != TT_FLEET_S8 && t.type != TT_FLEET_S32) || t.outer < 1 || t.inner < 1 || t.channels_trained < 1 ||
      t.channels_trained > t.channels || (t.num_scales != 1 && t.num_scales != t.channels_trained) ||
      t.scales == nullptr || t.values == nullptr) {
    return 0;
  }
  const uint64_t count = static_cast<uint64_t>(t.outer) * t.channels_trained * t.inner;
  return count > 0x3FFFFFFFu ? 0 : static_cast<uint32_t>(count);
}

bool ValidTensor(const tt_fleet_tensor& t) { return TrainedCount(t) != 0; }

// Calls body(k, i) for the k-th trained value, at index i of the whole variable.
template <typename Body>
void ForEachTrained(const tt_fleet_tensor& t, Body&& body) {
  size_t k = 0;
  for (uint32_t o = 0; o < t.outer; ++o) {
    for (uint32_t c = 0; c < t.channels_trained; ++c) {
      const size_t row = (static_cast<size_t>(o) * t.channels + c) * t.inner;
      for (uint32_t n = 0; n < t.inner; ++n) body(k++, row + n);
    }
  }
}

void WriteU32(uint8_t* p, uint32_t value) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint32_t ReadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

uint32_t FloatBits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  return bits;
}

// Walks a blob whose header and checksum tt_blob_open accepted; calls copy(tensor, values) for
// every tensor once all of them matched, so a blob is applied whole or not at all.
template <typename Copy>
tt_status Walk(const uint8_t* blob, size_t length, const tt_fleet_tensor* tensors, uint32_t num_tensors,
               tt_fleet_info* info, Copy&& copy) {
  if (tensors == nullptr || num_tensors == 0) return TT_ARG_ERROR;
  for (uint32_t i = 0; i < num_tensors; ++i) {
    if (!ValidTensor(tensors[i])) return TT_ARG_ERROR;
  }
  tt_blob_reader reader;
  tt_status status = tt_blob_open(&reader, blob, length, TT_FLEET_MAGIC, TT_FLEET_VERSION, TT_FLEET_KIND_VALUES);
  if (status != TT_SUCCESS) return status;
  const uint8_t* fields;
  if ((status = tt_blob_read_bytes(&reader, 12, &fields)) != TT_SUCCESS) return status;
  if (ReadU32(fields + 8) != num_tensors) return TT_FLEET_MISMATCH;
  const tt_blob_reader start = reader;
  for (int pass = 0; pass < 2; ++pass) {  // pass 0 checks everything, pass 1 copies
    reader = start;
    for (uint32_t i = 0; i < num_tensors; ++i) {
      const tt_fleet_tensor& t = tensors[i];
      const uint8_t* header;
      if ((status = tt_blob_read_bytes(&reader, kTensorHeaderBytes, &header)) != TT_SUCCESS) return status;
      const uint32_t count = TrainedCount(t);
      if (ReadU32(header) != t.tensor || ReadU32(header + 4) != static_cast<uint32_t>(t.type) ||
          ReadU32(header + 8) != count || ReadU32(header + 12) != t.num_scales) {
        return TT_FLEET_MISMATCH;
      }
      const uint8_t* scales;
      if ((status = tt_blob_read_bytes(&reader, 4u * static_cast<size_t>(t.num_scales), &scales)) != TT_SUCCESS) {
        return status;
      }
      for (uint32_t c = 0; c < t.num_scales; ++c) {
        if (ReadU32(scales + 4 * c) != FloatBits(t.scales[c])) return TT_FLEET_MISMATCH;
      }
      const uint8_t* values;
      if ((status = tt_blob_read_bytes(&reader, ValueBytes(t.type, count), &values)) != TT_SUCCESS) return status;
      if (pass == 0 && t.type == TT_FLEET_S8) {
        for (uint32_t k = 0; k < count; ++k) {
          if (values[k] == 0x80u) return TT_FLEET_OUT_OF_RANGE;
        }
      }
      if (pass == 1) copy(t, values);
    }
    if ((status = tt_blob_finish(&reader)) != TT_SUCCESS) return status;
  }
  if (info != nullptr) {
    info->round = ReadU32(fields);
    info->num_samples = ReadU32(fields + 4);
  }
  return TT_SUCCESS;
}

}  // namespace

extern "C" size_t tt_fleet_update_size(const tt_fleet_tensor* tensors, uint32_t num_tensors) {
  if (tensors == nullptr || num_tensors == 0) return 0;
  size_t size = TT_BLOB_HEADER_BYTES + 12;
  for (uint32_t i = 0; i < num_tensors; ++i) {
    if (!ValidTensor(tensors[i])) return 0;
    size += kTensorHeaderBytes + 4u * static_cast<size_t>(tensors[i].num_scales) +
            ValueBytes(tensors[i].type, TrainedCount(tensors[i]));
  }
  return size;
}

extern "C" tt_status tt_fleet_update_write(const tt_fleet_info* info, const tt_fleet_tensor* tensors,
                                           uint32_t num_tensors, uint8_t* blob, size_t capacity, size_t* written) {
  const size_t size = tt_fleet_update_size(tensors, num_tensors);
  if (info == nullptr || blob == nullptr || written == nullptr || size == 0 || capacity < size) return TT_ARG_ERROR;
  uint8_t* p = blob + TT_BLOB_HEADER_BYTES;
  WriteU32(p, info->round);
  WriteU32(p + 4, info->num_samples);
  WriteU32(p + 8, num_tensors);
  p += 12;
  for (uint32_t i = 0; i < num_tensors; ++i) {
    const tt_fleet_tensor& t = tensors[i];
    WriteU32(p, t.tensor);
    WriteU32(p + 4, static_cast<uint32_t>(t.type));
    const uint32_t count = TrainedCount(t);
    WriteU32(p + 8, count);
    WriteU32(p + 12, t.num_scales);
    p += kTensorHeaderBytes;
    for (uint32_t c = 0; c < t.num_scales; ++c, p += 4) WriteU32(p, FloatBits(t.scales[c]));
    const size_t bytes = ValueBytes(t.type, count);
    if (t.type == TT_FLEET_S8) {
      const int8_t* values = static_cast<const int8_t*>(t.values);
      WriteU32(p + bytes - 4, 0);  // the padding (under 4 bytes) is in the last word; values then overwrite theirs
      ForEachTrained(t, [&](size_t k, size_t at) { p[k] = static_cast<uint8_t>(values[at]); });
    } else {
      const int32_t* values = static_cast<const int32_t*>(t.values);
      ForEachTrained(t, [&](size_t k, size_t at) { WriteU32(p + 4 * k, static_cast<uint32_t>(values[at])); });
    }
    p += bytes;
  }
  const uint32_t payload = static_cast<uint32_t>(size - TT_BLOB_HEADER_BYTES);
  tt_blob_write_header(blob, TT_FLEET_MAGIC, TT_FLEET_VERSION, TT_FLEET_KIND_VALUES, payload,
                       tt_crc32(blob + TT_BLOB_HEADER_BYTES, payload));
  *written = size;
  return TT_SUCCESS;
}

extern "C" tt_status tt_fleet_update_check(const uint8_t* blob, size_t length, const tt_fleet_tensor* tensors,
                                           uint32_t num_tensors, tt_fleet_info* info) {
  return Walk(blob, length, tensors, num_tensors, info, [](const tt_fleet_tensor&, const uint8_t*) {});
}

extern "C" tt_status tt_fleet_update_apply(const uint8_t* blob, size_t length, const tt_fleet_tensor* tensors,
                                           uint32_t num_tensors, tt_fleet_info* info) {
  return Walk(blob, length, tensors, num_tensors, info, [](const tt_fleet_tensor& t, const uint8_t* values) {
    if (t.type == TT_FLEET_S8) {
      int8_t* out = static_cast<int8_t*>(t.values);
      ForEachTrained(t, [&](size_t k, size_t at) { out[at] = static_cast<int8_t>(values[k]); });
    } else {
      int32_t* out = static_cast<int32_t*>(t.values);
      ForEachTrained(t, [&](size_t k, size_t at) { out[at] = static_cast<int32_t>(ReadU32(values + 4 * k)); });
    }
  });
}

#include "tt_checkpoint.h"

#include <string.h>

#include "../tt_blob.h"

namespace {

constexpr uint32_t kFieldBytes = 12;       // sequence, model identity, num_tensors
constexpr uint32_t kTableEntryBytes = 8;   // tensor index, bytes
constexpr uint32_t kChunkBytes = 64;       // stack buffer for streamed reads and writes (a multiple of 4)
constexpr uint64_t kMaxSlotBytes = 0x7FFFFFFFu;

uint32_t Padded(uint32_t bytes) { return (bytes + 3u) & ~3u; }

void WriteU32(uint8_t* p, uint32_t value) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint32_t ReadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

uint16_t ReadU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Payload bytes of a checkpoint of `tensors`; 0 when an argument is invalid or the slot would pass 2 GiB.
uint32_t PayloadBytes(const tt_checkpoint_tensor* tensors, uint32_t num_tensors) {
  if (tensors == nullptr || num_tensors == 0 || num_tensors > kMaxSlotBytes / kTableEntryBytes) return 0;
  uint64_t bytes = kFieldBytes + static_cast<uint64_t>(kTableEntryBytes) * num_tensors;
  for (uint32_t i = 0; i < num_tensors; ++i) {
    if (tensors[i].bytes == 0 || tensors[i].data == nullptr) return 0;
    bytes += Padded(tensors[i].bytes);
    if (bytes + TT_BLOB_HEADER_BYTES > kMaxSlotBytes) return 0;
  }
  return static_cast<uint32_t>(bytes);
}

bool ValidStorage(const tt_checkpoint_storage* storage) {
  return storage != nullptr && storage->read != nullptr && storage->write != nullptr &&
         storage->slot_bytes >= TT_BLOB_HEADER_BYTES;
}

// Checks one slot whole without changing any tensor: header, CRC-32 over the declared payload, then
// (only for a payload the checksum vouches for) identity and tensor table. *sequence on success.
tt_status CheckSlot(const tt_checkpoint_storage* s, uint32_t slot, uint32_t model_id,
                    const tt_checkpoint_tensor* tensors, uint32_t num_tensors, uint32_t* sequence) {
  uint8_t chunk[kChunkBytes];
  if (s->read(s->context, slot, 0, chunk, TT_BLOB_HEADER_BYTES) != 0) return TT_CHECKPOINT_STORAGE;
  if (ReadU32(chunk) != TT_CHECKPOINT_MAGIC) return TT_BLOB_BAD_MAGIC;
  if (ReadU16(chunk + 4) != TT_CHECKPOINT_VERSION) return TT_BLOB_BAD_VERSION;
  if (ReadU16(chunk + 6) != TT_CHECKPOINT_KIND_STATE) return TT_BLOB_WRONG_KIND;
  const uint32_t payload = ReadU32(chunk + 8);
  const uint32_t checksum = ReadU32(chunk + 12);
  if (payload > s->slot_bytes - TT_BLOB_HEADER_BYTES || payload < kFieldBytes) return TT_BLOB_TRUNCATED;
  uint32_t crc = 0;
  for (uint32_t done = 0; done < payload;) {
    const uint32_t length = payload - done < kChunkBytes ? payload - done : kChunkBytes;
    if (s->read(s->context, slot, TT_BLOB_HEADER_BYTES + done, chunk, length) != 0) return TT_CHECKPOINT_STORAGE;
    crc = tt_crc32_extend(crc, chunk, length);
    done += length;
  }
  if (crc != checksum) return TT_BLOB_BAD_CHECKSUM;
  if (payload != PayloadBytes(tensors, num_tensors)) return TT_CHECKPOINT_FOREIGN;
  if (s->read(s->context, slot, TT_BLOB_HEADER_BYTES, chunk, kFieldBytes) != 0) return TT_CHECKPOINT_STORAGE;
  if (ReadU32(chunk + 4) != model_id || ReadU32(chunk + 8) != num_tensors) return TT_CHECKPOINT_FOREIGN;
  *sequence = ReadU32(chunk);
  for (uint32_t i = 0; i < num_tensors; ++i) {
    const uint32_t offset = TT_BLOB_HEADER_BYTES + kFieldBytes + kTableEntryBytes * i;
    if (s->read(s->context, slot, offset, chunk, kTableEntryBytes) != 0) return TT_CHECKPOINT_STORAGE;
    if (ReadU32(chunk) != tensors[i].tensor || ReadU32(chunk + 4) != tensors[i].bytes) return TT_CHECKPOINT_FOREIGN;
  }
  return TT_SUCCESS;
}

// Writes `length` bytes at *offset of the slot (a multiple of 4 bytes) and extends *crc over them.
bool WriteChunk(const tt_checkpoint_storage* s, uint32_t slot, uint32_t* offset, const uint8_t* data,
                uint32_t length, uint32_t* crc) {
  if (length == 0) return true;
  *crc = tt_crc32_extend(*crc, data, length);
  if (s->write(s->context, slot, *offset, data, length) != 0) return false;
  *offset += length;
  return true;
}

// The payload (fields, table, padded data) into `slot`, from byte 16 on; its CRC-32 in *crc.
bool WritePayload(const tt_checkpoint_storage* s, uint32_t slot, uint32_t sequence, uint32_t model_id,
                  const tt_checkpoint_tensor* tensors, uint32_t num_tensors, uint32_t* crc) {
  uint8_t chunk[kChunkBytes];
  uint32_t offset = TT_BLOB_HEADER_BYTES;
  *crc = 0;
  WriteU32(chunk, sequence);
  WriteU32(chunk + 4, model_id);
  WriteU32(chunk + 8, num_tensors);
  if (!WriteChunk(s, slot, &offset, chunk, kFieldBytes, crc)) return false;
  uint32_t filled = 0;
  for (uint32_t i = 0; i < num_tensors; ++i) {
    WriteU32(chunk + filled, tensors[i].tensor);
    WriteU32(chunk + filled + 4, tensors[i].bytes);
    filled += kTableEntryBytes;
    if (filled == kChunkBytes || i + 1 == num_tensors) {
      if (!WriteChunk(s, slot, &offset, chunk, filled, crc)) return false;
      filled = 0;
    }
  }
  for (uint32_t i = 0; i < num_tensors; ++i) {
    const uint8_t* data = static_cast<const uint8_t*>(tensors[i].data);
    const uint32_t whole = tensors[i].bytes & ~3u;  // straight from the arena
    if (!WriteChunk(s, slot, &offset, data, whole, crc)) return false;
    const uint32_t tail = tensors[i].bytes - whole;  // the last 1-3 bytes, zero-padded to a word
    if (tail != 0) {
      WriteU32(chunk, 0);
      memcpy(chunk, data + whole, tail);
      if (!WriteChunk(s, slot, &offset, chunk, 4, crc)) return false;
    }
  }
  return true;
}

int RamRead(void* context, uint32_t slot, uint32_t offset, void* out, uint32_t length) {
  const auto* ram = static_cast<const tt_checkpoint_ram*>(context);
  if (slot >= TT_CHECKPOINT_SLOTS || offset > ram->slot_bytes || length > ram->slot_bytes - offset) return 1;
  memcpy(out, ram->bytes + static_cast<size_t>(slot) * ram->slot_bytes + offset, length);
  return 0;
}

int RamWrite(void* context, uint32_t slot, uint32_t offset, const void* data, uint32_t length) {
  auto* ram = static_cast<tt_checkpoint_ram*>(context);
  if (slot >= TT_CHECKPOINT_SLOTS || offset > ram->slot_bytes || length > ram->slot_bytes - offset) return 1;
  memcpy(ram->bytes + static_cast<size_t>(slot) * ram->slot_bytes + offset, data, length);
  return 0;
}

}  // namespace

extern "C" uint32_t tt_checkpoint_model_id(const uint8_t* model, size_t size) { return tt_crc32(model, size); }

extern "C" size_t tt_checkpoint_size(const tt_checkpoint_tensor* tensors, uint32_t num_tensors) {
  const uint32_t payload = PayloadBytes(tensors, num_tensors);
  return payload == 0 ? 0 : TT_BLOB_HEADER_BYTES + static_cast<size_t>(payload);
}

extern "C" tt_status tt_checkpoint_restore(const tt_checkpoint_storage* storage, uint32_t model_id,
                                           const tt_checkpoint_tensor* tensors, uint32_t num_tensors,
                                           tt_checkpoint_state* state) {
  if (state == nullptr || !ValidStorage(storage) || PayloadBytes(tensors, num_tensors) == 0) return TT_ARG_ERROR;
  state->slot = -1;
  state->sequence = 0;
  uint32_t sequences[TT_CHECKPOINT_SLOTS] = {0, 0};
  for (uint32_t slot = 0; slot < TT_CHECKPOINT_SLOTS; ++slot) {
    const tt_status status = CheckSlot(storage, slot, model_id, tensors, num_tensors, &sequences[slot]);
    state->slot_status[slot] = status;
    if (status != TT_SUCCESS) continue;
    // Serial-number order, so the sequence may wrap around 2^32.
    if (state->slot < 0 || static_cast<int32_t>(sequences[slot] - state->sequence) > 0) {
      state->slot = static_cast<int32_t>(slot);
      state->sequence = sequences[slot];
    }
  }
  if (state->slot < 0) return TT_CHECKPOINT_NONE;
  const uint32_t slot = static_cast<uint32_t>(state->slot);
  uint32_t offset = TT_BLOB_HEADER_BYTES + kFieldBytes + kTableEntryBytes * num_tensors;
  for (uint32_t i = 0; i < num_tensors; ++i) {
    if (storage->read(storage->context, slot, offset, tensors[i].data, tensors[i].bytes) != 0) {
      return TT_CHECKPOINT_STORAGE;
    }
    offset += Padded(tensors[i].bytes);
  }
  return TT_SUCCESS;
}

extern "C" tt_status tt_checkpoint_save(const tt_checkpoint_storage* storage, uint32_t model_id,
                                        const tt_checkpoint_tensor* tensors, uint32_t num_tensors,
                                        tt_checkpoint_state* state) {
  const uint32_t payload = PayloadBytes(tensors, num_tensors);
  if (state == nullptr || !ValidStorage(storage) || payload == 0 ||
      payload > storage->slot_bytes - TT_BLOB_HEADER_BYTES || state->slot >= TT_CHECKPOINT_SLOTS) {
    return TT_ARG_ERROR;
  }
  const uint32_t slot = state->slot == 0 ? 1u : 0u;  // never the newest valid one
  const uint32_t sequence = state->slot < 0 ? 1u : state->sequence + 1u;
  if (storage->erase != nullptr && storage->erase(storage->context, slot) != 0) return TT_CHECKPOINT_STORAGE;
  uint32_t crc = 0;
  if (!WritePayload(storage, slot, sequence, model_id, tensors, num_tensors, &crc)) return TT_CHECKPOINT_STORAGE;
  // The header goes last: until it is whole, the slot has no magic or no matching checksum.
  uint8_t header[TT_BLOB_HEADER_BYTES];
  tt_blob_write_header(header, TT_CHECKPOINT_MAGIC, TT_CHECKPOINT_VERSION, TT_CHECKPOINT_KIND_STATE, payload, crc);
  if (storage->write(storage->context, slot, 0, header, TT_BLOB_HEADER_BYTES) != 0) return TT_CHECKPOINT_STORAGE;
  state->slot = static_cast<int32_t>(slot);
  state->sequence = sequence;
  state->slot_status[slot] = TT_SUCCESS;
  return TT_SUCCESS;
}

extern "C" tt_checkpoint_storage tt_checkpoint_ram_storage(tt_checkpoint_ram* ram) {
  tt_checkpoint_storage storage;
  storage.context = ram;
  storage.slot_bytes = ram == nullptr ? 0 : ram->slot_bytes;
  storage.read = RamRead;
  storage.erase = nullptr;
  storage.write = RamWrite;
  return storage;
}

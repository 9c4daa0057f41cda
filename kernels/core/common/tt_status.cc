#include "../tt_types.h"

extern "C" const char* tt_status_message(tt_status status) {
  switch (status) {
    case TT_SUCCESS: return "success";
    case TT_ARG_ERROR: return "invalid argument (null pointer or shape out of range)";
    case TT_LABEL_OUT_OF_RANGE: return "label out of range";
    case TT_BLOB_TRUNCATED: return "options blob is truncated";
    case TT_BLOB_BAD_MAGIC: return "options blob has no tinytrain magic (not written by tinytrain_tflm?)";
    case TT_BLOB_BAD_VERSION: return "options blob was written for another schema version; recompile the model";
    case TT_BLOB_WRONG_KIND: return "options blob belongs to another op";
    case TT_BLOB_BAD_CHECKSUM: return "options blob is corrupt (CRC-32 mismatch)";
    case TT_BLOB_BAD_LENGTH: return "options blob has the wrong payload length for its kind";
    case TT_FLEET_MISMATCH: return "fleet update does not match the model's trained tensors (index, type, count or scales)";
    case TT_FLEET_OUT_OF_RANGE: return "fleet update holds an int8 weight of -128, outside the symmetric range";
    case TT_CHECKPOINT_FOREIGN: return "checkpoint belongs to another training model (identity or tensors differ)";
    case TT_CHECKPOINT_STORAGE: return "checkpoint storage failed to read, erase or write";
    case TT_CHECKPOINT_NONE: return "no valid checkpoint of this model in either slot";
  }
  return "unknown status";
}

#include <string.h>

#include "../tt_functions.h"

extern "C" tt_status tt_copy(int32_t bytes, const void* source, void* destination) {
  if (bytes < 1 || source == nullptr || destination == nullptr) return TT_ARG_ERROR;
  memcpy(destination, source, static_cast<size_t>(bytes));
  return TT_SUCCESS;
}

// The host build of the kernel test: same cases and checks, no instruction counter. Its output
// digests are what the Cortex-M runs must reproduce bit for bit.
#include <stdint.h>

#include "platform.h"

const char* PlatformName() { return "host"; }

void StartInstructionCount() {}

int64_t InstructionCount() { return -1; }

void SpinInstructions(uint32_t iterations) {
  for (volatile uint32_t i = 0; i < iterations; i = i + 1) {
  }
}

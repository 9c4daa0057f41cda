// What differs between the Cortex-M build of the kernel test and its host build.
#ifndef TINYTRAIN_TESTS_CORTEX_M_PLATFORM_H_
#define TINYTRAIN_TESTS_CORTEX_M_PLATFORM_H_

#include <stdint.h>

// One line naming the platform, e.g. "cortex-m7 (QEMU mps2-an500)".
const char* PlatformName();

// Starts counting executed instructions.
void StartInstructionCount();

// Instructions executed since StartInstructionCount(), or -1 when the platform cannot count
// them (the host, or QEMU run without -icount) or the count overflowed.
int64_t InstructionCount();

// Runs a loop of exactly `iterations` * 2 instructions (the calibration of InstructionCount).
void SpinInstructions(uint32_t iterations);

#endif  // TINYTRAIN_TESTS_CORTEX_M_PLATFORM_H_

// What differs between a program's Cortex-M build (target_platform.cc) and its host build.
#ifndef TINYTRAIN_KERNELS_CORTEX_M_BOARD_PLATFORM_H_
#define TINYTRAIN_KERNELS_CORTEX_M_BOARD_PLATFORM_H_

#include <stdint.h>

// One line naming the platform, e.g. "cortex-m7 (QEMU mps2-an500)".
const char* PlatformName();

// Starts counting executed instructions.
void StartInstructionCount();

// Instructions executed since StartInstructionCount(), or -1 when the platform cannot count
// them (the host). Under QEMU without -icount the figure is meaningless.
int64_t InstructionCount();

// Runs a loop of exactly `iterations` * 2 instructions (the calibration of InstructionCount).
void SpinInstructions(uint32_t iterations);

#endif  // TINYTRAIN_KERNELS_CORTEX_M_BOARD_PLATFORM_H_

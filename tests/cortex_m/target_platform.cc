// Instruction counting on QEMU's Cortex-M boards. QEMU models no cycle timing; with
// `-icount shift=3` its virtual clock advances exactly 8 ns per executed instruction, and SysTick
// on the MPS2 boards runs from the 25 MHz CPU clock (40 ns per tick): one tick per 5
// instructions. The counts are instruction counts, not cycles; the calibration loop in
// kernel_test.cc checks the factor on every run.
#include <stdint.h>

#include "platform.h"

namespace {

constexpr int64_t kInstructionsPerTick = 5;
constexpr uint32_t kReload = 0xFFFFFFu;  // SysTick is a 24-bit down counter

struct SysTickRegisters {
  volatile uint32_t control;  // CSR: bit 0 enable, bit 2 CPU clock, bit 16 COUNTFLAG (cleared on read)
  volatile uint32_t reload;   // RVR
  volatile uint32_t current;  // CVR: any write clears it and COUNTFLAG
};

SysTickRegisters& SysTick() { return *reinterpret_cast<SysTickRegisters*>(0xE000E010u); }

}  // namespace

#ifndef TT_TEST_TARGET
#error "TT_TEST_TARGET (the platform's name) must be defined"
#endif

const char* PlatformName() { return TT_TEST_TARGET; }

void StartInstructionCount() {
  SysTick().control = 0;
  SysTick().reload = kReload;
  SysTick().current = 0;
  SysTick().control = 0x5u;  // enable, CPU clock, no interrupt
}

int64_t InstructionCount() {
  const uint32_t current = SysTick().current;
  const bool wrapped = (SysTick().control & (1u << 16)) != 0;
  if (wrapped) return -1;
  return static_cast<int64_t>(kReload - current) * kInstructionsPerTick;
}

void SpinInstructions(uint32_t iterations) {
  __asm__ volatile(
      "1: subs %0, #1\n\t"
      "bne 1b"
      : "+r"(iterations)
      :
      : "cc");
}

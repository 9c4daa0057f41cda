// Instruction counting on QEMU's Cortex-M boards. QEMU models no cycle timing; with
// `-icount shift=3` its virtual clock advances exactly 8 ns per executed instruction (125 M
// instructions per virtual second), and SysTick runs from the board's CPU clock, TT_CPU_CLOCK_HZ
// (25 MHz on the MPS2 boards: 5 instructions per tick; 32 MHz on the MPS3 AN547: 3.90625).
// SysTick is a 24-bit counter; its interrupt counts the wraps, so a count covers a whole training
// step. The counts are instruction counts, not cycles, exact to a tick; the calibration loop in
// kernel_test.cc checks the conversion on every run.
#include <stdint.h>

#include "platform.h"

namespace {

#ifndef TT_CPU_CLOCK_HZ
#error "TT_CPU_CLOCK_HZ (the board's CPU clock, which SysTick counts) must be defined"
#endif

constexpr int64_t kInstructionsPerSecond = 125000000;  // -icount shift=3
constexpr uint32_t kReload = 0xFFFFFFu;  // SysTick is a 24-bit down counter
constexpr int64_t kTicksPerWrap = static_cast<int64_t>(kReload) + 1;

volatile uint32_t g_wraps = 0;

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

extern "C" void SysTick_Handler() { g_wraps = g_wraps + 1; }

void StartInstructionCount() {
  SysTick().control = 0;
  SysTick().reload = kReload;
  SysTick().current = 0;
  g_wraps = 0;
  SysTick().control = 0x7u;  // enable, interrupt on each wrap, CPU clock
}

int64_t InstructionCount() {
  // Read the wraps on both sides of the counter: a wrap in between means read again.
  uint32_t wraps = 0;
  uint32_t current = 0;
  do {
    wraps = g_wraps;
    current = SysTick().current;
  } while (wraps != g_wraps);
  const int64_t ticks = static_cast<int64_t>(wraps) * kTicksPerWrap + (kReload - current);
  return ticks * kInstructionsPerSecond / TT_CPU_CLOCK_HZ;
}

void SpinInstructions(uint32_t iterations) {
  __asm__ volatile(
      "1: subs %0, #1\n\t"
      "bne 1b"
      : "+r"(iterations)
      :
      : "cc");
}

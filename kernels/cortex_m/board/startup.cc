// Reset and fault handling for bare-metal programs on QEMU's MPS2 and MPS3 boards (the kernel test, the training harness): the vector
// table, the C runtime set-up newlib's crt0 would do (minus its semihosting stack query), and
// the FPU enable that hard-float code needs before its first floating-point instruction.
#include <stdint.h>
#include <stdlib.h>

extern "C" {
int main();
void SysTick_Handler();  // target_platform.cc: counts the wraps of the instruction counter
void initialise_monitor_handles();  // libgloss rdimon: opens the semihosting stdin/stdout/stderr.
void __libc_init_array();

extern uint32_t __data_start, __data_end, __data_load, __bss_start, __bss_end, __stack_top;

// -nostartfiles drops crti.o, whose hooks __libc_init_array calls.
void _init() {}
void _fini() {}

[[noreturn]] void Reset_Handler() {
  // CPACR (0xE000ED88): full access to coprocessors 10 and 11, the FPU.
  volatile uint32_t* const cpacr = reinterpret_cast<volatile uint32_t*>(0xE000ED88u);
  *cpacr |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  for (uint32_t *from = &__data_load, *to = &__data_start; to < &__data_end;) *to++ = *from++;
  for (uint32_t* to = &__bss_start; to < &__bss_end;) *to++ = 0;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

// Any fault ends the run with a message and a nonzero exit code (semihosting SYS_WRITE0, then
// SYS_EXIT with ADP_Stopped_RunTimeErrorUnknown), so a crashing kernel fails instead of hanging.
[[noreturn]] void Fault_Handler() {
  static const char kMessage[] = "FAULT: the CPU took a fault exception\n";
  __asm__ volatile(
      "mov r0, #0x04\n\t"
      "mov r1, %0\n\t"
      "bkpt 0xAB\n\t"
      "mov r0, #0x18\n\t"
      "ldr r1, =0x20023\n\t"
      "bkpt 0xAB" ::"r"(kMessage)
      : "r0", "r1", "memory");
  for (;;) {
  }
}
}  // extern "C"

using Handler = void (*)();

// The first 16 entries of the Armv7-M / Armv8-M vector table; SysTick is the only interrupt enabled.
__attribute__((section(".vectors"), used)) const Handler kVectorTable[16] = {
    reinterpret_cast<Handler>(&__stack_top),
    Reset_Handler,
    Fault_Handler,  // NMI
    Fault_Handler,  // HardFault
    Fault_Handler,  // MemManage
    Fault_Handler,  // BusFault
    Fault_Handler,  // UsageFault
    Fault_Handler,  // SecureFault (Armv8-M with TrustZone: the M55; reserved on Armv7-M)
    nullptr,
    nullptr,
    nullptr,
    Fault_Handler,  // SVCall
    Fault_Handler,  // DebugMonitor
    nullptr,
    Fault_Handler,  // PendSV
    SysTick_Handler,
};

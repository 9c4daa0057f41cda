# The kernel core test on emulated Cortex-M boards (and the same program on the host, whose output
# digests the boards must reproduce). Included by the top-level Makefile:
#   make cortex-m-test CMSIS_NN_ROOT=<a CMSIS-NN tree>
#                        builds the test for the host, Cortex-M4F, Cortex-M7 and Cortex-M55 and runs it
#                        (QEMU mps2-an386, mps2-an500 and mps3-an547, semihosting, -icount for instruction
#                        counts), on the Cortex-M boards a second time over the cmsis-nn kernel set
# tests/test_cortex_m.py builds the programs through cortex-m-test-programs and checks their output.

REFERENCE_PYTHON ?= $(VENV)/bin/python
HOST_CXX ?= c++
CORTEX_M_TEST_DIR := tests/cortex_m
# The board support (startup, linker script, instruction counter) the training harness uses too.
CORTEX_M_BOARD_DIR := kernels/cortex_m/board
CORTEX_M_TEST_INCLUDES := -I$(CORTEX_M_TEST_DIR) -I$(CORTEX_M_BOARD_DIR) -Ikernels/core -I$(CORTEX_M_BUILD)
# Each target's board: its QEMU machine, its memory map and the CPU clock SysTick counts (as in
# tinytrain_tflm/target.py's boards).
CORTEX_M_BOARD_m4 := mps2-an386
CORTEX_M_BOARD_m7 := mps2-an500
CORTEX_M_BOARD_m55 := mps3-an547
CORTEX_M_LD_m4 := mps2.ld
CORTEX_M_LD_m7 := mps2.ld
CORTEX_M_LD_m55 := mps3_an547.ld
CORTEX_M_CLOCK_m4 := 25000000
CORTEX_M_CLOCK_m7 := 25000000
CORTEX_M_CLOCK_m55 := 32000000
# -icount shift=3: virtual time advances 8 ns per instruction, what target_platform.cc counts with.
QEMU_CORTEX_M := qemu-system-arm -nographic -semihosting-config enable=on,target=native -icount shift=3
# nano.specs: newlib-nano; rdimon.specs: semihosting I/O; -nostartfiles: startup.cc is the runtime;
# -L: a board's linker script includes sections.ld from there.
CORTEX_M_LDFLAGS := -nostartfiles -L$(CORTEX_M_BOARD_DIR) --specs=nano.specs --specs=rdimon.specs \
  -u _printf_float -Wl,--gc-sections
CORTEX_M_TEST_HEADERS := $(wildcard $(CORTEX_M_TEST_DIR)/*.h $(CORTEX_M_BOARD_DIR)/*.h) $(CORTEX_M_BUILD)/references.h

$(CORTEX_M_BUILD)/references.h: $(CORTEX_M_TEST_DIR)/generate_references.py tests/conv_geometry.py
	@mkdir -p $(@D)
	@test -x $(REFERENCE_PYTHON) || { echo "error: $(REFERENCE_PYTHON) not found: run make setup first (NumPy computes the references)" >&2; exit 1; }
	$(REFERENCE_PYTHON) $< $@

# cortex_m_test_rules(target): the bare-metal test program for one target.
define cortex_m_test_rules
$(CORTEX_M_BUILD)/$(1)/test/%.o: $(CORTEX_M_TEST_DIR)/%.cc $(CORTEX_M_TEST_HEADERS) | cortex-m-tools
	@mkdir -p $$(@D)
	$(ARM_PREFIX)g++ $(CORTEX_M_CPU_$(1)) $(CORTEX_M_CXXFLAGS) $(CORTEX_M_TEST_INCLUDES) -c $$< -o $$@

$(CORTEX_M_BUILD)/$(1)/test/%.o: $(CORTEX_M_BOARD_DIR)/%.cc $(CORTEX_M_TEST_HEADERS) | cortex-m-tools
	@mkdir -p $$(@D)
	$(ARM_PREFIX)g++ $(CORTEX_M_CPU_$(1)) $(CORTEX_M_CXXFLAGS) $(CORTEX_M_TEST_INCLUDES) \
	  -DTT_TEST_TARGET='"$(TARGET_NAME_$(1)) (QEMU $(CORTEX_M_BOARD_$(1)))"' -DTT_CPU_CLOCK_HZ=$(CORTEX_M_CLOCK_$(1)) \
	  -c $$< -o $$@

$(CORTEX_M_BUILD)/$(1)/kernel_test.elf: $(addprefix $(CORTEX_M_BUILD)/$(1)/test/,startup.o target_platform.o kernel_test.o) \
    $(CORTEX_M_BUILD)/$(1)/libtinytrain_core.a $(CORTEX_M_BOARD_DIR)/$(CORTEX_M_LD_$(1)) $(CORTEX_M_BOARD_DIR)/sections.ld
	$(ARM_PREFIX)g++ $(CORTEX_M_CPU_$(1)) $(CORTEX_M_LDFLAGS) -T $(CORTEX_M_BOARD_DIR)/$(CORTEX_M_LD_$(1)) \
	  $$(filter %.o %.a,$$^) -o $$@

# The same test over the core with kernels/cmsis_nn's versions (libtinytrain_core_cmsis_nn.a) and the CMSIS-NN
# they call (libcmsis_nn.a, from CMSIS_NN_ROOT).
$(CORTEX_M_BUILD)/$(1)/kernel_test_cmsis_nn.elf: $(addprefix $(CORTEX_M_BUILD)/$(1)/test/,startup.o target_platform.o kernel_test.o) \
    $(CORTEX_M_BUILD)/$(1)/libtinytrain_core_cmsis_nn.a $(CORTEX_M_BUILD)/$(1)/libcmsis_nn.a \
    $(CORTEX_M_BOARD_DIR)/$(CORTEX_M_LD_$(1)) $(CORTEX_M_BOARD_DIR)/sections.ld
	$(ARM_PREFIX)g++ $(CORTEX_M_CPU_$(1)) $(CORTEX_M_LDFLAGS) -T $(CORTEX_M_BOARD_DIR)/$(CORTEX_M_LD_$(1)) \
	  $$(filter %.o %.a,$$^) -o $$@
endef
TARGET_NAME_m4 := cortex-m4f
TARGET_NAME_m7 := cortex-m7
TARGET_NAME_m55 := cortex-m55
$(foreach target,$(CORTEX_M_TARGETS),$(eval $(call cortex_m_test_rules,$(target))))

# The host build: the same test and core sources, the host compiler, the core's host warnings; an object
# per source, so that make -j compiles them side by side.
HOST_CORE_OBJECTS := $(patsubst kernels/core/%.cc,$(CORTEX_M_BUILD)/host/core/%.o,$(CORE_SOURCES))
HOST_TEST_OBJECTS := $(CORTEX_M_BUILD)/host/test/kernel_test.o $(CORTEX_M_BUILD)/host/test/host_platform.o
-include $(HOST_CORE_OBJECTS:.o=.d) $(HOST_TEST_OBJECTS:.o=.d)

$(CORTEX_M_BUILD)/host/core/%.o: kernels/core/%.cc
	@mkdir -p $(@D)
	$(HOST_CXX) $(CORTEX_M_CXXFLAGS) $(CORTEX_M_TEST_INCLUDES) -c $< -o $@

$(CORTEX_M_BUILD)/host/test/%.o: $(CORTEX_M_TEST_DIR)/%.cc $(CORTEX_M_TEST_HEADERS)
	@mkdir -p $(@D)
	$(HOST_CXX) $(CORTEX_M_CXXFLAGS) $(CORTEX_M_TEST_INCLUDES) -c $< -o $@

$(CORTEX_M_BUILD)/host/kernel_test: $(HOST_TEST_OBJECTS) $(HOST_CORE_OBJECTS)
	$(HOST_CXX) $^ -o $@

.PHONY: cortex-m-test-programs cortex-m-test
cortex-m-test-programs: $(CORTEX_M_BUILD)/host/kernel_test \
    $(foreach target,$(CORTEX_M_TARGETS),$(CORTEX_M_BUILD)/$(target)/kernel_test.elf $(CORTEX_M_BUILD)/$(target)/kernel_test_cmsis_nn.elf)

cortex-m-test: cortex-m-test-programs
	$(CORTEX_M_BUILD)/host/kernel_test
	$(foreach target,$(CORTEX_M_TARGETS),$(foreach program,kernel_test kernel_test_cmsis_nn,\
	  $(QEMU_CORTEX_M) -M $(CORTEX_M_BOARD_$(target)) -kernel $(CORTEX_M_BUILD)/$(target)/$(program).elf &&)) true

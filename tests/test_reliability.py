"""Hostile inputs: crafted models, altered offline plans, outputs aimed at inputs, options out of range.

Each must end in one line on stderr (exit code 2) or one TinyTrainError, never a crash, a hang, a
traceback or a changed input file.
"""

from __future__ import annotations

import copy
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from models import int8_model
from test_overlap import _device_run
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

import tinytrain_tflm as tt
from tinytrain_tflm.backend import emit, schema_generated
from tinytrain_tflm.frontend import read
from tinytrain_tflm.plan import memory
from tinytrain_tflm.runtime import interpreter as runtime
from tinytrain_tflm.runtime.trainer import Trainer
from tinytrain_tflm.tools import cli

DATA = Path(__file__).parent / "data"
CRAFTED = sorted((DATA / "crafted").glob("*.tflite"))
SOURCE = DATA / "small_cnn.tflite"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "tinytrain_tflm.cli", *args], capture_output=True, text=True, timeout=600)


def _one_line_error(result: subprocess.CompletedProcess, contains: str = "") -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("tinytrain-tflm: error: "), result.stderr
    assert contains in lines[0], lines[0]
    return lines[0]


def _trainer_error(model: bytes) -> str:
    """The TinyTrainError a Trainer raises building the model or running it with controls 0, 1 and 3."""
    try:
        trainer = Trainer(model)
        sample = np.zeros(trainer.input.shape, trainer.input.dtype)
        for control in (0, 1, 3):
            trainer._run(sample, 0, control)
    except tt.TinyTrainError as error:
        return str(error)
    raise AssertionError("the model ran")


@pytest.mark.parametrize("path", CRAFTED, ids=[p.stem for p in CRAFTED])
def test_crafted_models_get_one_line_errors(path, tmp_path):
    assert len(CRAFTED) == 15  # one per crash or hang of the issue (README.md beside them)
    assert "\n" not in _trainer_error(path.read_bytes())
    for args in (
        ("compile", str(path), "-o", str(tmp_path / "out.tflite")),
        ("plan", str(path)),
        ("export", str(path), "-o", str(tmp_path / "out.tflite")),
        ("arena", str(path)),
    ):
        _one_line_error(_cli(*args))
    assert not (tmp_path / "out.tflite").exists()


@pytest.fixture(scope="module")
def training_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "train.tflite"
    path.write_bytes(tt.compile(SOURCE.read_bytes(), update="last").bytes)
    return path


def _with_plan(model: bytes, change) -> bytes:
    """`model` with its offline plan's offsets changed by `change(graph, offsets)`, which returns the new blob."""
    graph = read.read_graph(model)
    blob = graph.metadata[memory.OFFLINE_PLAN]
    header, offsets = np.frombuffer(blob[:12], "<i4"), np.frombuffer(blob[12:], "<i4").copy()
    graph.metadata[memory.OFFLINE_PLAN] = header.tobytes() + change(graph, offsets).tobytes()
    return emit.emit_model(graph)


def _planned(offsets: np.ndarray) -> np.ndarray:
    return np.flatnonzero(offsets >= 0)


def _arena_bytes(tensor) -> int:
    """A tensor's bytes rounded up to TFLM's 16-byte arena alignment."""
    return -(-int(np.prod(tensor.shape)) * tensor.dtype.itemsize // 16) * 16


def _unshared(graph, offsets, tensors=None):
    """Every tensor the plan places laid end to end, in the order of `tensors` (by default tensor order): no two
    share a byte, so the plan is valid whatever their lifetimes; its head is their total size."""
    position = 0
    for tensor in _planned(offsets) if tensors is None else tensors:
        offsets[tensor] = position
        position += _arena_bytes(graph.tensors[tensor])
    return offsets


def _reversed_unshared(graph, offsets):
    return _unshared(graph, offsets, _planned(offsets)[::-1])


def _padded(graph, offsets):  # the compiled plan 64 bytes up: the same layout, the same overlaps
    offsets[_planned(offsets)] += 64
    return offsets


def _all_at_zero(graph, offsets):  # every planned tensor over every other: live ones overlap
    offsets[_planned(offsets)] = 0
    return offsets


def _too_small(graph, offsets):
    """The sample gets 16 bytes too few: the label input, live beside it from the start, takes its last 16."""
    sample, label = graph.inputs[:2]
    order = [sample, label, *(t for t in _planned(offsets) if t not in (sample, label))]
    offsets = _unshared(graph, offsets, order)
    offsets[order[1:]] -= 16
    return offsets


def _past_the_arena(graph, offsets):  # the last offset an int32 holds: its end would wrap in TFLM's int arithmetic
    offsets[_planned(offsets)[-1]] = 2**31 - 16
    return offsets


def _negative(graph, offsets):
    offsets[_planned(offsets)[-1]] = -512
    return offsets


def _misaligned(graph, offsets):
    offsets[_planned(offsets)[-1]] += 8
    return offsets


def _unplanned(graph, offsets):
    offsets[_planned(offsets)[0]] = -1
    return offsets


def _constant_placed(graph, offsets):
    offsets[next(t for t, tensor in enumerate(graph.tensors) if tensor.data is not None)] = 0
    return offsets


def _truncated(graph, offsets):
    return offsets[:-1]


def _emptied(graph, offsets):  # the header alone
    return offsets[:0]


ALTERED_PLANS = {
    _all_at_zero: "over its input|on shared bytes, while both are live",  # whichever pair comes first
    _too_small: "on shared bytes, while both are live before the first op",
    _past_the_arena: "where the head's buffers end even laid out unshared",
    _negative: "before the arena",
    _misaligned: "not a multiple of TFLM's 16-byte alignment",
    _unplanned: "unplanned, but it needs",
    _constant_placed: "its entry must be -1",
    _truncated: "malformed OfflineMemoryAllocation",
    _emptied: "malformed OfflineMemoryAllocation",
}


@pytest.mark.parametrize("change", ALTERED_PLANS, ids=[change.__name__.strip("_") for change in ALTERED_PLANS])
def test_altered_offline_plans_are_refused(training_model, change):
    model = _with_plan(training_model.read_bytes(), change)
    assert model != training_model.read_bytes()
    message = ALTERED_PLANS[change]
    with pytest.raises(tt.TinyTrainError, match=message) as refused:
        memory.check_offline_plan(read.read_graph(model))
    assert "\n" not in str(refused.value) and "recompile the model" in str(refused.value)
    assert re.search(message, _trainer_error(model))


def test_too_small_a_room_names_both_tensors(training_model):
    graph = read.read_graph(training_model.read_bytes())
    sample, label = graph.inputs[:2]
    with pytest.raises(tt.TinyTrainError) as refused:
        memory.check_offline_plan(read.read_graph(_with_plan(training_model.read_bytes(), _too_small)))
    assert f"tensor {sample} ({graph.tensors[sample].name!r}" in str(refused.value)
    assert f"tensor {label} ({graph.tensors[label].name!r}" in str(refused.value)


@pytest.mark.parametrize("change", [_all_at_zero, _truncated])
def test_every_tool_refuses_an_altered_plan_in_one_line(training_model, tmp_path, change):
    path = tmp_path / "altered.tflite"
    path.write_bytes(_with_plan(training_model.read_bytes(), change))
    for args in (("plan", str(path)), ("arena", str(path)), ("export", str(path), "--c-array", str(tmp_path / "m.cc"))):
        result = _cli(*args)
        assert re.search(ALTERED_PLANS[change], _one_line_error(result))
        assert "arena" not in result.stdout  # no arena reported for a model whose plan is invalid
    assert not (tmp_path / "m.cc").exists()


@pytest.mark.parametrize("change", [_reversed_unshared, _padded], ids=["reversed_unshared", "padded"])
def test_a_valid_plan_other_than_the_planners_trains_the_same(change):
    """A model keeps working when the planner changes: any plan that is safe for its graph loads, TFLM follows
    it (its head is that plan's), and every loss and logit of a device-like run is the same as with the plan
    the compiler wrote. The model trains every layer with the overlapping buffers of an inverted residual block."""
    compiled = tt.compile(int8_model("mobilenet_v2_blocks"), update="all", tiles=None).bytes
    model = _with_plan(compiled, change)
    graph = read.read_graph(model)
    memory.check_offline_plan(graph)
    head = memory.plan_memory(graph).head
    assert head != memory.plan_memory(read.read_graph(compiled)).head
    interpreter = tt.Interpreter(model, 1 << 20)
    interpreter.run(runtime.zero_inputs(model))
    assert interpreter.arena_report().head == head
    for ours, reference in zip(_device_run(model), _device_run(compiled), strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_the_compiled_plan_passes(training_model):
    memory.check_offline_plan(read.read_graph(training_model.read_bytes()))


def _data(path: Path, trainer: Trainer) -> Path:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (10, *trainer.input.shape[1:])).astype(np.float32)
    np.savez(path, x=x, y=rng.integers(0, trainer.metadata["num_classes"], 10))
    return path


def _hard_link(target: Path, link: Path) -> Path:
    os.link(target, link)
    return link


def test_no_output_command_writes_through_a_hard_link_to_its_input(training_model, tmp_path):
    source = tmp_path / "source.tflite"
    source.write_bytes(SOURCE.read_bytes())
    model = tmp_path / "train.tflite"
    model.write_bytes(training_model.read_bytes())
    data = _data(tmp_path / "data.npz", Trainer(model.read_bytes()))
    inputs = {path: path.read_bytes() for path in (source, model, data)}
    for command, target, extra in [
        ("compile", source, ()),
        ("attach-loss", source, ()),
        ("train", model, ("--data", str(data))),
        ("export", model, ()),
        ("search", source, ("--data", str(data), "--budget", "1MB")),
    ]:
        link = _hard_link(target, tmp_path / f"{command}-link.out")
        _one_line_error(_cli(command, str(target), *extra, "-o", str(link)), "refusing to overwrite the input file")
        if command in ("train", "search"):  # the data file is an input too
            data_link = _hard_link(data, tmp_path / f"{command}-data-link.out")
            _one_line_error(_cli(command, str(target), *extra, "-o", str(data_link)), "refusing to overwrite the input file")
    c_link = _hard_link(model, tmp_path / "c-link.cc")
    _one_line_error(_cli("export", str(model), "--c-array", str(c_link)), "refusing to overwrite the input file")
    plot_link = _hard_link(model, tmp_path / "plot-link.png")
    _one_line_error(_cli("plan", str(model), "--plot", str(plot_link)), "refusing to overwrite the input file")
    # A plot never replaces a model, even one that is not this run's input and has an image's name.
    other = tmp_path / "other-model.png"
    other.write_bytes(SOURCE.read_bytes())
    _one_line_error(_cli("plan", str(model), "--plot", str(other)), "a TFLite model")
    assert other.read_bytes() == SOURCE.read_bytes()
    assert all(path.read_bytes() == content for path, content in inputs.items())


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    old = tmp_path / "out.tflite"
    old.write_bytes(b"old contents")

    def fail(temporary: Path) -> None:
        temporary.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(tt.TinyTrainError, match="No space left on device"):
        cli._write_atomically(str(old), fail)
    assert old.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tflite"]  # no temporary left behind


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("compile", "{source}", "-o", "{out}", "--lr", "1e30"), "learning rate must be in (0, 100.0]"),
        (("compile", "{source}", "-o", "{out}", "--lr", "nan"), "--lr must be a finite number"),
        (("compile", "{source}", "-o", "{out}", "--seed", "-1"), "--seed must be in [0, 2^31)"),
        (("compile", "{source}", "-o", "{out}", "--tile", "99999999999x1"), "--tile takes 1 to 64"),
        (("train", "{model}", "--data", "{data}", "--epochs", "10000000"), "--epochs must be in [1, 1,000,000]"),
        (("train", "{model}", "--data", "{data}", "--seed", "-1"), "--seed must be in [0, 2^31)"),
        (("search", "{source}", "--data", "{data}", "--budget", "nan", "-o", "{out}"), "--budget must be a positive size"),
        (("search", "{source}", "--data", "{data}", "--budget", "1MB", "--steps", "-1", "-o", "{out}"), "--steps must be"),
    ],
)
def test_options_are_bounded_before_any_work(training_model, tmp_path, args, message):
    data = _data(tmp_path / "data.npz", Trainer(training_model.read_bytes()))
    paths = {"source": SOURCE, "model": training_model, "data": data, "out": tmp_path / "out"}
    _one_line_error(_cli(*(arg.format(**paths) for arg in args)), message)
    assert not (tmp_path / "out").exists()


# Run a model straight in TFLM with tinytrain's ops, skipping the Python checks, as a firmware reading
# a model from storage would: a training step (every int32 [1] input, the control, set to 3).
_RAW_TRAINING_STEP = """
import sys
import numpy as np
from tflite_micro import runtime
from tinytrain_tflm.runtime import interpreter
interpreter.load_plugin()
tflm = runtime.Interpreter.from_bytes(
    open(sys.argv[1], "rb").read(), custom_op_registerers=[interpreter.REGISTERER], arena_size=1 << 24
)
for index in range(3):
    details = tflm.get_input_details(index)
    value = np.zeros(details["shape"], details["dtype"])
    value[...] = 3 if details["dtype"] == np.int32 and tuple(details["shape"]) == (1,) else 0
    tflm.set_input(value, index)
tflm.invoke()
"""
# The crafted models aimed at the kernels, and the op whose Prepare must refuse each.
KERNEL_CASES = {
    "activation_mask_null_output": "TT_ACTIVATION_MASK: output 0 is missing",
    "conv_null_output": "TT_CONV_2D: output 0 is missing",
    "avgpool_grad_stride_overflow": "TT_AVERAGE_POOL_2D_GRAD: 5 output rows with filter 2, stride 2147483647",
    "init_variables_short_f16": "TT_INIT_VARIABLES: input 0 has type 10",
    "int32_wrap_TT_BIAS_GRAD": "TT_BIAS_GRAD: input 0 has a dimension below 1 or more than",
    "int32_wrap_TT_MEAN_GRAD": "TT_MEAN_GRAD: output 0 has a dimension below 1 or more than",
    "int32_wrap_TT_CONV_2D_FILTER_GRAD": "TT_CONV_2D_FILTER_GRAD: input 0 has a dimension below 1 or more than",
    "int32_wrap_TT_FULLY_CONNECTED_INPUT_GRAD": "TT_FULLY_CONNECTED_INPUT_GRAD: input 0 has a dimension below 1 or more than",
    "loss_int32_overflow": "TT_SOFTMAX_CROSS_ENTROPY: input 0 has a dimension below 1 or more than",
    "sgd_int32_overflow": "TT_SGD: input 0 has a dimension below 1 or more than",
}


def _at_current_schema(model: bytes) -> bytes:
    """The crafted model with its option blobs' headers raised to this schema version. They were crafted at
    version 1; version 2 only added the loss to TRAINING_METADATA, so these ops' blobs keep their layout, and
    without the raise every kernel would stop at the version check before reaching the defect aimed at it."""
    current = struct.pack("<H", schema_generated.SCHEMA_VERSION)
    return model.replace(schema_generated.MAGIC + struct.pack("<H", 1), schema_generated.MAGIC + current)


def _at_current_layout(model: bytes) -> bytes:
    """The crafted model with the inputs TT_SGD gained after it was crafted: the learning-rate variable (also
    the model's last input) and no accumulator (-1). Without them every TT_SGD would stop at its input count
    before the op aimed at reached its own Prepare."""
    parsed = copy.deepcopy(read.parse_flatbuffer(model))
    updates = {i for i, code in enumerate(parsed.operatorCodes) if read.as_text(code.customCode) == schema_generated.SGD}
    subgraph = parsed.subgraphs[0]
    rate = tfl.TensorT()
    rate.name, rate.shape, rate.type, rate.isVariable = "learning_rate", np.array([1], np.int32), tfl.TensorType.FLOAT32, True
    subgraph.tensors.append(rate)
    index = len(subgraph.tensors) - 1
    subgraph.inputs = np.append(subgraph.inputs, index).astype(np.int32)  # flatbuffers packs the array's dtype
    for op in subgraph.operators:
        if op.opcodeIndex in updates:
            op.inputs = np.append(op.inputs, [index, -1]).astype(np.int32)
    builder = flatbuffers.Builder(1024)
    builder.Finish(parsed.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("name", sorted(KERNEL_CASES))
def test_kernels_refuse_crafted_models_in_prepare(name, tmp_path):
    model = tmp_path / f"{name}.tflite"
    model.write_bytes(_at_current_layout(_at_current_schema((DATA / "crafted" / f"{name}.tflite").read_bytes())))
    result = subprocess.run(
        [sys.executable, "-P", "-c", _RAW_TRAINING_STEP, str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr  # a Python exception: no signal, no training step run
    assert KERNEL_CASES[name] in result.stderr and "failed to prepare" in result.stderr, result.stderr


def test_trainer_refuses_samples_with_nan_or_inf(training_model):
    trainer = Trainer(training_model.read_bytes())
    sample = np.zeros(trainer.input.shape[1:], np.float32)
    before = trainer.weights()
    for bad in (np.nan, np.inf, -np.inf):
        sample.flat[3] = bad
        with pytest.raises(tt.TinyTrainError, match="sample holds NaN or infinite values"):
            trainer.step(sample, 0)
    assert all(np.array_equal(before[name], value) for name, value in trainer.weights().items())  # nothing trained


def _source_graph():
    return read.read_graph(SOURCE.read_bytes())


def _refused(graph, message: str) -> None:
    with pytest.raises(tt.TinyTrainError, match=message):
        read.read_graph(emit.emit_model(graph))


def test_the_verifier_names_the_op_or_tensor():
    # small_cnn: CONV_2D, MAX_POOL_2D, CONV_2D, MAX_POOL_2D, SHAPE, STRIDED_SLICE, PACK, RESHAPE, FULLY_CONNECTED
    graph = _source_graph()
    graph.ops[2].outputs = [10]  # CONV_2D writes the tensor it reads
    _refused(graph, r"op 2 \(CONV_2D\) writes its own input tensor 10")
    graph = _source_graph()
    graph.ops[1], graph.ops[2] = graph.ops[2], graph.ops[1]
    _refused(graph, r"op 1 \(CONV_2D\) reads tensor 10 .* before any op writes it")
    graph = _source_graph()
    graph.ops[3].outputs = [11]
    _refused(graph, r"op 3 \(MAX_POOL_2D\) writes its own input")
    graph = _source_graph()
    graph.tensors[16].shape = (65536, 65537)  # 2^32 + 2^16 elements: wraps int32
    _refused(graph, r"tensor 16 .* has shape \(65536, 65537\): 4,295,032,832 bytes")
    graph = _source_graph()
    graph.tensors[9].quantization = None
    _refused(graph, r"op 0 \(CONV_2D\): its int8 output .* has no quantization")
    graph = _source_graph()
    graph.ops[1].builtin_options.filterHeight = 2**30
    _refused(graph, r"op 1 \(MAX_POOL_2D\): window along axis 1 1073741824 is outside \[1, 40\]")
    graph = _source_graph()
    graph.ops[1].builtin_options.strideH = 3  # 12 rows, stride 3: 4 output rows, not the 6 the model has
    _refused(graph, r"op 1 \(MAX_POOL_2D\): output has 6 along axis 1; a 2-wide window with stride 3 over 12 gives 4")
    graph = _source_graph()
    graph.tensors[7].quantization.scale[:] = 0
    _refused(graph, r"tensor 7 .* quantization scale that is not finite and positive")


def test_a_same_window_larger_than_its_input_is_accepted():
    """A 3x3 SAME convolution over a 1x1 map (the last stage of a small-input MobileNet) is valid TFLite."""
    graph = _source_graph()
    x, w = graph.tensors[10], graph.tensors[6]
    x.shape, graph.tensors[11].shape, graph.tensors[12].shape = (1, 1, 1, 4), (1, 1, 1, 8), (1, 1, 1, 8)
    graph.ops[3].builtin_options.filterHeight = graph.ops[3].builtin_options.filterWidth = 1
    graph.ops[1].builtin_options.filterHeight = graph.ops[1].builtin_options.filterWidth = 12
    graph.ops[1].builtin_options.strideH = graph.ops[1].builtin_options.strideW = 12
    graph.ops[2].builtin_options.padding = tfl.Padding.SAME
    assert w.shape[1:3] == (3, 3)
    read.read_graph(emit.emit_model(graph))


def test_training_metadata_naming_a_missing_tensor_is_refused(training_model):
    from tinytrain_tflm.backend import schema
    from tinytrain_tflm.passes import loss

    graph = read.read_graph(training_model.read_bytes())
    values = schema.decode_blob("TRAINING_METADATA", graph.metadata[loss.TRAINING_METADATA])
    for role, index in (("logits_tensor", len(graph.tensors)), ("input_tensor", -1), ("softmax_tensor", 10**6)):
        graph.metadata[loss.TRAINING_METADATA] = schema.encode_blob("TRAINING_METADATA", **{**values, role: index})
        assert f"names tensor {index} as {role}" in _trainer_error(emit.emit_model(graph))

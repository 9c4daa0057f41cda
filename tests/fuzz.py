"""Seeded structure-aware fuzzing of every model reader: source models, training models, tinytrain
op options, training metadata and offline plans.

Each case takes one of the base models, applies one to three mutations to its flatbuffer object tree
(tfl.ModelT: indices, shapes, types, quantization, builtin options, ops and their order) or to the
blobs inside it (tinytrain op options and training metadata re-encoded with a valid CRC, so the
mutation reaches the checks behind the CRC; the offline memory plan), then runs what a user would:
compile for a source model; Trainer with controls 0, 1 and 3, then export, for a training model.

A case passes when it runs or ends in a TinyTrainError. Any other exception is a traceback, a
case over --case-seconds is a hang, and a signal ends the run (a crash: the last "case" line names it).
The process limits its own address space (--memory-gib), so a mutation that makes a tool allocate
gigabytes fails as MemoryError, a traceback, instead of taking the machine.

    python tests/fuzz.py --cases 2000 --seed 0        # the CI run (tests/test_fuzz.py)
    python tests/fuzz.py --cases 50000 --seed 7       # a release check, about 20-40 minutes
    python tests/fuzz.py --seed 3 --only 676          # replays one case
"""

from __future__ import annotations

import argparse
import collections
import copy
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

import tinytrain_tflm as tt
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.frontend import read
from tinytrain_tflm.passes import loss
from tinytrain_tflm.plan import memory
from tinytrain_tflm.runtime import interpreter
from tinytrain_tflm.runtime.trainer import Trainer

DATA = Path(__file__).parent / "data"
# Values that break size and index arithmetic: zero, negatives, int32 and int64 edges, wrapping products.
EXTREMES = (0, -1, -2, 1, 2, 3, 7, 255, 65536, 65537, 2**30, 2**31 - 1, -(2**31))
BLOB_OF_OP = {entry["custom_name"]: name for name, entry in schema_generated.BLOBS.items() if entry.get("custom_name")}


class Hang(Exception):
    pass


def _extreme(rng: np.random.Generator, valid: int | None = None) -> int:
    if valid is not None and rng.random() < 0.3:
        return int(rng.integers(-1, valid + 2))  # near the valid range: off-by-one indices
    return int(rng.choice(EXTREMES))


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))] if items else None


# Mutators on the object tree. Each changes one thing and returns what it did, or None if it found
# nothing to change.


def _tensor_shape(model: tfl.ModelT, rng) -> str | None:
    tensor = _pick(rng, model.subgraphs[0].tensors)
    if tensor is None or tensor.shape is None or len(tensor.shape) == 0:
        return None
    axis = int(rng.integers(len(tensor.shape)))
    tensor.shape = np.array(tensor.shape, np.int64)
    tensor.shape[axis] = _extreme(rng, int(tensor.shape[axis]))
    tensor.shape = tensor.shape.astype(np.int32)
    return f"shape[{axis}] of {tensor.name!r}"


def _tensor_type(model, rng) -> str | None:
    tensor = _pick(rng, model.subgraphs[0].tensors)
    tensor.type = int(rng.choice([0, 1, 2, 3, 4, 6, 7, 9, 10, 17]))
    return f"type of {tensor.name!r} to {tensor.type}"


def _tensor_flags(model, rng) -> str | None:
    tensor = _pick(rng, model.subgraphs[0].tensors)
    if rng.random() < 0.5:
        tensor.isVariable = not tensor.isVariable
        return f"is_variable of {tensor.name!r}"
    tensor.buffer = _extreme(rng, len(model.buffers))
    return f"buffer of {tensor.name!r}"


def _buffer_data(model, rng) -> str | None:
    buffers = [b for b in model.buffers if b.data is not None and len(b.data)]
    buffer = _pick(rng, buffers)
    if buffer is None:
        return None
    data = np.array(buffer.data, np.uint8)
    if rng.random() < 0.5:
        buffer.data = data[: int(rng.integers(len(data)))]
        return "truncated a buffer"
    data[int(rng.integers(len(data)))] = int(rng.integers(256))
    buffer.data = data
    return "changed a constant byte"


def _quantization(model, rng) -> str | None:
    tensor = _pick(rng, [t for t in model.subgraphs[0].tensors if t.quantization is not None])
    if tensor is None:
        return None
    q = tensor.quantization
    choice = int(rng.integers(5))
    if choice == 0:
        tensor.quantization = None
    elif choice == 1 and q.scale is not None:
        q.scale = np.array(q.scale, np.float32)
        q.scale[int(rng.integers(len(q.scale)))] = rng.choice([0.0, -1.0, np.nan, np.inf, 1e-30, 1e30])
    elif choice == 2 and q.zeroPoint is not None:
        q.zeroPoint = np.array(q.zeroPoint, np.int64)
        q.zeroPoint[int(rng.integers(len(q.zeroPoint)))] = _extreme(rng)
    elif choice == 3:
        q.quantizedDimension = _extreme(rng, 4)
    else:
        q.scale = None if q.scale is None else np.array(q.scale, np.float32)[: int(rng.integers(2))]
    return f"quantization of {tensor.name!r} ({choice})"


def _op_operand(model, rng) -> str | None:
    subgraph = model.subgraphs[0]
    position = int(rng.integers(len(subgraph.operators)))
    op = subgraph.operators[position]
    field = "inputs" if rng.random() < 0.6 else "outputs"
    indices = getattr(op, field)
    if indices is None or len(indices) == 0:
        return None
    indices = np.array(indices, np.int32)
    slot = int(rng.integers(len(indices)))
    if rng.random() < 0.3 and op.outputs is not None and len(op.outputs):  # an op reading its own output
        indices[slot] = op.outputs[0] if field == "inputs" else (op.inputs[0] if len(op.inputs) else -1)
    else:
        indices[slot] = _extreme(rng, len(subgraph.tensors))
    setattr(op, field, indices)
    return f"op {position} {field}[{slot}]"


def _op_order(model, rng) -> str | None:
    ops = model.subgraphs[0].operators
    if len(ops) < 2:
        return None
    a, b = (int(i) for i in rng.choice(len(ops), 2, replace=False))
    if rng.random() < 0.3:
        ops.insert(b, ops.pop(a))  # an op moved: reads before writes
        return f"moved op {a} to {b}"
    ops[a], ops[b] = ops[b], ops[a]
    return f"swapped ops {a} and {b}"


def _op_removed_or_duplicated(model, rng) -> str | None:
    ops = model.subgraphs[0].operators
    position = int(rng.integers(len(ops)))
    if rng.random() < 0.5:
        ops.pop(position)
        return f"removed op {position}"
    ops.insert(position, ops[position])
    return f"duplicated op {position}"


def _builtin_options(model, rng) -> str | None:
    ops = [op for op in model.subgraphs[0].operators if op.builtinOptions is not None]
    op = _pick(rng, ops)
    if op is None:
        return None
    fields = [f for f, v in vars(op.builtinOptions).items() if isinstance(v, (int, np.integer)) and not isinstance(v, bool)]
    field = _pick(rng, fields)
    if field is None:
        return None
    setattr(op.builtinOptions, field, _extreme(rng, 3))
    return f"builtin option {field}"


def _opcode(model, rng) -> str | None:
    op = _pick(rng, model.subgraphs[0].operators)
    op.opcodeIndex = _extreme(rng, len(model.operatorCodes))
    return "opcode index"


def _io(model, rng) -> str | None:
    subgraph = model.subgraphs[0]
    field = "inputs" if rng.random() < 0.5 else "outputs"
    indices = np.array(getattr(subgraph, field), np.int32)
    if rng.random() < 0.2 or len(indices) == 0:
        indices = np.append(indices, _extreme(rng, len(subgraph.tensors))).astype(np.int32)
    else:
        indices[int(rng.integers(len(indices)))] = _extreme(rng, len(subgraph.tensors))
    setattr(subgraph, field, indices)
    return f"graph {field}"


def _metadata_buffer(model: tfl.ModelT, name: str) -> tfl.BufferT | None:
    entry = next((m for m in model.metadata or [] if read.as_text(m.name) == name), None)
    if entry is None or not 0 <= entry.buffer < len(model.buffers):
        return None
    return model.buffers[entry.buffer]


def _reencoded(blob_name: str, blob: bytes, rng) -> bytes | None:
    """The blob with one field changed, encoded again with a valid CRC."""
    try:
        values = schema.decode_blob(blob_name, blob)
    except tt.TinyTrainError:
        return None
    if not values:
        return None
    field = _pick(rng, sorted(values))
    kind = next(f["type"] for f in schema_generated.BLOBS[blob_name]["fields"] if f["name"] == field)
    values[field] = float(rng.choice([0.0, -1.0, 1e30, 1e-30, 2.0, 0.5])) if kind == "float32" else _extreme(rng, 8)
    try:
        return schema.encode_blob(blob_name, **values)
    except tt.TinyTrainError:  # a non-finite float: encode refuses it, so no model carries it
        return None


def _custom_options(model, rng) -> str | None:
    codes = model.operatorCodes
    ops = [
        op
        for op in model.subgraphs[0].operators
        if 0 <= op.opcodeIndex < len(codes)
        and read.as_text(codes[op.opcodeIndex].customCode) in BLOB_OF_OP
        and op.customOptions is not None  # an empty options blob reads back as none: nothing to mutate
    ]
    op = _pick(rng, ops)
    if op is None:
        return None
    kind = read.as_text(codes[op.opcodeIndex].customCode)
    blob = _reencoded(BLOB_OF_OP[kind], bytes(np.array(op.customOptions, np.uint8)), rng)
    if blob is None:
        return None
    op.customOptions = np.frombuffer(blob, np.uint8)
    return f"options of {kind} (CRC valid)"


def _training_metadata(model, rng) -> str | None:
    buffer = _metadata_buffer(model, loss.TRAINING_METADATA)
    if buffer is None:
        return None
    blob = _reencoded("TRAINING_METADATA", bytes(np.array(buffer.data, np.uint8)), rng)
    if blob is None:
        return None
    buffer.data = np.frombuffer(blob, np.uint8)
    return "training metadata (CRC valid)"


def _offline_plan(model, rng) -> str | None:
    buffer = _metadata_buffer(model, memory.OFFLINE_PLAN)
    if buffer is None:
        return None
    values = np.frombuffer(bytes(np.array(buffer.data, np.uint8)), "<i4").copy()
    offsets = values[3:]
    planned = np.flatnonzero(offsets >= 0)
    choice = int(rng.integers(5))
    if choice == 0 and len(planned) > 1:
        offsets[planned] = offsets[rng.permutation(planned)]
    elif choice == 1 and len(planned) > 1:
        a, b = rng.choice(planned, 2, replace=False)
        offsets[a] = offsets[b]
    elif choice == 2 and len(offsets):
        offsets[int(rng.integers(len(offsets)))] = _extreme(rng)
    elif choice == 3 and len(values):
        values = values[: int(rng.integers(len(values)))]
    elif len(values):  # the header (an earlier mutation may have truncated it)
        values[int(rng.integers(min(3, len(values))))] = _extreme(rng, 2)
    buffer.data = np.frombuffer(values.tobytes(), np.uint8)
    return f"offline plan ({choice})"


GRAPH_MUTATORS = (
    _tensor_shape,
    _tensor_type,
    _tensor_flags,
    _buffer_data,
    _quantization,
    _op_operand,
    _op_order,
    _op_removed_or_duplicated,
    _builtin_options,
    _opcode,
    _io,
)
TRAINING_MUTATORS = (_custom_options, _custom_options, _training_metadata, _offline_plan, _offline_plan)


def _pack(model: tfl.ModelT) -> bytes | None:
    builder = flatbuffers.Builder(1024)
    try:
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    except Exception:  # the mutation cannot be serialized (e.g. an int32 field out of range): no model
        return None
    return bytes(builder.Output())


def mutate(base: bytes, rng: np.random.Generator, training: bool) -> tuple[bytes, list[str]] | None:
    model = copy.deepcopy(read.parse_flatbuffer(base))  # the parsed model is shared: mutate a copy
    done = []
    for _ in range(int(rng.integers(1, 4))):
        mutators = GRAPH_MUTATORS + (TRAINING_MUTATORS * 2 if training else ())
        what = _pick(rng, list(mutators))(model, rng)
        if what is not None:
            done.append(what)
    data = _pack(model) if done else None
    return None if data is None else (data, done)


def run_tools(data: bytes, training: bool) -> None:
    """What a user runs on the model; raises TinyTrainError for a refused model."""
    if not training:
        tt.compile(data, update=str(np.random.default_rng(len(data)).choice(["last", "all"])))
        return
    trainer = Trainer(data)
    sample = np.zeros(trainer.input.shape, trainer.input.dtype)
    for control in (0, 1, 3):
        trainer._run(sample, 0, control)
    trainer.export()


def _on_alarm(signum, frame):
    raise Hang()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=int, help="replay this one case of the run (a FAILURE line's number)")
    parser.add_argument("--case-seconds", type=int, default=20, help="a case running longer is a hang")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="address-space limit of the whole run")
    args = parser.parse_args(argv)
    limit = int(args.memory_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    interpreter.PROBE_TIMEOUT_SECONDS = args.case_seconds  # a hang in the crash guard's child, too
    signal.signal(signal.SIGALRM, _on_alarm)
    sources = [(DATA / f"{name}.tflite").read_bytes() for name in ("small_cnn", "ds_cnn")]
    bases = [(source, False) for source in sources]
    bases += [(tt.compile(sources[0], update="last").bytes, True)]
    bases += [(tt.compile(sources[1], update="all", gradient="int8", optimizer=tt.SGD(momentum=0.9)).bytes, True)]
    bases += [(tt.compile(sources[0], update="last", tiles=(2, 2), flash_requantization=True).bytes, True)]
    outcomes = collections.Counter()
    failures = []
    start = time.monotonic()
    for case in range(args.cases) if args.only is None else [args.only]:
        rng = np.random.default_rng([args.seed, case])
        base, training = bases[case % len(bases)]
        mutated = mutate(base, rng, training)
        if mutated is None:
            outcomes["not serializable"] += 1
            continue
        data, what = mutated
        print(f"case {case}: {'training' if training else 'source'} model, {'; '.join(what)}", flush=True)
        signal.alarm(args.case_seconds)
        try:
            run_tools(data, training)
            outcome = "accepted"
        except tt.TinyTrainError:
            outcome = "refused (TinyTrainError)"
        except Hang:
            outcome = "HANG"
        except Exception as error:  # noqa: BLE001 - any other exception is the finding
            outcome = "TRACEBACK"
            frame = traceback.extract_tb(error.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            failures.append(f"case {case} ({'; '.join(what)}): {type(error).__name__} at {where}: {error}")
        finally:
            signal.alarm(0)
        if outcome == "HANG":
            failures.append(f"case {case} ({'; '.join(what)}): over {args.case_seconds} s")
        outcomes[outcome] += 1
    elapsed = time.monotonic() - start
    print(
        f"{sum(outcomes.values())} cases, seed {args.seed}, {elapsed:.0f} s: "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    )
    for failure in failures:
        print(f"FAILURE {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

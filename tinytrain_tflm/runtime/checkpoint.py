"""Device checkpoints: the training state a firmware saves with kernels/core/checkpoint (per TT_SGD, the
variable it updates, its momentum and its stochastic-rounding generator's state, and every int8 gradient's
scale history), read and written here in the same layout, byte for byte.

One checkpoint (a slot's record) is the tinytrain blob header with magic "TTCK" (magic, version, kind,
payload bytes, CRC-32 of the payload), then the payload: sequence, model identity (CRC-32 of the training
model's bytes), entry count, an (index, bytes) table, and each entry's bytes zero-padded to 4. An entry's
index is a tensor index, or ROUNDING_STATE | the TT_SGD's op index for its generator's uint32 state. A
storage image is the device's two slots of equal size, the newest valid one counting. `apply` turns a
checkpoint into the training model's starting point, which `export` makes an inference model of.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Mapping

import numpy as np

from ..backend import emit, schema, schema_generated
from ..compiler import TrainingModel
from ..errors import TinyTrainError
from ..frontend import ir
from ..frontend.read import read_graph

MAGIC = 0x4B435454  # "TTCK"
VERSION = 2  # 1 had no rounding-state entries
KIND_STATE = 1
SLOTS = 2
ROUNDING_STATE = 0x80000000  # in an entry's index: TT_SGD op (low bits)'s stochastic-rounding state, a uint32
_HEADER = struct.Struct("<IHHII")  # magic, version, kind, payload bytes, CRC-32
_FIELDS = struct.Struct("<III")  # sequence, model identity, entry count
_ENTRY = struct.Struct("<II")  # index, bytes
_SGD_PARAMETER, _SGD_MOMENTUM = 0, 3  # TT_SGD's inputs: parameter, gradient, scale, momentum, control, ...


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's sequence number and entry bytes, by entry index (a tensor index in the training model,
    or ROUNDING_STATE | op index)."""

    sequence: int
    values: dict[int, bytes]


def model_identity(model: bytes) -> int:
    """What a checkpoint names its model by: the CRC-32 of the training model's bytes."""
    return zlib.crc32(model)


def state_entries(graph: ir.Graph) -> list[int]:
    """The checkpointed entries in the firmware's order, op by op: every variable the op writes as an output
    (an int8 gradient's scale with its history), then for a TT_SGD its parameter, its momentum (when it has
    one) and ROUNDING_STATE | its op index (under every rounding mode: one model, one layout)."""
    entries = []
    for index, op in enumerate(graph.ops):
        entries += [t for t in op.outputs if t >= 0 and graph.tensors[t].is_variable]
        if op.kind == schema_generated.SGD:
            entries += [t for t in (op.inputs[_SGD_PARAMETER], op.inputs[_SGD_MOMENTUM]) if t >= 0]
            entries.append(ROUNDING_STATE | index)
    if not any(entry & ROUNDING_STATE for entry in entries):
        raise TinyTrainError("not a training model: it has no TT_SGD, so nothing to checkpoint")
    return entries


def _entry_bytes(graph: ir.Graph, entry: int) -> int:
    if entry & ROUNDING_STATE:
        return 4
    return math.prod(graph.tensors[entry].shape) * np.dtype(graph.tensors[entry].dtype).itemsize


def _layout(model: bytes) -> list[tuple[int, int]]:
    graph = read_graph(model)
    return [(entry, _entry_bytes(graph, entry)) for entry in state_entries(graph)]


def initial_values(model: bytes) -> dict[int, bytes]:
    """Every entry as the model starts training: the constants TT_INIT_VARIABLES copies (zeros for a variable
    without one, as TFLM leaves it) and each TT_SGD's seed option as its rounding state."""
    graph = read_graph(model)
    init = next(op for op in graph.ops if op.kind == schema_generated.INIT_VARIABLES)
    sources = dict(zip(init.inputs[1::2], init.inputs[0::2], strict=True))
    values = {}
    for entry in state_entries(graph):
        if entry & ROUNDING_STATE:
            seed = schema.decode_blob("SGD", graph.ops[entry & ~ROUNDING_STATE].custom_options)["seed"]
            values[entry] = struct.pack("<i", seed)  # the option's int32, the kernel's uint32: the same bits
        elif entry in sources:
            values[entry] = graph.tensors[sources[entry]].data.tobytes()
        else:
            values[entry] = bytes(_entry_bytes(graph, entry))
    return values


def _padded(count: int) -> int:
    return (count + 3) & ~3


def size(model: bytes) -> int:
    """Bytes of one checkpoint of `model`: what each device slot must hold at least."""
    layout = _layout(model)
    return _HEADER.size + _FIELDS.size + _ENTRY.size * len(layout) + sum(_padded(n) for _, n in layout)


def write(model: bytes, values: Mapping[int, bytes | np.ndarray], sequence: int) -> bytes:
    """One checkpoint of `model` holding `values` (by entry index, every checkpointed entry; `initial_values`
    gives them all as training starts), as tt_checkpoint_save writes it into a slot."""
    if not 0 <= sequence < 2**32:
        raise TinyTrainError(f"checkpoint sequence must be in [0, 2^32), got {sequence}")
    layout = _layout(model)
    if set(values) != {t for t, _ in layout}:
        raise TinyTrainError(f"a checkpoint of this model holds entries {[t for t, _ in layout]}, got {sorted(values)}")
    table, data = [], []
    for tensor, nbytes in layout:
        raw = values[tensor].tobytes() if isinstance(values[tensor], np.ndarray) else bytes(values[tensor])
        if len(raw) != nbytes:
            raise TinyTrainError(f"checkpoint entry {tensor} has {nbytes} bytes, got {len(raw)}")
        if tensor & ROUNDING_STATE and raw == bytes(4):
            raise TinyTrainError(f"the rounding state of op {tensor & ~ROUNDING_STATE} is 0, which xorshift32 never reaches")
        table.append(_ENTRY.pack(tensor, nbytes))
        data.append(raw + bytes(_padded(nbytes) - nbytes))
    payload = _FIELDS.pack(sequence, model_identity(model), len(layout)) + b"".join(table) + b"".join(data)
    return _HEADER.pack(MAGIC, VERSION, KIND_STATE, len(payload), zlib.crc32(payload)) + payload


def _parse_slot(model: bytes, layout: list[tuple[int, int]], slot: bytes) -> Checkpoint | str:
    """The checkpoint in `slot`, or why there is none (in the order tt_checkpoint_restore checks)."""
    if len(slot) < _HEADER.size:
        return "shorter than a checkpoint header"
    magic, version, kind, payload_bytes, crc = _HEADER.unpack_from(slot)
    if magic != MAGIC:
        return "empty (no checkpoint magic)"
    if version != VERSION:
        older = " (version 1 has no rounding state: save again with this version)" if version == 1 else ""
        return f"format version {version}, this tinytrain_tflm reads {VERSION}{older}"
    if kind != KIND_STATE:
        return f"kind {kind}, not a training state"
    payload = slot[_HEADER.size : _HEADER.size + payload_bytes]
    if len(payload) != payload_bytes or payload_bytes < _FIELDS.size:
        return f"truncated ({payload_bytes} payload bytes declared, {len(slot) - _HEADER.size} there)"
    if zlib.crc32(payload) != crc:
        return "corrupt (CRC-32 mismatch)"
    sequence, identity, count = _FIELDS.unpack_from(payload)
    expected = _FIELDS.size + _ENTRY.size * len(layout) + sum(_padded(n) for _, n in layout)
    if identity != model_identity(model):
        return f"written for another training model (identity {identity:#010x}, this model's {model_identity(model):#010x})"
    table = (
        [_ENTRY.unpack_from(payload, _FIELDS.size + _ENTRY.size * i) for i in range(count)] if payload_bytes == expected else []
    )
    if count != len(layout) or table != layout:
        return "its entries differ from this model's"
    values, offset = {}, _FIELDS.size + _ENTRY.size * count
    for tensor, nbytes in layout:
        values[tensor] = payload[offset : offset + nbytes]
        offset += _padded(nbytes)
    return Checkpoint(sequence, values)


def read(model: bytes, data: bytes) -> Checkpoint:
    """The checkpoint of `model` in `data`: one checkpoint, or a storage image of two slots (the newest
    valid slot, by sequence number as the firmware compares them). An error naming what is wrong with each
    slot when none is valid: empty, corrupt, another format version, another model."""
    layout = _layout(model)
    single = len(data) >= _HEADER.size and _HEADER.size + _HEADER.unpack_from(data)[3] == len(data)
    if single:
        found = _parse_slot(model, layout, data)
        if isinstance(found, str):
            raise TinyTrainError(f"not a checkpoint of this model: {found}")
        return found
    if len(data) == 0 or len(data) % SLOTS:
        raise TinyTrainError(f"a checkpoint file holds one checkpoint or {SLOTS} equal slots; got {len(data)} bytes")
    slot_bytes = len(data) // SLOTS
    found = [_parse_slot(model, layout, data[i * slot_bytes : (i + 1) * slot_bytes]) for i in range(SLOTS)]
    valid = [c for c in found if isinstance(c, Checkpoint)]
    if not valid:
        reasons = ", ".join(f"slot {i} {reason}" for i, reason in enumerate(found))
        raise TinyTrainError(f"no valid checkpoint of this model: {reasons}")
    newest = valid[0]
    for candidate in valid[1:]:
        if 0 < (candidate.sequence - newest.sequence) % 2**32 < 2**31:  # serial-number order: it may wrap
            newest = candidate
    return newest


def erased_storage(model: bytes, slot_bytes: int | None = None) -> bytes:
    """A device storage image of two erased slots (0xFF, as erased flash reads), each of `slot_bytes`
    (default: one checkpoint of `model`)."""
    needed = size(model)
    slot_bytes = needed if slot_bytes is None else slot_bytes
    if slot_bytes < needed:
        raise TinyTrainError(f"a checkpoint slot of this model needs {needed} bytes, got {slot_bytes}")
    return b"\xff" * (SLOTS * slot_bytes)


def apply(model: bytes, data: bytes) -> TrainingModel:
    """`model` with the parameters of its checkpoint in `data` as its starting point (the constants
    TT_INIT_VARIABLES copies) and each TT_SGD's rounding state as its seed option, for export or further
    training. Momentum is carried where the model has a constant for it (a model saved by
    Trainer.training_model); elsewhere training restarts at zero momentum."""
    checkpoint = read(model, data)
    graph = read_graph(model)
    init = next(op for op in graph.ops if op.kind == schema_generated.INIT_VARIABLES)
    for source, variable in zip(init.inputs[0::2], init.inputs[1::2], strict=True):
        if variable in checkpoint.values:
            tensor = graph.tensors[source]
            tensor.data = np.frombuffer(checkpoint.values[variable], tensor.dtype).reshape(tensor.shape).copy()
    for entry, value in checkpoint.values.items():
        if entry & ROUNDING_STATE:
            op = graph.ops[entry & ~ROUNDING_STATE]
            (state,) = struct.unpack("<i", value)
            if state == 0:
                raise TinyTrainError(f"the checkpoint's rounding state of op {entry & ~ROUNDING_STATE} is 0: not a state")
            op.custom_options = schema.encode_blob("SGD", **{**schema.decode_blob("SGD", op.custom_options), "seed": state})
    return TrainingModel(emit.emit_model(graph))

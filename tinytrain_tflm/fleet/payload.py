"""The fleet update payload: a device's trained tensors (int8 weights and int32 biases of the trained
channels only, with their fixed scales) in a versioned, CRC-checked blob.

The layout is the one kernels/core/fleet/tt_fleet_update.h documents and the firmware API writes and
applies: the tinytrain blob header (magic "TTFU", u16 version, u16 kind, u32 payload bytes, u32 CRC-32),
then u32 round, u32 sample count, u32 tensor count, and per tensor u32 index, u32 type (1 int8,
2 int32), u32 count, u32 scale count, the float32 scales, and the values (int8 padded to 4 bytes).
The blob holds parameter values and two counters, nothing derived from a sample.
"""

from __future__ import annotations

import copy
import dataclasses
import struct
import zlib

import numpy as np

from ..backend import emit
from ..compiler import TrainingModel
from ..errors import TinyTrainError
from ..runtime.trainer import Trainer

MAGIC = b"TTFU"
VERSION = 1
KIND_VALUES = 1
TYPES = {1: np.dtype(np.int8), 2: np.dtype(np.int32)}
_TYPE_IDS = {dtype: type_id for type_id, dtype in TYPES.items()}
_HEADER = struct.Struct("<4sHHII")
_FIELDS = struct.Struct("<III")
_TENSOR = struct.Struct("<IIII")
# TT_SGD saturates int8 weights to [-127, 127] (symmetric, as TFLite quantizes them): -128 never comes from a device.
INT8_LOWEST = -127


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One trained tensor of a training model: what every update must carry for it. TT_SGD updates
    channels [0, trained) along the quantized axis; only those travel."""

    tensor: int  # index of its RAM variable in the training model
    name: str
    shape: tuple[int, ...]  # the whole variable
    dtype: np.dtype
    axis: int
    trained: int  # channels along `axis` that train
    scales: np.ndarray  # float32: the trained channels' scales, or one per-tensor scale

    @property
    def count(self) -> int:
        """Values an update carries."""
        return int(np.prod(self.shape)) // self.shape[self.axis] * self.trained

    def take(self, variable: np.ndarray) -> np.ndarray:
        """The trained values of a whole variable, flat in the payload's order ([outer, trained, inner])."""
        return np.take(np.asarray(variable).reshape(self.shape), np.arange(self.trained), axis=self.axis).ravel()

    def put(self, variable: np.ndarray, values: np.ndarray) -> np.ndarray:
        """A copy of the whole variable with its trained channels set from flat payload values."""
        result = np.array(variable, self.dtype).reshape(self.shape)
        index = [slice(None)] * len(self.shape)
        index[self.axis] = slice(0, self.trained)
        trained_shape = list(self.shape)
        trained_shape[self.axis] = self.trained
        result[tuple(index)] = np.asarray(values).reshape(trained_shape)
        return result

    def element_scales(self) -> np.ndarray:
        """The scale of every carried value, flat, float64."""
        if self.scales.size == 1:
            return np.full(self.count, float(self.scales[0]))
        shape = [1] * len(self.shape)
        shape[self.axis] = self.trained
        trained_shape = list(self.shape)
        trained_shape[self.axis] = self.trained
        return np.broadcast_to(self.scales.astype(np.float64).reshape(shape), trained_shape).ravel()

    @property
    def limits(self) -> tuple[int, int]:
        info = np.iinfo(self.dtype)
        return (INT8_LOWEST if self.dtype == np.int8 else info.min), info.max


@dataclasses.dataclass(frozen=True)
class Update:
    round: int
    num_samples: int  # samples the device trained on (its FedAvg weight); 0 for the global values
    values: list[np.ndarray]  # flat, one per TensorSpec, in order


def specs(trainer: Trainer) -> list[TensorSpec]:
    """The trained tensors of a training model, in TT_INIT_VARIABLES order (as the firmware lists them)."""
    result = []
    for parameter in trainer.parameters:
        tensor = trainer.graph.tensors[parameter.variable]
        if tensor.dtype not in _TYPE_IDS or tensor.quantization is None:
            raise TinyTrainError(f"trained tensor {tensor.name!r} is {tensor.dtype.name}: fleet updates carry int8, int32")
        axis = tensor.quantization.axis
        trained = parameter.trained_shape[axis]
        scales = np.asarray(tensor.quantization.scale, np.float32).ravel()
        scales = scales if scales.size == 1 else scales[:trained]
        result.append(TensorSpec(parameter.variable, tensor.name, tuple(tensor.shape), tensor.dtype, axis, trained, scales))
    return result


def payload_size(tensor_specs: list[TensorSpec]) -> int:
    """Bytes of an update for these tensors: what a device uploads (and downloads) per round."""
    return (
        _HEADER.size
        + _FIELDS.size
        + sum(_TENSOR.size + 4 * s.scales.size + _padded(s.count * s.dtype.itemsize) for s in tensor_specs)
    )


def _padded(size: int) -> int:
    return (size + 3) & ~3


def write_update(update: Update, tensor_specs: list[TensorSpec]) -> bytes:
    """The blob of `update`, whose values must fit their tensors' types and ranges."""
    if len(update.values) != len(tensor_specs):
        raise TinyTrainError(f"update has {len(update.values)} tensors, the model trains {len(tensor_specs)}")
    body = [_FIELDS.pack(update.round, update.num_samples, len(tensor_specs))]
    for spec, values in zip(tensor_specs, update.values, strict=True):
        values = np.asarray(values)
        low, high = spec.limits
        if values.size != spec.count or values.size and (values.min() < low or values.max() > high):
            raise TinyTrainError(f"values for {spec.name!r} must be {spec.count} {spec.dtype.name} in [{low}, {high}]")
        data = values.astype(spec.dtype.newbyteorder("<")).tobytes()
        body += [
            _TENSOR.pack(spec.tensor, _TYPE_IDS[spec.dtype], spec.count, spec.scales.size),
            spec.scales.astype("<f4").tobytes(),
            data + bytes(_padded(len(data)) - len(data)),
        ]
    payload = b"".join(body)
    return _HEADER.pack(MAGIC, VERSION, KIND_VALUES, len(payload), zlib.crc32(payload)) + payload


def read_update(blob: bytes, tensor_specs: list[TensorSpec]) -> Update:
    """Parses and checks a blob against the model's trained tensors; every problem is one TinyTrainError."""
    blob = bytes(blob)
    if len(blob) < _HEADER.size:
        raise TinyTrainError(f"fleet update is truncated ({len(blob)} bytes, the header alone is {_HEADER.size})")
    magic, version, kind, length, crc = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise TinyTrainError(f"not a fleet update (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise TinyTrainError(f"fleet update has format version {version}, this tinytrain_tflm reads {VERSION}")
    if kind != KIND_VALUES:
        raise TinyTrainError(f"fleet update has kind {kind}, expected {KIND_VALUES} (values)")
    payload = blob[_HEADER.size :]
    if length != len(payload):
        raise TinyTrainError(f"fleet update declares a {length}-byte payload but carries {len(payload)} bytes")
    if zlib.crc32(payload) != crc:
        raise TinyTrainError("fleet update is corrupt (CRC-32 mismatch)")
    expected = payload_size(tensor_specs) - _HEADER.size
    if length != expected:
        raise TinyTrainError(f"fleet update has a {length}-byte payload, this model's trained tensors take {expected}")
    round_, num_samples, count = _FIELDS.unpack_from(payload)
    if count != len(tensor_specs):
        raise TinyTrainError(f"fleet update has {count} tensors, the model trains {len(tensor_specs)}")
    offset, values = _FIELDS.size, []
    for spec in tensor_specs:
        header = _TENSOR.unpack_from(payload, offset)
        if header != (spec.tensor, _TYPE_IDS[spec.dtype], spec.count, spec.scales.size):
            raise TinyTrainError(
                f"fleet update tensor {len(values)} is (index, type, count, scales) {header}, "
                f"the model's {spec.name!r} is {(spec.tensor, _TYPE_IDS[spec.dtype], spec.count, spec.scales.size)}"
            )
        offset += _TENSOR.size
        scales = np.frombuffer(payload, "<f4", spec.scales.size, offset)
        if scales.tobytes() != spec.scales.astype("<f4").tobytes():
            raise TinyTrainError(f"fleet update carries other scales for {spec.name!r} than the model's fixed ones")
        offset += 4 * spec.scales.size
        data = np.frombuffer(payload, spec.dtype.newbyteorder("<"), spec.count, offset).astype(spec.dtype)
        if spec.dtype == np.int8 and data.size and data.min() < INT8_LOWEST:
            raise TinyTrainError(f"fleet update holds an int8 weight of -128 in {spec.name!r}, outside the symmetric range")
        offset += _padded(spec.count * spec.dtype.itemsize)
        values.append(data)
    return Update(round_, num_samples, values)


def layout_text(tensor_specs: list[TensorSpec]) -> str:
    """The trained tensors as the device program (examples/cpp/fleet_device.cc) reads them: the count,
    then per tensor "index type outer channels trained inner"."""
    lines = [str(len(tensor_specs))]
    for spec in tensor_specs:
        outer = int(np.prod(spec.shape[: spec.axis]))
        inner = int(np.prod(spec.shape[spec.axis + 1 :]))
        lines.append(f"{spec.tensor} {_TYPE_IDS[spec.dtype]} {outer} {spec.shape[spec.axis]} {spec.trained} {inner}")
    return "\n".join(lines) + "\n"


def current_values(trainer: Trainer) -> list[np.ndarray]:
    """The trainer's trained values now (trained channels only, flat), in specs() order."""
    values = trainer.tensor_values()
    return [spec.take(values[p.name]) for p, spec in zip(trainer.parameters, specs(trainer), strict=True)]


def with_values(trainer: Trainer, values: list[np.ndarray]) -> TrainingModel:
    """The trainer's training model starting from `values` (the host's way to load the fleet's global
    values; a device writes them into its RAM variables with tt_fleet_update_apply instead)."""
    graph = copy.deepcopy(trainer.graph)
    for parameter, spec, flat in zip(trainer.parameters, specs(trainer), values, strict=True):
        graph.tensors[parameter.source].data = spec.put(graph.tensors[parameter.source].data, flat)
    return TrainingModel(emit.emit_model(graph))

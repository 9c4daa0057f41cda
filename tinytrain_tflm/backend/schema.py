"""Encode and decode the versioned blobs the kernels read (schema/README.md).

Layout, little-endian: magic "TTRN", u16 schema version, u16 blob id, u32
payload length, u32 CRC-32 of the payload, then each field of the blob's
schema entry in order as a 4-byte int32 or float32.
"""

from __future__ import annotations

import math
import struct
import zlib

from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ..errors import TinyTrainError
from ..frontend import ir, verify
from . import schema_generated as generated

_HEADER = struct.Struct("<4sHHII")
# The loss ops: the one op of a training model between its forward and its backward pass.
LOSS_OPS = frozenset({generated.SOFTMAX_CROSS_ENTROPY, generated.BINARY_CROSS_ENTROPY, generated.MEAN_SQUARED_ERROR})
_FIELD_FORMATS = {"int32": "i", "float32": "f"}

# The custom convolutions that stand for builtin ones with their requantization in the model
# (tinytrain_tflm.passes.requantization); their option blobs decode back into the builtin options.
LOWERED = {"CONV_2D": generated.CONV_2D, "DEPTHWISE_CONV_2D": generated.DEPTHWISE_CONV_2D}
RESTORED = {custom: builtin for builtin, custom in LOWERED.items()}


def _entry(name: str) -> dict:
    try:
        return generated.BLOBS[name]
    except KeyError:
        raise TinyTrainError(f"unknown schema blob {name!r}; known: {sorted(generated.BLOBS)}") from None


def _payload_struct(entry: dict) -> struct.Struct:
    return struct.Struct("<" + "".join(_FIELD_FORMATS[f["type"]] for f in entry["fields"]))


def encode_blob(name: str, **values: float) -> bytes:
    """Serializes the schema blob `name` (e.g. "SOFTMAX_CROSS_ENTROPY") from field values."""
    entry = _entry(name)
    fields = [f["name"] for f in entry["fields"]]
    if set(values) != set(fields):
        raise TinyTrainError(f"{name} takes fields {fields}, got {sorted(values)}")
    for field in entry["fields"]:
        value = values[field["name"]]
        if field["type"] == "int32" and not (isinstance(value, int) and -(2**31) <= value < 2**31):
            raise TinyTrainError(f"{name}.{field['name']} must be an int32, got {value!r}")
        if field["type"] == "float32" and not math.isfinite(value):
            raise TinyTrainError(f"{name}.{field['name']} must be a finite float, got {value!r}")
    payload = _payload_struct(entry).pack(*(values[f] for f in fields))
    header = _HEADER.pack(generated.MAGIC, generated.SCHEMA_VERSION, entry["id"], len(payload), zlib.crc32(payload))
    return header + payload


def decode_blob(name: str, blob: bytes) -> dict[str, float]:
    """Parses a blob written by encode_blob, checking everything the C reader checks."""
    entry = _entry(name)
    if len(blob) < _HEADER.size:
        raise TinyTrainError(f"{name} blob is truncated ({len(blob)} bytes)")
    magic, version, blob_id, length, crc = _HEADER.unpack_from(blob)
    if magic != generated.MAGIC:
        raise TinyTrainError(f"{name} blob has no tinytrain magic")
    if version != generated.SCHEMA_VERSION:
        raise TinyTrainError(f"{name} blob has schema version {version}, this tinytrain_tflm reads {generated.SCHEMA_VERSION}")
    if blob_id != entry["id"]:
        raise TinyTrainError(f"blob id {blob_id} is not {name} ({entry['id']})")
    payload = blob[_HEADER.size :]
    payload_struct = _payload_struct(entry)
    if length != len(payload) or length != payload_struct.size:
        raise TinyTrainError(f"{name} blob has a payload of {len(payload)} bytes, expected {payload_struct.size}")
    if zlib.crc32(payload) != crc:
        raise TinyTrainError(f"{name} blob is corrupt (CRC-32 mismatch)")
    return dict(zip((f["name"] for f in entry["fields"]), payload_struct.unpack(payload), strict=True))


def builtin_options(op: ir.Op) -> tfl.Conv2DOptionsT | tfl.DepthwiseConv2DOptionsT:
    """The builtin options a TT_CONV_2D or TT_DEPTHWISE_CONV_2D op was lowered from."""
    kind = RESTORED[op.kind]
    fields = decode_blob(kind, op.custom_options)
    options = tfl.Conv2DOptionsT() if kind == "CONV_2D" else tfl.DepthwiseConv2DOptionsT()
    options.padding, options.strideH, options.strideW = fields["padding"], fields["stride_h"], fields["stride_w"]
    options.dilationHFactor, options.dilationWFactor = fields["dilation_h"], fields["dilation_w"]
    options.fusedActivationFunction = fields["activation"]
    if kind == "DEPTHWISE_CONV_2D":
        options.depthMultiplier = fields["depth_multiplier"]
    return options


_BLOB_OF_OP = {entry["custom_name"]: name for name, entry in generated.BLOBS.items() if entry.get("custom_name")}
# Option fields of tinytrain ops that size a window or count channels, and the smallest value each may take.
_WINDOW_FIELDS = {"stride": 1, "dilation": 1, "filter": 1, "pad": 0, "depth_multiplier": 1}


def check_op_options(graph: ir.Graph) -> None:
    """Every tinytrain op's options decode (magic, version, CRC) and its window fields fit its tensors
    (tinytrain_tflm.frontend.verify.window_limit), so no pass loops over a 2^31 stride; TT_INIT_VARIABLES
    names as many pairs as it has inputs. Raises TinyTrainError naming the op. compile and every
    interpreter run it after read.read_graph's checks."""
    for position, op in enumerate(graph.ops):
        if not op.custom or op.kind not in _BLOB_OF_OP:
            continue
        where = f"op {position} ({op.kind})"
        try:
            options = decode_blob(_BLOB_OF_OP[op.kind], op.custom_options or b"")
        except TinyTrainError as error:
            raise TinyTrainError(f"{where}: {error}") from None
        largest = max((max(graph.tensors[t].shape, default=1) for t in op.inputs + op.outputs if t >= 0), default=1)
        for name, value in options.items():
            low = next((low for prefix, low in _WINDOW_FIELDS.items() if name.startswith(prefix)), None)
            if low is not None:
                verify.in_range(where, name, int(value), low, verify.window_limit(largest))
        if op.kind == generated.INIT_VARIABLES and 2 * options["num_pairs"] != len(op.inputs):
            raise TinyTrainError(f"{where}: options name {options['num_pairs']} pairs for {len(op.inputs)} inputs")

"""Read a .tflite flatbuffer into the graph IR, rejecting malformed files.

TFLM trusts the flatbuffer it is given, so every index and size that could
send it out of bounds is checked here first. Only subgraph 0 is read (TFLM
runs only that one); SignatureDefs are dropped (TFLM ignores them).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ..errors import TinyTrainError
from . import ir, verify

# TFLite TensorType -> NumPy dtype, for the types a TFLM model can hold.
DTYPES = {
    tfl.TensorType.FLOAT32: np.dtype(np.float32),
    tfl.TensorType.INT32: np.dtype(np.int32),
    tfl.TensorType.UINT8: np.dtype(np.uint8),
    tfl.TensorType.INT64: np.dtype(np.int64),
    tfl.TensorType.BOOL: np.dtype(np.bool_),
    tfl.TensorType.INT16: np.dtype(np.int16),
    tfl.TensorType.INT8: np.dtype(np.int8),
}
TENSOR_TYPE_NAMES = {v: k for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
BUILTIN_NAMES = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}


def as_text(value: bytes | str | None) -> str:
    """A flatbuffer string field as text: the unpacked model gives bytes, or None where the field is absent."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


def parse_flatbuffer(data: bytes) -> tfl.ModelT:
    """Unpacks a TFLite model, raising TinyTrainError for anything malformed. The result is shared
    between callers passing the same bytes (unpacking is the slow part of reading a model, and one
    Trainer reads its model several times): copy it before changing it."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TinyTrainError(f"a model is bytes, got {type(data).__name__}")
    return _parse_flatbuffer(bytes(data))


@functools.lru_cache(maxsize=8)
def _parse_flatbuffer(data: bytes) -> tfl.ModelT:
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TinyTrainError("not a TFLite model: no TFL3 file identifier")
    try:
        model = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(data, 0))
    except Exception as error:  # any failure inside the flatbuffer reader means corrupt bytes
        raise TinyTrainError(f"malformed TFLite model: {type(error).__name__}: {error}") from None
    _check_indices(model)
    return model


def _check_indices(model: tfl.ModelT) -> None:
    if model.version != 3:
        raise TinyTrainError(f"TFLite schema version {model.version} is not supported (expected 3)")
    if not model.subgraphs:
        raise TinyTrainError("malformed TFLite model: no subgraph")
    if model.buffers is None:
        raise TinyTrainError("malformed TFLite model: no buffer table")
    buffers = model.buffers
    codes = model.operatorCodes or []
    for metadata in model.metadata or []:
        if not 0 <= metadata.buffer < len(buffers):
            raise TinyTrainError(
                f"malformed TFLite model: metadata {as_text(metadata.name)!r} names missing buffer {metadata.buffer}"
            )
    for s, subgraph in enumerate(model.subgraphs):
        # TFLM dereferences these vectors without a null check.
        missing = [name for name in ("tensors", "operators", "inputs", "outputs") if getattr(subgraph, name) is None]
        if missing:
            raise TinyTrainError(f"malformed TFLite model: subgraph {s} has no {' / '.join(missing)}")
        tensors = subgraph.tensors
        for t, tensor in enumerate(tensors):
            where = f"subgraph {s} tensor {t} ({as_text(tensor.name)!r})"
            if not 0 <= tensor.buffer < len(buffers):
                raise TinyTrainError(f"malformed TFLite model: {where} names missing buffer {tensor.buffer}")
            data = buffers[tensor.buffer].data
            if data is not None and len(data) and tensor.type in DTYPES:
                expected = verify.tensor_byte_count(_shape(tensor), DTYPES[tensor.type].itemsize)
                if len(data) != expected:
                    raise TinyTrainError(
                        f"malformed TFLite model: {where} has {len(data)} data bytes, its shape needs {expected}"
                    )
        for io in (subgraph.inputs, subgraph.outputs):
            for index in io:
                if not 0 <= index < len(tensors):
                    raise TinyTrainError(f"malformed TFLite model: subgraph {s} input/output {index} is not a tensor")
        for o, op in enumerate(subgraph.operators):
            if not 0 <= op.opcodeIndex < len(codes):
                raise TinyTrainError(f"malformed TFLite model: subgraph {s} op {o} has unknown opcode index {op.opcodeIndex}")
            for index in list(op.inputs if op.inputs is not None else []) + list(op.outputs if op.outputs is not None else []):
                if not -1 <= index < len(tensors):
                    raise TinyTrainError(
                        f"malformed TFLite model: subgraph {s} op {o} refers to tensor {index}, which does not exist"
                    )


def _shape(tensor: tfl.TensorT) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape) if tensor.shape is not None else ()


def _quantization(tensor: tfl.TensorT) -> ir.Quantization | None:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    # Copies (np.array): the parsed model is shared (parse_flatbuffer), the passes edit the IR.
    zero_point = np.array(q.zeroPoint if q.zeroPoint is not None else np.zeros(len(q.scale)), np.int64)
    return ir.Quantization(np.array(q.scale, np.float32), zero_point, int(q.quantizedDimension))


def op_kind(code: tfl.OperatorCodeT) -> tuple[str, bool]:
    """(name, is_custom) of an operator code."""
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == tfl.BuiltinOperator.CUSTOM:
        return as_text(code.customCode), True
    return BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"), False


def read_graph(data: bytes, check: bool = True) -> ir.Graph:
    """Subgraph 0 of a TFLite model as IR, with constants as NumPy arrays. check=False skips
    tinytrain_tflm.frontend.verify's checks, for callers that hand TFLM a model unverified on purpose."""
    model = parse_flatbuffer(data)
    subgraph = model.subgraphs[0]
    graph = ir.Graph(description=as_text(model.description))
    for metadata in model.metadata or []:
        buffer = model.buffers[metadata.buffer].data
        graph.metadata[as_text(metadata.name)] = bytes(buffer) if buffer is not None else b""
    for t, tensor in enumerate(subgraph.tensors or []):
        if tensor.type not in DTYPES:
            name = TENSOR_TYPE_NAMES.get(tensor.type, str(tensor.type))
            raise TinyTrainError(f"tensor {t} ({as_text(tensor.name)!r}) has type {name}, which TFLM training does not support")
        buffer = model.buffers[tensor.buffer].data
        shape = _shape(tensor)
        value = None
        if buffer is not None and len(buffer):
            value = np.frombuffer(bytes(buffer), DTYPES[tensor.type]).reshape(shape).copy()
        graph.tensors.append(
            ir.Tensor(as_text(tensor.name), shape, DTYPES[tensor.type], _quantization(tensor), value, bool(tensor.isVariable))
        )
    for op in subgraph.operators or []:
        kind, custom = op_kind(model.operatorCodes[op.opcodeIndex])
        custom_options = bytes(op.customOptions) if op.customOptions is not None else None
        graph.ops.append(
            ir.Op(
                kind,
                [int(i) for i in (op.inputs if op.inputs is not None else [])],
                [int(i) for i in (op.outputs if op.outputs is not None else [])],
                custom=custom,
                builtin_options=copy.deepcopy(op.builtinOptions),  # the parsed model is shared
                custom_options=custom_options,
                version=model.operatorCodes[op.opcodeIndex].version,
            )
        )
    graph.inputs = [int(i) for i in (subgraph.inputs if subgraph.inputs is not None else [])]
    graph.outputs = [int(i) for i in (subgraph.outputs if subgraph.outputs is not None else [])]
    if check:
        verify.verify_graph(graph)
    return graph

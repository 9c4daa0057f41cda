"""Emit the graph IR as a .tflite flatbuffer that stock TFLM can run."""

from __future__ import annotations

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ..frontend import ir
from ..frontend.read import DTYPES

TENSOR_TYPES = {dtype: code for code, dtype in DTYPES.items()}
# Opcodes above this are stored only in the 32-bit builtin_code field.
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127
# TFLM reads constants in place, so int32 and float32 data must be aligned on
# a device; the schema asks for 16 (force_align), which the Python packer ignores.
BUFFER_ALIGNMENT = 16


class _AlignedBufferT(tfl.BufferT):
    def Pack(self, builder: flatbuffers.Builder) -> int:
        data_offset = None
        if self.data is not None:
            raw = self.data.tobytes()
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data_offset = builder.EndVector()
        tfl.BufferStart(builder)
        if data_offset is not None:
            tfl.BufferAddData(builder, data_offset)
        return tfl.BufferEnd(builder)


def _buffer(data: bytes | None) -> _AlignedBufferT:
    buffer = _AlignedBufferT()
    buffer.data = None if data is None else np.frombuffer(data, np.uint8)
    return buffer


def _opcode(op: ir.Op) -> tfl.OperatorCodeT:
    code = tfl.OperatorCodeT()
    code.builtinCode = tfl.BuiltinOperator.CUSTOM if op.custom else getattr(tfl.BuiltinOperator, op.kind)
    code.deprecatedBuiltinCode = min(code.builtinCode, _PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.customCode = op.kind if op.custom else None
    code.version = op.version
    return code


def _tensor(tensor: ir.Tensor, buffer_index: int) -> tfl.TensorT:
    out = tfl.TensorT()
    out.name = tensor.name
    out.shape = np.asarray(tensor.shape, np.int32)
    out.type = TENSOR_TYPES[np.dtype(tensor.dtype)]
    out.buffer = buffer_index
    out.isVariable = tensor.is_variable
    if tensor.quantization is not None:
        q = tfl.QuantizationParametersT()
        q.scale = np.asarray(tensor.quantization.scale, np.float32)
        q.zeroPoint = np.asarray(tensor.quantization.zero_point, np.int64)
        q.quantizedDimension = tensor.quantization.axis
        out.quantization = q
    return out


def emit_model(graph: ir.Graph) -> bytes:
    """Serializes the graph as a one-subgraph TFLite model (schema version 3)."""
    model = tfl.ModelT()
    model.version = 3
    model.description = graph.description
    model.buffers = [_buffer(None)]  # buffer 0 is the empty sentinel by convention
    model.operatorCodes = []
    code_index: dict[tuple[str, bool, int], int] = {}

    subgraph = tfl.SubGraphT()
    subgraph.tensors = []
    for tensor in graph.tensors:
        buffer_index = 0
        if tensor.data is not None:
            model.buffers.append(_buffer(np.ascontiguousarray(tensor.data, tensor.dtype).tobytes()))
            buffer_index = len(model.buffers) - 1
        subgraph.tensors.append(_tensor(tensor, buffer_index))
    subgraph.operators = []
    for op in graph.ops:
        key = (op.kind, op.custom, op.version)
        if key not in code_index:
            code_index[key] = len(model.operatorCodes)
            model.operatorCodes.append(_opcode(op))
        out = tfl.OperatorT()
        out.opcodeIndex = code_index[key]
        out.inputs = np.asarray(op.inputs, np.int32)
        out.outputs = np.asarray(op.outputs, np.int32)
        if op.builtin_options is not None:
            out.builtinOptionsType = getattr(tfl.BuiltinOptions, type(op.builtin_options).__name__.removesuffix("T"))
            out.builtinOptions = op.builtin_options
        if op.custom_options is not None:
            out.customOptions = np.frombuffer(op.custom_options, np.uint8)
        subgraph.operators.append(out)
    subgraph.inputs = np.asarray(graph.inputs, np.int32)
    subgraph.outputs = np.asarray(graph.outputs, np.int32)
    subgraph.name = "main"
    model.subgraphs = [subgraph]

    model.metadata = []
    for name, blob in graph.metadata.items():
        model.buffers.append(_buffer(blob))
        metadata = tfl.MetadataT()
        metadata.name = name
        metadata.buffer = len(model.buffers) - 1
        model.metadata.append(metadata)

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())

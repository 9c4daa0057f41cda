"""Float edges of a converted model. The TFLite converter's default for a full-integer model keeps a float32
input and output: a QUANTIZE right after the input and a DEQUANTIZE right before the output. Training runs
on the int8 tensors between them, so strip_float_edges removes the two ops and records them in the model's
metadata; restore_float_edges puts them back on the exported inference model, which then takes and
returns float32 as the user's original did."""

from __future__ import annotations

import json

import numpy as np

from . import ir

FLOAT_EDGES = "tinytrain_float_edges"  # metadata: JSON {"input": float tensor name, "output": ...}, either optional


def _is_edge(graph: ir.Graph, op: ir.Op, kind: str, source: type, target: type) -> bool:
    return (
        op.kind == kind
        and not op.custom
        and graph.tensors[op.inputs[0]].dtype == source
        and graph.tensors[op.outputs[0]].dtype == target
    )


def strip_float_edges(graph: ir.Graph) -> ir.Graph:
    """The graph without a float32 -> int8 QUANTIZE at its one input and an int8 -> float32 DEQUANTIZE at its
    one output (each only if it is there and the only reader or writer of that edge); the graph itself when
    there is neither."""
    edges = {}
    if len(graph.inputs) == 1:
        readers = [op for op in graph.ops if graph.inputs[0] in op.inputs]
        if len(readers) == 1 and _is_edge(graph, readers[0], "QUANTIZE", np.float32, np.int8):
            edges["input"] = graph.tensors[graph.inputs[0]].name
            graph.ops.remove(readers[0])
            graph.inputs = [readers[0].outputs[0]]
    if len(graph.outputs) == 1:
        writer = next((op for op in graph.ops if graph.outputs[0] in op.outputs), None)
        if writer is not None and _is_edge(graph, writer, "DEQUANTIZE", np.int8, np.float32):
            edges["output"] = graph.tensors[graph.outputs[0]].name
            graph.ops.remove(writer)
            graph.outputs = [writer.inputs[0]]
    if not edges:
        return graph
    graph.metadata[FLOAT_EDGES] = json.dumps(edges).encode()
    return graph.compact()[0]


def restore_float_edges(graph: ir.Graph) -> None:
    """Puts back, in place, the float input and output that strip_float_edges recorded (and drops the record)."""
    if FLOAT_EDGES not in graph.metadata:
        return
    edges = json.loads(graph.metadata.pop(FLOAT_EDGES))
    if "input" in edges:
        quantized = graph.inputs[0]
        shape = graph.tensors[quantized].shape
        real = graph.add_tensor(ir.Tensor(edges["input"], shape, np.dtype(np.float32)))
        graph.ops.insert(0, ir.Op("QUANTIZE", [real], [quantized]))
        graph.inputs = [real]
    if "output" in edges:
        quantized = graph.outputs[0]
        shape = graph.tensors[quantized].shape
        real = graph.add_tensor(ir.Tensor(edges["output"], shape, np.dtype(np.float32)))
        graph.ops.append(ir.Op("DEQUANTIZE", [quantized], [real]))
        graph.outputs = [real]

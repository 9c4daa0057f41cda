"""Graph IR: a dataclass layer over one TFLite subgraph, edited by the passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np


@dataclasses.dataclass
class Quantization:
    """Affine quantization: real = scale * (q - zero_point), per channel along `axis` when several."""

    scale: np.ndarray  # float32 [1] or [channels]
    zero_point: np.ndarray  # int64, same length as scale
    axis: int = 0

    def _broadcast(self, values: np.ndarray, ndim: int) -> np.ndarray:
        if values.size == 1:
            return values.reshape(())
        shape = [1] * ndim
        shape[self.axis] = values.size
        return values.reshape(shape)

    def quantize(self, real: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Nearest representable values of `dtype`, saturated to its range."""
        real = np.asarray(real, np.float64)
        info = np.iinfo(dtype)
        q = np.round(real / self._broadcast(self.scale, real.ndim)) + self._broadcast(self.zero_point, real.ndim)
        return np.clip(q, info.min, info.max).astype(dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q)
        return (q.astype(np.float64) - self._broadcast(self.zero_point, q.ndim)) * self._broadcast(self.scale, q.ndim)


# Shape of an int8 gradient's scale tensor when its writer keeps a history across steps (delayed
# scaling): the scale, then tt_grad_history's gain and saturation count (kernels/core/tt_types.h).
GRAD_SCALE_WITH_HISTORY = (3,)


def scale_histories(graph: Graph) -> set[int]:
    """The int8 gradients' scales with their history: the only variables an op writes as an output."""
    return {t for op in graph.ops for t in op.outputs if t >= 0 and graph.tensors[t].is_variable}


@dataclasses.dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    quantization: Quantization | None = None
    data: np.ndarray | None = None  # constant value; None for run-time tensors
    is_variable: bool = False


@dataclasses.dataclass
class Op:
    kind: str  # builtin operator name ("CONV_2D") or custom op name ("TT_SOFTMAX_CROSS_ENTROPY")
    inputs: list[int]  # tensor indices, -1 for an omitted optional input
    outputs: list[int]
    custom: bool = False
    builtin_options: Any = None  # object-API options table of the TFLite schema, e.g. Conv2DOptionsT
    custom_options: bytes | None = None
    version: int = 1


@dataclasses.dataclass
class Graph:
    tensors: list[Tensor] = dataclasses.field(default_factory=list)
    ops: list[Op] = dataclasses.field(default_factory=list)
    inputs: list[int] = dataclasses.field(default_factory=list)
    outputs: list[int] = dataclasses.field(default_factory=list)
    metadata: dict[str, bytes] = dataclasses.field(default_factory=dict)
    description: str = ""

    def add_tensor(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def compact(self, keep: Iterable[int] = ()) -> tuple[Graph, dict[int, int]]:
        """This graph without the tensors no op, input or output refers to (nor `keep` names: tensors only
        metadata refers to), and the map old index -> new index."""
        referred = {t for op in self.ops for t in op.inputs + op.outputs if t >= 0}
        used = sorted(referred | set(self.inputs) | set(self.outputs) | set(keep))
        renumber = {old: new for new, old in enumerate(used)}
        ops = [
            dataclasses.replace(op, inputs=[renumber.get(t, -1) for t in op.inputs], outputs=[renumber[t] for t in op.outputs])
            for op in self.ops
        ]
        graph = Graph(
            [self.tensors[t] for t in used],
            ops,
            [renumber[t] for t in self.inputs],
            [renumber[t] for t in self.outputs],
            dict(self.metadata),
            self.description,
        )
        return graph, renumber

"""Reverse-mode autodiff over the graph IR, emitting TFLM ops.

The engine owns everything rules should not think about: which tensors need a
gradient at all (pruning), summing the gradients of a tensor read twice,
checking each rule's answer, and placing each parameter's optimizer update as
early as is correct: right after its gradient is final and after the last op
that still reads the parameter's old value.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl

from ...backend import schema, schema_generated
from ...errors import TinyTrainError
from ...frontend import ir
from ..loss import GRADIENT_DTYPES
from .rules import GRAD_RULES, NON_DIFFERENTIABLE


@dataclasses.dataclass(frozen=True)
class Grad:
    """A gradient operand: its values and, for int8 gradients, its float32 [1] scale tensor."""

    data: int
    scale: int | None = None


class BackwardBuilder:
    """What a gradient rule may do: create gradient tensors and emit backward ops."""

    def __init__(self, graph: ir.Graph, gradient_dtype: str, control: int, trainable: dict[int, int], learning_rate: int):
        if gradient_dtype not in GRADIENT_DTYPES:
            raise TinyTrainError(f"gradient must be one of {sorted(GRADIENT_DTYPES)}, got {gradient_dtype!r}")
        self.graph = graph
        self.gradient_dtype = gradient_dtype
        self.control = control
        self.learning_rate = learning_rate  # the run-time learning-rate input the optimizer reads
        self.trainable = trainable  # parameter tensor -> leading output channels to update
        self.ops: list[ir.Op] = []
        self._names: Counter[str] = Counter()

    def _add(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        self._names[name] += 1
        unique = name if self._names[name] == 1 else f"{name}_{self._names[name]}"
        return self.graph.add_tensor(ir.Tensor(unique, tuple(shape), np.dtype(dtype)))

    def new_grad(self, like: int, shape: Iterable[int] | None = None, scale_from: Grad | None = None) -> Grad:
        """A new gradient tensor for forward tensor `like`, of its shape unless `shape` is given.
        With `scale_from` an int8 gradient reuses that gradient's scale (a reshape or slice of it)."""
        tensor = self.graph.tensors[like]
        shape = tensor.shape if shape is None else tuple(shape)
        data = self._add(f"{tensor.name}/grad", shape, GRADIENT_DTYPES[self.gradient_dtype])
        if self.gradient_dtype == "float32":
            return Grad(data)
        if scale_from is not None:
            return Grad(data, scale_from.scale)
        return Grad(data, self._add(f"{tensor.name}/grad_scale", (1,), np.dtype(np.float32)))

    def constant(self, name: str, values: np.ndarray) -> int:
        values = np.asarray(values)
        return self.graph.add_tensor(ir.Tensor(name, values.shape, values.dtype, data=values))

    def emit(self, kind: str, inputs: list, outputs: list, custom_options: bytes | None = None, builtin_options=None) -> None:
        """Appends an op; a Grad input expands to (data, scale or -1), a Grad output to data (and its scale)."""

        def expand(operands: list, as_input: bool) -> list[int]:
            flat = []
            for operand in operands:
                if isinstance(operand, Grad):
                    flat.append(operand.data)
                    if operand.scale is not None or as_input:
                        flat.append(-1 if operand.scale is None else operand.scale)
                else:
                    flat.append(operand)
            return flat

        custom = kind.startswith("TT_")  # our ops; everything else is a TFLM builtin
        self.ops.append(ir.Op(kind, expand(inputs, True), expand(outputs, False), custom, builtin_options, custom_options))

    def grad_op(self, name: str, grads: list[Grad], forward_inputs: list[int], result: Grad, **options: float) -> Grad:
        """Emits the custom op TT_<name>(grads..., forward_inputs..., control) -> result."""
        op_name = schema_generated.BLOBS[name]["custom_name"]
        self.emit(op_name, [*grads, *forward_inputs, self.control], [result], schema.encode_blob(name, **options))
        return result

    def through_activation(self, y: int, activation: int, grad: Grad) -> Grad:
        """Gradient before a fused activation: zero where the forward output y was clamped."""
        if activation == tfl.ActivationFunctionType.NONE:
            return grad
        lower_q, upper_q = activation_bounds(activation, self.graph.tensors[y])
        return self.grad_op("ACTIVATION_GRAD", [grad], [y], self.new_grad(y), lower_q=lower_q, upper_q=upper_q)


ACTIVATION_RANGES = {
    tfl.ActivationFunctionType.RELU: (0.0, None),
    tfl.ActivationFunctionType.RELU6: (0.0, 6.0),
    tfl.ActivationFunctionType.RELU_N1_TO_1: (-1.0, 1.0),
}


def activation_bounds(activation: int, y: ir.Tensor) -> tuple[int, int]:
    """Quantized clamp bounds of an activation on int8 y: the gradient passes where lower_q < y < upper_q."""
    if activation not in ACTIVATION_RANGES:
        names = {v: k for k, v in vars(tfl.ActivationFunctionType).items() if not k.startswith("_")}
        raise TinyTrainError(f"fused activation {names.get(activation, activation)} of {y.name!r} has no gradient rule")
    scale, zero_point = float(y.quantization.scale[0]), int(y.quantization.zero_point[0])
    low, high = ACTIVATION_RANGES[activation]
    # The int8 limits clamp too: a saturated output passes no gradient (clipped straight-through).
    lower_q = max(-128, zero_point + round(low / scale))
    upper_q = 127 if high is None else min(127, zero_point + round(high / scale))
    return lower_q, upper_q


def requires_grad(graph: ir.Graph, forward: list[int], trainable: Iterable[int], prune: bool = True) -> set[int]:
    """Tensors whose gradient some trainable parameter depends on: nothing before them needs backward.
    Without prune, every int8 activation (as an engine that does not prune computes them all; integer
    shape computations have no gradient)."""
    needed = set(trainable)
    if not prune:
        outputs = (t for position in forward for t in graph.ops[position].outputs)
        needed.update(t for t in outputs if graph.tensors[t].dtype == np.int8)
    for position in forward:
        op = graph.ops[position]
        if op.kind not in NON_DIFFERENTIABLE and any(t in needed for t in op.inputs if t >= 0):
            needed.update(op.outputs)
    return needed


def _accumulate(b: BackwardBuilder, tensor: int, grads: list[Grad]) -> Grad:
    total = grads[0]
    for grad in grads[1:]:
        total = b.grad_op("GRAD_ADD", [total, grad], [], b.new_grad(tensor))
    return total


def _place_update(b: BackwardBuilder, parameter: int, grad: Grad, emit_update: Callable) -> None:
    start = len(b.ops)
    emit_update(b, parameter, grad)
    update = b.ops[start:]
    del b.ops[start:]
    # Right after the gradient's producer, but never before an op reading the old parameter.
    last = max(i for i, op in enumerate(b.ops) if grad.data in op.outputs or parameter in op.inputs)
    b.ops[last + 1 : last + 1] = update


def build_backward(
    b: BackwardBuilder,
    forward: list[int],
    output: int,
    output_grad: Grad,
    emit_update: Callable[[BackwardBuilder, int, Grad], None],
    immediate_updates: bool = True,
    prune: bool = True,
) -> None:
    """Emits into b.ops the backward pass of the forward ops `forward` (positions in b.graph.ops)
    from the gradient of `output`, with emit_update(b, parameter, grad) called once per trainable parameter.
    Without immediate_updates every update waits for the end of the backward pass, as in an engine
    without reordering: each parameter gradient then stays live until then (kept to measure the gain).
    Without prune, the gradient of every activation is computed, down to the first op's input (also
    kept to measure the gain)."""
    deferred: list[tuple[int, Grad]] = []
    graph = b.graph
    needed = requires_grad(graph, forward, b.trainable, prune)
    pending: dict[int, list[Grad]] = {output: [output_grad]}
    readers = Counter(t for position in forward for t in set(graph.ops[position].inputs) if t in b.trainable)
    for position in reversed(forward):
        op = graph.ops[position]
        arriving = [t for t in op.outputs if t in pending]
        if not arriving:
            continue
        if len(op.outputs) != 1:
            raise TinyTrainError(
                f"op {position} ({op.kind}) has {len(op.outputs)} outputs; only single-output ops are differentiable"
            )
        grad = _accumulate(b, op.outputs[0], pending.pop(op.outputs[0]))
        needs = tuple(t >= 0 and t in needed for t in op.inputs)
        if not any(needs):
            continue
        rule = None if op.custom else GRAD_RULES.get(op.kind)
        if rule is None:
            raise TinyTrainError(
                f"op {position} ({op.kind}) is on the path to a trainable parameter, but tinytrain has no gradient rule for it; "
                f"supported: {', '.join(sorted(GRAD_RULES))}"
            )
        results = rule(b, op, grad, needs)
        if len(results) != len(op.inputs) or any((r is not None) != n for r, n in zip(results, needs, strict=True)):
            raise AssertionError(f"gradient rule of {op.kind} returned {results} for needs {needs}")
        for tensor, result in zip(op.inputs, results, strict=True):
            if result is not None:
                pending.setdefault(tensor, []).append(result)
        for tensor in set(op.inputs):
            if tensor in b.trainable:
                readers[tensor] -= 1
                if readers[tensor] == 0:
                    grad = _accumulate(b, tensor, pending.pop(tensor))
                    if immediate_updates:
                        _place_update(b, tensor, grad, emit_update)
                    else:
                        deferred.append((tensor, grad))
    for parameter, grad in deferred:
        emit_update(b, parameter, grad)

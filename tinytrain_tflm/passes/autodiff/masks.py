"""Keep 1 bit per element instead of an int8 activation for ReLU/ReLU6 backward."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ...backend import schema, schema_generated
from ...frontend import ir


def use_activation_masks(graph: ir.Graph, forward: list[int], backward: list[ir.Op]) -> dict[int, list[ir.Op]]:
    """Where an ACTIVATION_GRAD is the only backward op reading its forward activation y, makes it
    read a 1-bit mask of y instead, so y's memory is released as soon as the forward pass is done with it.

    Rewrites `backward` in place and returns the ACTIVATION_MASK ops to run right after y's
    producer, keyed by the producer's position in graph.ops.
    """
    readers = Counter(t for op in backward for t in op.inputs)
    producers = {t: position for position in forward for t in graph.ops[position].outputs}
    inserts: dict[int, list[ir.Op]] = {}
    for op in backward:
        y = op.inputs[2] if op.kind == schema_generated.ACTIVATION_GRAD else None
        if y is None or readers[y] != 1 or y not in producers:
            continue
        tensor = graph.tensors[y]
        mask = graph.add_tensor(ir.Tensor(f"{tensor.name}/mask", (math.ceil(math.prod(tensor.shape) / 8),), np.dtype(np.uint8)))
        bounds = schema.decode_blob("ACTIVATION_GRAD", op.custom_options)
        options = schema.encode_blob("ACTIVATION_MASK", **bounds)
        inserts.setdefault(producers[y], []).append(ir.Op(schema_generated.ACTIVATION_MASK, [y], [mask], True, None, options))
        op.inputs[2] = mask
    return inserts

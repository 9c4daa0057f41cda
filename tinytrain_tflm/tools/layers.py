"""The conv-like layers an update scheme names by index, as `tinytrain-tflm layers` and from_keras print them."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..frontend import ir
from ..frontend.convert import keras_to_int8
from ..frontend.read import read_graph
from ..passes.scheme import layer_table


def layers_text(graph: ir.Graph, gradient: str = "float32") -> str:
    """The layer table `tinytrain-tflm layers` and tinytrain_tflm.from_keras print."""
    lines = [f"{'index':>5}  {'op':17} {'weight shape':16} {'params':>9} {'update RAM':>11}  name"]
    for layer, row in layer_table(graph, np.dtype(np.int8 if gradient == "int8" else np.float32).itemsize):
        lines.append(f"{layer.index:>5}  {layer.kind:17} {row.shape:16} {row.params:>9,} {row.update_bytes:>11,}  {row.name}")
    lines.append(
        f"update RAM: RAM copies of weights and bias, and their {gradient} gradients, the whole layer training (estimate)"
    )
    lines.append(
        'schemes name layers by index: update=\'{"bias_last": 2, "weights": {"7": 0.5}}\'; '
        "so do Trainer.gradients()[i] and Trainer.weights()[i]"
    )
    return "\n".join(lines)


def from_keras(model, representative_inputs: Iterable[np.ndarray], show_layers: bool = True) -> bytes:
    """keras_to_int8, then (show_layers) the table of conv-like layers an update scheme names by index."""
    converted = keras_to_int8(model, representative_inputs)
    if show_layers:
        print(layers_text(read_graph(converted)))
    return converted

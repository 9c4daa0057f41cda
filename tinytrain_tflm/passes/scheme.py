"""Sparse-update schemes: which biases, weights and channels of a model train.

A scheme names layers by their index among the model's conv-like layers
(CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) in forward order, 0-based:

    {"bias_last": 22, "weights": {"21": 1, "36": 0.125}}

trains the biases of the last 22 conv-like layers, all output channels of
layer 21's weights and the first 1/8 of layer 36's. "all" trains every weight
and bias; "last" trains the classifier (the last conv-like layer) only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping

from ..errors import TinyTrainError
from ..frontend import ir

CONV_LIKE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
RATIOS = (1 / 8, 1 / 4, 1 / 2, 1.0)


@dataclasses.dataclass(frozen=True)
class Layer:
    """A conv-like layer of the forward graph."""

    index: int  # among conv-like layers
    op: int  # index in graph.ops
    kind: str
    weight: int  # tensor index
    bias: int  # tensor index, -1 when the layer has none
    channels: int  # output channels


@dataclasses.dataclass(frozen=True)
class UpdateScheme:
    bias_last: int = 0
    weights: Mapping[int, float] = dataclasses.field(default_factory=dict)
    all_layers: bool = False

    @classmethod
    def parse(cls, spec: str | Mapping | UpdateScheme) -> UpdateScheme:
        """Accepts "all", "last", a dict, a JSON string of a dict, or a scheme."""
        if isinstance(spec, UpdateScheme):
            return spec
        if spec == "all":
            return cls(all_layers=True)
        if spec == "last":
            return cls(bias_last=1, weights={-1: 1.0})
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError as error:
                raise TinyTrainError(f'update scheme is not "all", "last" or JSON: {error}') from None
        if not isinstance(spec, Mapping):
            raise TinyTrainError(f"update scheme must be a dict, got {type(spec).__name__}")
        unknown = set(spec) - {"bias_last", "weights"}
        if unknown:
            raise TinyTrainError(f"update scheme has unknown keys {sorted(unknown)}; use bias_last and weights")
        bias_last = spec.get("bias_last", 0)
        if not isinstance(bias_last, int) or bias_last < 0:
            raise TinyTrainError(f"bias_last must be a non-negative integer, got {bias_last!r}")
        given = spec.get("weights", {})
        if not isinstance(given, Mapping):
            raise TinyTrainError(f'weights must map layer indices to channel ratios, like {{"7": 0.5}}, got {given!r}')
        weights = {}
        for key, ratio in given.items():
            try:
                layer = int(key)
            except ValueError:
                raise TinyTrainError(f"weights key {key!r} is not a layer index") from None
            if layer < 0:
                raise TinyTrainError(f"weights key {key!r}: layers count from 0 (tinytrain-tflm layers MODEL lists them)")
            if isinstance(ratio, bool) or not isinstance(ratio, int | float):
                raise TinyTrainError(f"channel ratio {ratio!r} of layer {layer} must be a number: 0.125, 0.25, 0.5 or 1")
            if not any(math.isclose(ratio, r) for r in RATIOS):
                raise TinyTrainError(f"channel ratio {ratio!r} of layer {layer} must be one of 1/8, 1/4, 1/2, 1")
            weights[layer] = float(ratio)
        return cls(bias_last=bias_last, weights=weights)

    def resolve(self, layers: list[Layer]) -> dict[int, int]:
        """Trainable parameter tensor -> number of leading output channels to update."""
        if not layers:
            raise TinyTrainError("model has no CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED layer to train")
        count = len(layers)
        if self.all_layers:
            weights = {layer.index: 1.0 for layer in layers}
            bias_last = count
        else:
            weights = {}
            for index, ratio in self.weights.items():
                resolved = index + count if index < 0 else index
                if not 0 <= resolved < count:
                    raise TinyTrainError(
                        f"update scheme names layer {index}, but the model has {count} conv-like layers (0 to {count - 1})"
                    )
                weights[resolved] = ratio
            bias_last = self.bias_last
            if bias_last > count:
                raise TinyTrainError(f"bias_last is {bias_last}, but the model has only {count} conv-like layers")
        trainable = {}
        for layer in layers:
            if layer.index in weights:
                trainable[layer.weight] = max(1, math.ceil(weights[layer.index] * layer.channels))
            if layer.index >= count - bias_last:
                trainable[layer.bias] = layer.channels
        if not trainable:
            raise TinyTrainError("update scheme trains nothing")
        return trainable


def conv_like_layers(graph: ir.Graph) -> list[Layer]:
    """The model's conv-like layers in forward order; a missing bias shows as -1."""
    layers = []
    for position, op in enumerate(graph.ops):
        if op.custom or op.kind not in CONV_LIKE:
            continue
        weight = op.inputs[1]
        bias = op.inputs[2] if len(op.inputs) > 2 else -1
        channel_axis = 3 if op.kind == "DEPTHWISE_CONV_2D" else 0
        channels = graph.tensors[weight].shape[channel_axis]
        layers.append(Layer(len(layers), position, op.kind, weight, bias, channels))
    return layers


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """What `tinytrain-tflm layers` shows of a conv-like layer."""

    name: str  # the weight tensor's name: a key of Trainer.gradients() and Trainer.weights(), as is the index
    shape: str
    params: int  # weights and bias values
    update_bytes: int  # RAM copies of weights and bias plus their gradients, the whole layer training


def layer_table(graph: ir.Graph, gradient_itemsize: int) -> list[tuple[Layer, LayerRow]]:
    """Each conv-like layer with its row; update_bytes is an estimate (int8 weights, int32 bias, gradients of
    `gradient_itemsize` bytes), not a measured arena difference."""
    rows = []
    for layer in conv_like_layers(graph):
        weight = graph.tensors[layer.weight]
        values = math.prod(weight.shape)
        shape = "x".join(map(str, weight.shape))
        update = values * (1 + gradient_itemsize) + layer.channels * (4 + gradient_itemsize)
        rows.append((layer, LayerRow(weight.name, shape, values + layer.channels, update)))
    return rows

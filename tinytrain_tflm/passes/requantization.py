"""Forward convolutions with their requantization in the model: TT_CONV_2D and TT_DEPTHWISE_CONV_2D.

TFLM's CONV_2D and DEPTHWISE_CONV_2D turn each output channel's scale
(input scale * filter scale / output scale) into a fixed-point multiplier and
shift in Prepare and keep both in the arena: 8 bytes per output channel per op.
On MobileNetV2-w0.35 that is most of the 70 KB of kernel data a training model
holds for good, and a tiled first stage repeats it per tile. The numbers depend
only on the model's scales, so this pass computes them now, exactly as TFLite
does, stores them as one constant int32 [2, channels] tensor per op (flash on a
device), and swaps each int8 conv for tinytrain's kernel that reads them. That
kernel is TFLite's reference convolution otherwise, so outputs are
bit-identical; where TFLM would run an optimized kernel (CMSIS-NN on a
Cortex-M) it is slower. `restore` undoes the swap for an exported model.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..backend import schema
from ..backend.schema import LOWERED, RESTORED, builtin_options
from ..errors import TinyTrainError
from ..frontend import ir


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: (q, shift) with real ~= q * 2^(shift - 31), q in [2^30, 2^31) or 0,
    rounding half away from zero; scales below 2^-32 flush to (0, 0) as TFLite's do."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    q = int(math.copysign(math.floor(abs(fraction) * 2.0**31 + 0.5), fraction))
    if q == 1 << 31:
        q, shift = q // 2, shift + 1
    return (0, 0) if shift < -31 else (q, shift)


def requantization(graph: ir.Graph, op: ir.Op) -> np.ndarray:
    """int32 [2, channels]: each output channel's multiplier and shift, computed in float64 from the
    float32 scales as TFLite's PopulateConvolutionQuantizationParams computes them."""
    x, w, y = (graph.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    channels = y.shape[-1]
    scales = np.asarray(w.quantization.scale, np.float32)
    if scales.size not in (1, channels):
        raise TinyTrainError(f"{op.kind} writing {y.name!r} has {scales.size} filter scales for {channels} output channels")
    filter_scales = np.broadcast_to(scales, (channels,))
    input_scale, output_scale = float(np.float32(x.quantization.scale[0])), float(np.float32(y.quantization.scale[0]))
    pairs = [quantize_multiplier(input_scale * float(scale) / output_scale) for scale in filter_scales]
    return np.array(pairs, np.int32).T.copy()


def _options_blob(graph: ir.Graph, op: ir.Op) -> bytes:
    o = op.builtin_options
    fields = dict(
        padding=o.padding,
        stride_h=o.strideH,
        stride_w=o.strideW,
        dilation_h=o.dilationHFactor,
        dilation_w=o.dilationWFactor,
        activation=o.fusedActivationFunction,
    )
    if op.kind == "DEPTHWISE_CONV_2D":  # from the shapes, as the options may leave it 0
        fields["depth_multiplier"] = graph.tensors[op.outputs[0]].shape[-1] // graph.tensors[op.inputs[0]].shape[-1]
    return schema.encode_blob(op.kind, **fields)


def lower(graph: ir.Graph) -> ir.Graph:
    """A copy of the graph whose int8 CONV_2D and DEPTHWISE_CONV_2D ops read their requantization from
    the model (TT_CONV_2D, TT_DEPTHWISE_CONV_2D); tensor indices stay, one constant per distinct table
    is added."""
    g = dataclasses.replace(graph, tensors=list(graph.tensors), ops=list(graph.ops))
    tables: dict[bytes, int] = {}  # the tiles of a tiled stage repeat each op: one table serves them all
    for position, op in enumerate(g.ops):
        if op.custom or op.kind not in LOWERED or g.tensors[op.inputs[0]].dtype != np.int8:
            continue
        values = requantization(g, op)
        key = values.tobytes()
        if key not in tables:
            name = f"{g.tensors[op.outputs[0]].name}/requantization"
            tables[key] = g.add_tensor(ir.Tensor(name, values.shape, np.dtype(np.int32), None, values))
        table = tables[key]
        bias = op.inputs[2] if len(op.inputs) > 2 else -1
        inputs = [*op.inputs[:2], bias, table]
        options = _options_blob(g, op)
        # The builtin's version rides along (TFLM ignores custom op versions) for restore().
        g.ops[position] = ir.Op(LOWERED[op.kind], inputs, list(op.outputs), True, None, options, op.version)
    return g


def restore(op: ir.Op) -> ir.Op:
    """The builtin op a lowered one came from (any other op unchanged): for exported inference models."""
    if op.kind not in RESTORED:
        return op
    kind, inputs = RESTORED[op.kind], list(op.inputs[:3])
    return ir.Op(kind, inputs, list(op.outputs), builtin_options=builtin_options(op), version=op.version)

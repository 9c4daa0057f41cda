"""The geometry of a forward CONV_2D or DEPTHWISE_CONV_2D with TFLite padding and the shapes of its operands
and gradients, shared by the TFLM kernel tests (test_kernels_conv.py) and the Cortex-M reference generator
(cortex_m/generate_references.py)."""

from __future__ import annotations

import dataclasses


def tflite_axis(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int, int]:
    """Output size and (before, after) padding TFLite gives one axis of a convolution."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride) if padding == "SAME" else (size - effective) // stride + 1
    total = max((out - 1) * stride + effective - size, 0)
    return out, total // 2, total - total // 2


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """A forward convolution: CONV_2D with `channels` output channels, or DEPTHWISE_CONV_2D with depth
    multiplier `channels`. `update` is the filter gradient's c_update."""

    batch: int
    size: tuple[int, int]
    in_channels: int
    kernel: tuple[int, int]
    channels: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: str
    update: int
    per_channel: bool = True

    def axes(self) -> list[tuple[int, int, int]]:
        return [tflite_axis(self.size[i], self.kernel[i], self.stride[i], self.dilation[i], self.padding) for i in (0, 1)]

    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, *self.size, self.in_channels)

    def output_shape(self, depthwise: bool) -> tuple[int, ...]:
        out_channels = self.in_channels * self.channels if depthwise else self.channels
        return (self.batch, *(out for out, _, _ in self.axes()), out_channels)

    def filter_shape(self, depthwise: bool) -> tuple[int, ...]:
        if depthwise:
            return (1, *self.kernel, self.in_channels * self.channels)
        return (self.channels, *self.kernel, self.in_channels)

    def grad_filter_shape(self, depthwise: bool) -> tuple[int, ...]:
        return (1, *self.kernel, self.update) if depthwise else (self.update, *self.kernel, self.in_channels)

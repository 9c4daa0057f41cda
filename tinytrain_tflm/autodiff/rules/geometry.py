"""Padding of windowed ops (conv, pooling) as TFLite resolves SAME and VALID."""

from __future__ import annotations

from tflite_micro.tensorflow.lite.python import schema_py_generated as tfl


def padding_before(padding: int, in_size: int, out_size: int, filter_size: int, stride: int, dilation: int = 1) -> int:
    """Implicit zero rows (or columns) before the input: half the total, rounded down, as TFLite's kernels pad."""
    if padding == tfl.Padding.VALID:
        return 0
    effective = (filter_size - 1) * dilation + 1
    return max((out_size - 1) * stride + effective - in_size, 0) // 2

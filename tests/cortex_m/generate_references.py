"""Writes references.h: the kernel test cases of tests/cortex_m/kernel_test.cc with reference outputs
computed here, in NumPy, from the definitions in kernels/core/tt_functions.h (not from the kernels).
The forward convolutions' requantization is computed with exact fractions and two roundings half
away from zero, where the kernels use TFLite's fixed-point shifts.

The cases are declared in the tables below (LAYER_CASES, POOL_CASES, ...); random operands come from a
fixed seed. Gradients are computed in float64 as scatters over the forward op (each output position
and tap adds its product where the forward op read), where the kernels gather: the same sums, computed
another way. The SGD references (tests/sgd_reference.py) redo the documented float32 and fixed-point
arithmetic step by step, because the kernels promise exactly that arithmetic.

Tolerances. The kernels accumulate in float32. A float output element that sums k products (each of
at most 3 rounded factors, plus a final scale) is allowed (k + 4) * 2^-24 * sum|terms|, the classic
bound on recursive summation with a margin for the factors, plus half an ulp for storing the float64
reference as float32. Reading an int8 gradient, the layer kernels sum integers (exact, so well within
that bound), except that the conv input gradient first rescales the levels to the largest filter
scale in 2^bits steps (kernels/core/common/s8_grad_sums.h): each term may be off by half a step
times its weight, rescaling_bound(). Every layer case that reads an int8 gradient also writes a float32
one (case name s8_to_f32): an int8 output keeps only steps of max|value| / 127, which hide a sum off by one
product, a float32 output does not. Integer outputs (masks, SGD updates, copied int8 levels) must match exactly.
The loss functions use the core's own exp and log (kernels/core/common/tt_math.h, within 1.2 and 2.2
ulp): softmax_cross_entropy() doubles their bound. Being plain float32 arithmetic, they give the same
bits on every target, so their outputs too must be bit-identical to the host build's.

The references model no target: the same header checks the host build of the test and the Cortex-M
builds.

Usage: python generate_references.py OUT.h
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import struct
import sys
import zlib
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the geometry the TFLM tests use
from conv_geometry import ConvGeometry  # noqa: E402
from sgd_reference import ROUND_NEAREST, ROUND_STOCHASTIC, ROUND_TRUNCATE, sgd_step  # noqa: E402

EPS = 2.0**-24  # unit roundoff of float32
SEED = 20261122
UNARY_LOGISTIC, UNARY_TANH, UNARY_HARD_SWISH, UNARY_LEAKY_RELU = 0, 1, 2, 3  # tt_schema_generated.h
GRAD_TYPES = ("f32", "s8")


@dataclasses.dataclass(frozen=True)
class FcSpec:
    batch: int
    inputs: int
    outputs: int
    update: int
    per_channel: bool = True


# (op, case name, geometry): each runs the input and the filter gradient in both representations.
LAYER_CASES: list[tuple[str, str, ConvGeometry | FcSpec]] = [
    ("conv", "same_3x3", ConvGeometry(1, (5, 5), 3, (3, 3), 4, (1, 1), (1, 1), "SAME", 4)),
    ("conv", "valid_stride2_per_tensor_partial", ConvGeometry(2, (6, 5), 2, (3, 2), 5, (2, 2), (1, 1), "VALID", 3, False)),
    ("conv", "same_dilated", ConvGeometry(1, (6, 6), 2, (3, 3), 3, (1, 1), (2, 2), "SAME", 2)),
    ("conv", "pointwise", ConvGeometry(1, (4, 4), 8, (1, 1), 6, (1, 1), (1, 1), "VALID", 6)),
    # 13 and 12 input channels: kernels/cmsis_nn sums input channels in blocks of 8, then 4, then 1; its
    # pointwise int8 input gradient sums 4 pixels (15: a last block of 3), 2 input channels (13: a lone
    # last one) and 2 output channels (11: a lone last one) at a time.
    ("conv", "pointwise_channel_blocks_odd_pixels", ConvGeometry(1, (3, 5), 13, (1, 1), 11, (1, 1), (1, 1), "VALID", 11)),
    ("conv", "same_3x3_stride2_channel_blocks", ConvGeometry(1, (5, 6), 12, (3, 3), 7, (2, 2), (1, 1), "SAME", 5)),
    # One input channel (a first layer): kernels/cmsis_nn sums an int8 filter gradient as dot products over the
    # output pixels, four filters at a time (9: a last block of 1); with levels past its 1 KB (144 pixels of 4
    # filters), in blocks of filters per tap instead.
    ("conv", "first_layer_filter_blocks", ConvGeometry(1, (6, 5), 1, (5, 3), 9, (2, 2), (1, 1), "SAME", 9)),
    ("conv", "first_layer_large_output", ConvGeometry(1, (12, 12), 2, (3, 3), 4, (1, 1), (1, 1), "SAME", 4)),
    # kernels/cmsis_nn's pointwise int8 input gradient rescales levels for 128 output channels at a time
    # (261: three chunks, the last an odd 5, so a lone row), sums 128 input channels at a time (133: two
    # groups, the last an odd 5, so a lone channel), and takes pixels 4 at a time (5 and 2 pixels: last
    # blocks of 1 and 2; 15 above: 3).
    ("conv", "pointwise_rescaled_in_chunks", ConvGeometry(1, (1, 5), 5, (1, 1), 261, (1, 1), (1, 1), "VALID", 3)),
    ("conv", "pointwise_summed_in_groups", ConvGeometry(1, (1, 2), 133, (1, 1), 6, (1, 1), (1, 1), "VALID", 2)),
    # With Helium (the M55), kernels/cmsis_nn's pointwise int8 gradients take 4 input channels a vector, a last
    # block of fewer predicated: 7 leaves 3 lanes (13, 133 and the fully connected cases leave 1 or 2).
    ("conv", "pointwise_three_lane_tail", ConvGeometry(1, (2, 3), 7, (1, 1), 6, (1, 1), (1, 1), "VALID", 6)),
    ("depthwise", "same_3x3", ConvGeometry(1, (5, 5), 4, (3, 3), 1, (1, 1), (1, 1), "SAME", 4)),
    ("depthwise", "same_3x3_channel_blocks", ConvGeometry(1, (5, 4), 13, (3, 3), 1, (1, 1), (1, 1), "SAME", 13)),
    # kernels/cmsis_nn's int8 depthwise input gradient with multiplier 1 lists each pixel's reading taps
    # (kernels up to 5x5) and sums 4 channels a word, then single ones: 6 channels at stride 2 take
    # both; a 3x9 kernel takes its per-tap gather instead.
    ("depthwise", "stride2_5x5_listed_taps", ConvGeometry(1, (7, 6), 6, (5, 5), 1, (2, 2), (1, 1), "SAME", 6)),
    ("depthwise", "kernel_3x9_tap_gather", ConvGeometry(1, (5, 10), 5, (3, 9), 1, (1, 1), (1, 1), "SAME", 5)),
    # Stride 1, multiplier 1, int8: kernels/cmsis_nn sums channel planes with dual MACs (SAME 3x3 above; VALID 5x5
    # here, whose filter gradient sums a row of taps one tap at a time), over two images, two of three channels updated.
    ("depthwise", "stride1_valid_5x5_planes", ConvGeometry(2, (7, 6), 3, (5, 5), 1, (1, 1), (1, 1), "VALID", 2)),
    (
        "depthwise",
        "stride2_multiplier2_per_tensor_partial",
        ConvGeometry(2, (7, 6), 3, (3, 3), 2, (2, 2), (1, 1), "SAME", 4, False),
    ),
    ("fully_connected", "batch3", FcSpec(3, 10, 7, 7)),
    ("fully_connected", "per_tensor_partial", FcSpec(2, 12, 5, 3, False)),
    ("fully_connected", "batch1", FcSpec(1, 9, 6, 6)),
]

# (op, case name, geometry, fused clamp (low, high) of the int8 output, bias, largest requantization shift):
# forward convolutions, checked exactly. Positive shifts (output scale below input x filter scale) take
# the left-shift path of the requantization.
FORWARD_CASES: list[tuple[str, str, ConvGeometry, tuple[int, int], bool, int]] = [
    ("conv", "same_3x3_relu6", ConvGeometry(1, (5, 5), 3, (3, 3), 4, (1, 1), (1, 1), "SAME", 4), (-9, 110), True, -6),
    ("conv", "valid_stride2_no_bias", ConvGeometry(2, (6, 5), 2, (3, 2), 5, (2, 2), (1, 1), "VALID", 5), (-128, 127), False, -5),
    ("conv", "same_dilated", ConvGeometry(1, (6, 6), 2, (3, 3), 3, (1, 1), (2, 2), "SAME", 3), (-128, 127), True, -7),
    ("conv", "pointwise_left_shift", ConvGeometry(1, (4, 4), 8, (1, 1), 6, (1, 1), (1, 1), "VALID", 6), (-128, 127), True, 2),
    # kernels/cmsis_nn's pointwise kernel (1x1, stride 1, no Helium) takes two pixels by two filters, input channels
    # 16, then 4, then 1 at a time: odd pixel counts (9, 15) and filter counts (7, 5) leave a lone pixel and
    # filter, 23 = 16 + 4 + 3 and 39 = 2 * 16 + 4 + 3 channels every block size.
    ("conv", "pointwise_odd_blocks", ConvGeometry(1, (3, 3), 23, (1, 1), 7, (1, 1), (1, 1), "VALID", 7), (-128, 127), True, -6),
    (
        "conv",
        "pointwise_odd_blocks_no_bias",
        ConvGeometry(1, (5, 3), 39, (1, 1), 5, (1, 1), (1, 1), "VALID", 5),
        (-20, 100),
        False,
        -7,
    ),
    ("depthwise", "same_3x3", ConvGeometry(1, (5, 5), 4, (3, 3), 1, (1, 1), (1, 1), "SAME", 4), (-128, 127), True, -5),
    ("depthwise", "multiplier2_stride2", ConvGeometry(1, (7, 6), 3, (3, 3), 2, (2, 2), (1, 1), "SAME", 6), (-3, 127), True, -4),
]

# (kind, name, [n, h, w, c] input, filter, stride, padding)
POOL_CASES = [
    ("avg", "same_3x3_stride2", (1, 7, 6, 3), (3, 3), (2, 2), "SAME"),
    ("avg", "valid_2x2", (2, 4, 6, 2), (2, 2), (2, 2), "VALID"),
    # Windows that do not overlap, which kernels/cmsis_nn computes once per window: partial ones at the edges of
    # SAME padding, and elements in no window (stride 3 > filter 2).
    ("avg", "same_2x2_partial_edges", (1, 5, 3, 4), (2, 2), (2, 2), "SAME"),
    ("avg", "valid_2x2_stride3_gaps", (1, 5, 5, 2), (2, 2), (3, 3), "VALID"),
    ("max", "same_3x3_stride2_ties", (1, 7, 6, 3), (3, 3), (2, 2), "SAME"),
    ("max", "overlapping_3x3_stride1", (2, 5, 5, 2), (3, 3), (1, 1), "VALID"),
    ("mean", "global", (2, 4, 3, 5), None, None, None),
]

# (name, grad_dims, channels_to_update)
BIAS_CASES = [("conv_partial", (2, 3, 3, 6), 4), ("fully_connected", (3, 1, 1, 5), 5)]

# (name, count, lower_q, upper_q): ReLU at zero point -5, ReLU6 with its upper clamp at 90.
ACTIVATION_CASES = [("relu", 37, -5, 128), ("relu6", 64, -5, 90), ("none_inside", 11, 126, 127)]

# (name, batch, classes, logits scale, label smoothing, with saturated logits)
LOSS_CASES = [
    ("batch3", 3, 6, 0.08, 0.0, False),
    ("smoothing_saturated", 2, 10, 0.25, 0.1, True),
]

# (name, a type, b type, sum type)
GRAD_ADD_CASES = [
    ("f32_f32_to_f32", "f32", "f32", "f32"),
    ("s8_f32_to_s8", "s8", "f32", "s8"),
    ("s8_s8_to_f32", "s8", "s8", "f32"),
]


@dataclasses.dataclass(frozen=True)
class SgdSpec:
    name: str
    s32: bool
    shape: tuple[int, int, int]  # [outer, channels, inner]
    update: int
    per_channel: bool
    learning_rate: float
    momentum: float
    qas: int
    rounding: int
    grad: str


SGD_CASES = [
    SgdSpec("s8_conv_truncate_qas", False, (1, 4, 18), 4, True, 10.0, 0.0, 1, ROUND_TRUNCATE, "f32"),
    SgdSpec("s8_fc_nearest_naive_partial", False, (1, 6, 5), 3, False, 5e4, 0.0, 0, ROUND_NEAREST, "s8"),
    SgdSpec("s8_depthwise_stochastic_momentum", False, (9, 6, 1), 3, True, 10.0, 0.9, 1, ROUND_STOCHASTIC, "f32"),
    # Fixed point (int8 gradient levels, stochastic rounding, no momentum): steps of about 0.1 to 1 quantum
    # per level, so that some channels take the level_scale > 1 form (|k| >= 1/2) and some weights saturate.
    SgdSpec("s8_conv_stochastic_levels", False, (1, 4, 18), 4, True, 20.0, 0.0, 1, ROUND_STOCHASTIC, "s8"),
    SgdSpec("s8_depthwise_stochastic_levels_partial", False, (9, 6, 1), 3, True, 40.0, 0.0, 1, ROUND_STOCHASTIC, "s8"),
    SgdSpec("s8_fc_stochastic_partial", False, (1, 6, 5), 3, False, 10.0, 0.0, 1, ROUND_STOCHASTIC, "f32"),
    SgdSpec("s32_bias_nearest_partial", True, (1, 6, 1), 4, True, 0.2, 0.0, 1, ROUND_NEAREST, "s8"),
    SgdSpec("s32_bias_stochastic_momentum", True, (1, 8, 1), 8, True, 0.2, 0.5, 1, ROUND_STOCHASTIC, "f32"),
]

# (name, function, saved scale, saved zero point, alpha): the converter's LOGISTIC and TANH output
# quantization; an input scale of 1/16 puts levels exactly on HARD_SWISH's kinks at -3 and 3.
UNARY_CASES = [
    ("logistic", UNARY_LOGISTIC, 1 / 256, -128, 0.0),
    ("tanh", UNARY_TANH, 1 / 128, 0, 0.0),
    ("hard_swish", UNARY_HARD_SWISH, 1 / 16, -7, 0.0),
    ("leaky_relu", UNARY_LEAKY_RELU, 1 / 16, -7, 0.2),
]

# (name, result shape, other shape): squeeze-and-excite's gate both ways, and both operands broadcast.
MUL_CASES = [
    ("channel_scale_input", (1, 3, 3, 4), (1, 1, 1, 4)),
    ("channel_scale_gate", (1, 1, 1, 4), (1, 3, 3, 4)),
    ("both_broadcast", (1, 3, 1, 2), (2, 1, 4, 1)),
]

CRC_CASES = [("check_string", b"123456789"), ("random_bytes", None)]


def f32(x: float) -> str:
    """A float32 as an exact C++ hexadecimal literal."""
    mantissa, exponent = float(np.float32(x)).hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"


class Header:
    """Collects the arrays and case tables of references.h."""

    CTYPES = {np.int8: "int8_t", np.uint8: "uint8_t", np.int32: "int32_t", np.float32: "float"}

    def __init__(self) -> None:
        self.arrays: list[str] = []
        self.tables: dict[str, list[str]] = {}

    def array(self, name: str, values: np.ndarray) -> str:
        """Defines a constant array (in flash) and returns its name."""
        ctype = self.CTYPES[values.dtype.type]
        flat = values.reshape(-1)
        items = [f32(v) for v in flat] if ctype == "float" else [str(int(v)) for v in flat]
        lines = ",\n".join("    " + ", ".join(items[i : i + 8]) for i in range(0, len(items), 8))
        self.arrays.append(f"static const {ctype} {name}[{len(items)}] = {{\n{lines}}};")
        return name

    def case(self, table: str, initializer: str) -> None:
        self.tables.setdefault(table, []).append(initializer)

    def text(self, max_elements: int) -> str:
        banner = (
            f"// Generated by tests/cortex_m/generate_references.py (NumPy {np.__version__}, seed {SEED}). Do not edit.\n"
            "// Reference outputs of the kernel core computed in NumPy; kernel_test.cc runs and checks them.\n"
        )
        tables = [
            f"static const {table} k{table}s[] = {{\n" + "\n".join(f"    {c}," for c in cases) + "\n};"
            for table, cases in self.tables.items()
        ]
        return "\n\n".join(
            [
                banner + "#ifndef TINYTRAIN_TESTS_CORTEX_M_REFERENCES_H_\n#define TINYTRAIN_TESTS_CORTEX_M_REFERENCES_H_\n\n"
                '#include "case_types.h"',
                "// Elements of the largest array: enough for the test's result buffers.\n"
                f"constexpr int32_t kMaxResultElements = {max_elements};",
                *self.arrays,
                *tables,
                "#endif  // TINYTRAIN_TESTS_CORTEX_M_REFERENCES_H_\n",
            ]
        )


def dims(shape: Iterable[int]) -> str:
    n, h, w, c = shape
    return f"{{{n}, {h}, {w}, {c}}}"


@dataclasses.dataclass
class Grad:
    """A random gradient operand: what the kernel reads and the real values it stands for (float64)."""

    kind: str
    real: np.ndarray
    stored: np.ndarray
    scale: float

    @staticmethod
    def random(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> Grad:
        values = rng.normal(0, 0.01, shape).astype(np.float32)
        if kind == "f32":
            return Grad(kind, values.astype(np.float64), values, 0.0)
        scale = np.float32(np.abs(values).max() / 127)
        levels = np.round(values / scale).astype(np.int8)
        return Grad(kind, levels.astype(np.float64) * np.float64(scale), levels, float(scale))

    def operand(self, header: Header, name: str) -> str:
        array = header.array(name, self.stored)
        if self.kind == "f32":
            return f"{{TT_GRAD_F32, {array}, nullptr, 0.0f}}"
        return f"{{TT_GRAD_S8, nullptr, {array}, {f32(self.scale)}}}"


def summation_bound(want: np.ndarray, abs_sum: np.ndarray, terms: int) -> np.ndarray:
    """The float32 error bound of the module docstring for sums of `terms` products with sum|terms| = abs_sum."""
    return (terms + 4) * EPS * abs_sum + EPS * np.abs(want)


def rescaling_bound(spec: ConvGeometry, depthwise: bool, gz: Grad, levels: np.ndarray, scales: np.ndarray, terms: int):
    """The int8 conv input gradient's rescaling error (s8_grad_sums.h's RescaledLevels): grad scale * max
    scale * 2^-bits per term (half a step for rounding r, and as much again for the rounded integer
    multiplier, |q| * 2^-16 steps at most), times |weight|, bits = min(7, 16 - ceil(log2(terms)))."""
    bits = min(7, 16 - math.ceil(math.log2(terms)))
    ones = np.ones(gz.real.shape)
    return gz.scale * float(scales.max()) * 2.0**-bits * conv_input_grad(spec, depthwise, ones, np.abs(levels.astype(np.float64)))


def expected_grad(header: Header, name: str, kind: str, want: np.ndarray, tolerance: np.ndarray) -> str:
    """ExpectedGrad of a gradient output in representation `kind`: real values and a bound per element."""
    values = header.array(f"{name}_want", want.reshape(-1).astype(np.float32))
    bounds = header.array(f"{name}_tolerance", np.broadcast_to(tolerance, want.shape).reshape(-1).astype(np.float32))
    grad_type = "TT_GRAD_F32" if kind == "f32" else "TT_GRAD_S8"
    return f"{{{grad_type}, {want.size}, {values}, {bounds}, nullptr, 0.0f}}"


def exact_grad(header: Header, name: str, grad: Grad, mask: np.ndarray) -> str:
    """ExpectedGrad of a kernel that copies or zeroes gradient values without arithmetic."""
    kept = np.where(mask, grad.stored, 0).astype(grad.stored.dtype)
    if grad.kind == "f32":
        values = header.array(f"{name}_want", kept)
        zeros = header.array(f"{name}_tolerance", np.zeros(kept.size, np.float32))
        return f"{{TT_GRAD_F32, {kept.size}, {values}, {zeros}, nullptr, 0.0f}}"
    levels = header.array(f"{name}_levels", kept)
    return f"{{TT_GRAD_S8, {kept.size}, nullptr, nullptr, {levels}, {f32(grad.scale)}}}"


def conv_input_grad(spec: ConvGeometry, depthwise: bool, gz: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Scatter of y = conv(x, w): every output (oy, ox) and tap (ky, kx) adds its products where it read."""
    n, (h, width), cin = spec.batch, spec.size, spec.in_channels
    (oh, top, _), (ow, left, _) = spec.axes()
    gx = np.zeros((n, h, width, cin))
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(spec.kernel[0]):
                for kx in range(spec.kernel[1]):
                    iy = oy * spec.stride[0] + ky * spec.dilation[0] - top
                    ix = ox * spec.stride[1] + kx * spec.dilation[1] - left
                    if not (0 <= iy < h and 0 <= ix < width):
                        continue
                    if depthwise:  # output channel c * m + j reads input channel c
                        products = gz[:, oy, ox, :] * w[0, ky, kx, :]
                        gx[:, iy, ix, :] += products.reshape(n, cin, spec.channels).sum(axis=2)
                    else:
                        gx[:, iy, ix, :] += gz[:, oy, ox, :] @ w[:, ky, kx, :]
    return gx


def conv_filter_grad(spec: ConvGeometry, depthwise: bool, gz: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Scatter of y = conv(x, w) into d/dw: every output and tap adds gz * the input it read."""
    (oh, top, _), (ow, left, _) = spec.axes()
    (h, width), kh, kw = spec.size, *spec.kernel
    if depthwise:
        gw = np.zeros((1, kh, kw, spec.in_channels * spec.channels))
    else:
        gw = np.zeros((spec.channels, kh, kw, spec.in_channels))
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(kh):
                for kx in range(kw):
                    iy = oy * spec.stride[0] + ky * spec.dilation[0] - top
                    ix = ox * spec.stride[1] + kx * spec.dilation[1] - left
                    if not (0 <= iy < h and 0 <= ix < width):
                        continue
                    if depthwise:
                        gw[0, ky, kx, :] += (gz[:, oy, ox, :] * np.repeat(x[:, iy, ix, :], spec.channels, axis=1)).sum(axis=0)
                    else:
                        gw[:, ky, kx, :] += gz[:, oy, ox, :].T @ x[:, iy, ix, :]
    return gw[..., : spec.update] if depthwise else gw[: spec.update]


def filter_scales(rng: np.random.Generator, channels: int, per_channel: bool) -> np.ndarray:
    return rng.uniform(0.005, 0.02, channels if per_channel else 1).astype(np.float32)


def forward_input(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Random int8 input with a nonzero zero point: levels, real values, scale, zero point."""
    scale, zero_point = np.float32(0.05), -7
    levels = rng.integers(-128, 128, shape).astype(np.int8)
    return levels, np.float64(scale) * (levels.astype(np.float64) - zero_point), float(scale), zero_point


def add_layer_cases(header: Header, rng: np.random.Generator) -> None:
    """Input and filter gradients of every LAYER_CASES geometry."""
    for op, case_name, spec in LAYER_CASES:
        fc = isinstance(spec, FcSpec)
        depthwise = op == "depthwise"
        if fc:
            conv = ConvGeometry(
                spec.batch, (1, 1), spec.inputs, (1, 1), spec.outputs, (1, 1), (1, 1), "VALID", spec.update, spec.per_channel
            )
        else:
            conv = spec
        (oh, top, _), (ow, left, _) = conv.axes()
        grad_output_shape = conv.output_shape(depthwise)
        out_channels = grad_output_shape[3]
        filter_shape = conv.filter_shape(depthwise)
        input_shape = conv.input_shape()
        levels = rng.integers(-127, 128, filter_shape).astype(np.int8)
        scales = filter_scales(rng, out_channels, conv.per_channel)
        channel_scales = np.resize(scales, out_channels).astype(np.float64)
        w_real = levels * channel_scales.reshape((1, 1, 1, -1) if depthwise else (-1, 1, 1, 1))
        x_levels, x_real, x_scale, x_zero_point = forward_input(rng, input_shape)
        grad_filter_shape = conv.grad_filter_shape(depthwise)
        strides = f"{conv.stride[0]}, {conv.stride[1]}, {conv.dilation[0]}, {conv.dilation[1]}, {top}, {left}"
        geometry = f"{{{{{strides}}}, {conv.channels if depthwise else 1}}}"
        kernel_name = {"conv": "Conv", "depthwise": "Depthwise", "fully_connected": "FullyConnected"}[op]
        input_terms = conv.kernel[0] * conv.kernel[1] * (conv.channels if depthwise else out_channels)
        filter_terms = conv.batch * oh * ow
        for kind in GRAD_TYPES:
            gz = Grad.random(rng, grad_output_shape, kind)
            base = f"{op}_{case_name}_{kind}"
            gx = conv_input_grad(conv, depthwise, gz.real, w_real)
            gx_abs = conv_input_grad(conv, depthwise, np.abs(gz.real), np.abs(w_real))
            gw = conv_filter_grad(conv, depthwise, gz.real, x_real)
            gw_abs = conv_filter_grad(conv, depthwise, np.abs(gz.real), np.abs(x_real))
            input_bound = summation_bound(gx, gx_abs, input_terms)
            if kind == "s8" and not depthwise:
                input_bound = input_bound + rescaling_bound(conv, depthwise, gz, levels, scales, input_terms)
            operand = gz.operand(header, f"{base}_grad_output")
            filter_array = header.array(f"{base}_filter", levels)
            scale_array = header.array(f"{base}_filter_scales", scales)
            input_array = header.array(f"{base}_input", x_levels)
            # An int8 gradient is also read into a float32 one (s8_to_f32): its exact int32 sums then reach the
            # output within float32 rounding, so a sum off by one product fails the check. An int8 output rounds
            # them to steps of max|value| / 127, far coarser, and neither its check nor its digest sees that.
            for out_kind in GRAD_TYPES if kind == "s8" else (kind,):
                name = kind if out_kind == kind else f"{kind}_to_{out_kind}"
                out_base = f"{op}_{case_name}_{name}"
                header.case(
                    "LayerGradCase",
                    f'{{"{op}_input_grad/{case_name}/{name}", LayerGradKernel::k{kernel_name}Input, {geometry}, '
                    f"{dims(grad_output_shape)}, {operand}, {dims(filter_shape)}, {filter_array}, "
                    f"{{{scale_array}, {scales.size}}}, {{0.0f, 0}}, {dims(input_shape)}, "
                    f"{expected_grad(header, out_base + '_input_grad', out_kind, gx, input_bound)}}}",
                )
                filter_bound = summation_bound(gw, gw_abs, filter_terms)
                header.case(
                    "LayerGradCase",
                    f'{{"{op}_filter_grad/{case_name}/{name}", LayerGradKernel::k{kernel_name}Filter, {geometry}, '
                    f"{dims(grad_output_shape)}, {operand}, {dims(input_shape)}, {input_array}, "
                    f"{{nullptr, 0}}, {{{f32(x_scale)}, {x_zero_point}}}, {dims(grad_filter_shape)}, "
                    f"{expected_grad(header, out_base + '_filter_grad', out_kind, gw, filter_bound)}}}",
                )


def round_half_away(value: Fraction) -> int:
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def requantize(acc: int, multiplier: int, shift: int) -> int:
    """tt_requantization's definition: acc * multiplier * 2^(shift - 31), rounded half away from zero
    twice: once to an integer at 2^-31 (after the left shift, wrapped to int32), once after the right shift."""
    scaled = (acc << max(shift, 0) & 0xFFFFFFFF) - ((acc << max(shift, 0) & 0x80000000) << 1)  # wrap to int32
    high = min(round_half_away(Fraction(scaled * multiplier, 2**31)), 2**31 - 1)
    return round_half_away(Fraction(high, 2 ** max(-shift, 0)))


def forward_conv(spec: ConvGeometry, depthwise: bool, x: np.ndarray, x_zero_point: int, w: np.ndarray) -> np.ndarray:
    """int64 sums of filter * (x - zero point) over the taps inside the input, per output element."""
    (oh, top, _), (ow, left, _) = spec.axes()
    out = np.zeros(spec.output_shape(depthwise), np.int64)
    centered = x.astype(np.int64) - x_zero_point
    for oy, ox, ky, kx in itertools.product(range(oh), range(ow), range(spec.kernel[0]), range(spec.kernel[1])):
        iy, ix = oy * spec.stride[0] + ky * spec.dilation[0] - top, ox * spec.stride[1] + kx * spec.dilation[1] - left
        if 0 <= iy < spec.size[0] and 0 <= ix < spec.size[1]:
            if depthwise:  # output channel c reads input channel c // multiplier
                out[:, oy, ox, :] += np.repeat(centered[:, iy, ix, :], spec.channels, axis=1) * w[0, ky, kx, :]
            else:
                out[:, oy, ox, :] += centered[:, iy, ix, :] @ w[:, ky, kx, :].astype(np.int64).T
    return out


def add_forward_cases(header: Header, rng: np.random.Generator) -> None:
    """tt_conv2d_s8 and tt_depthwise_conv2d_s8 on random levels, biases and requantizations."""
    for op, case_name, spec, (low, high), with_bias, max_shift in FORWARD_CASES:
        depthwise = op == "depthwise"
        (_, top, _), (_, left, _) = spec.axes()
        out_shape = spec.output_shape(depthwise)
        channels = out_shape[3]
        x_levels, _, _, x_zero_point = forward_input(rng, spec.input_shape())
        w = rng.integers(-127, 128, spec.filter_shape(depthwise)).astype(np.int8)
        bias = rng.integers(-3000, 3000, channels).astype(np.int32) if with_bias else np.zeros(channels, np.int32)
        multipliers = rng.integers(1 << 30, 1 << 31, channels).astype(np.int64)
        shifts = rng.integers(max_shift - 3, max_shift + 1, channels)
        output_zero_point = 5
        acc = forward_conv(spec, depthwise, x_levels, x_zero_point, w) + bias
        flat = acc.reshape(-1, channels)
        levels = np.array(
            [[requantize(int(v), int(multipliers[c]), int(shifts[c])) for c, v in enumerate(row)] for row in flat]
        ).reshape(out_shape)
        expected = np.clip(levels + output_zero_point, low, high).astype(np.int8)
        base = f"{op}_forward_{case_name}"
        params = (
            f"{{{{{spec.stride[0]}, {spec.stride[1]}, {spec.dilation[0]}, {spec.dilation[1]}, {top}, {left}}}, "
            f"{spec.channels if depthwise else 1}, {-x_zero_point}, {output_zero_point}, {low}, {high}}}"
        )
        bias_array = header.array(f"{base}_bias", bias) if with_bias else "nullptr"
        arrays = [
            header.array(base + "_input", x_levels),
            header.array(base + "_filter", w),
            header.array(base + "_multiplier", multipliers.astype(np.int32)),
            header.array(base + "_shift", shifts.astype(np.int32)),
            header.array(base + "_output", expected),
        ]
        header.case(
            "ForwardConvCase",
            f'{{"{op}_forward/{case_name}", {str(depthwise).lower()}, {params}, {dims(spec.input_shape())}, {arrays[0]}, '
            f"{dims(spec.filter_shape(depthwise))}, {arrays[1]}, {bias_array}, {arrays[2]}, {arrays[3]}, "
            f"{dims(out_shape)}, {arrays[4]}}}",
        )


def pool_windows(shape: tuple[int, ...], filter_hw, stride, padding):
    """TFLite's pooling windows: output size and, per output (oy, ox), the in-bounds row and column ranges."""
    _, h, w, _ = shape
    axes = []
    for size, k, s in ((h, filter_hw[0], stride[0]), (w, filter_hw[1], stride[1])):
        out = -(-size // s) if padding == "SAME" else (size - k) // s + 1
        pad = max((out - 1) * s + k - size, 0) // 2
        axes.append((out, pad, [range(max(o * s - pad, 0), min(o * s - pad + k, size)) for o in range(out)]))
    return axes


def pool_grad(kind: str, shape: tuple[int, ...], windows, gz: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Scatter of a pooling: each window's output gradient goes to its elements, shared equally (average)
    or all to the first maximum in row-major order (max)."""
    (oh, _, rows), (ow, _, cols) = windows
    gx = np.zeros(shape)
    for oy in range(oh):
        for ox in range(ow):
            r, q = rows[oy], cols[ox]
            if kind == "avg":
                gx[:, r.start : r.stop, q.start : q.stop, :] += (gz[:, oy, ox, :] / (len(r) * len(q)))[:, None, None, :]
                continue
            for b in range(shape[0]):
                for ch in range(shape[3]):
                    y, xx = np.unravel_index(np.argmax(x[b, r.start : r.stop, q.start : q.stop, ch]), (len(r), len(q)))
                    gx[b, r.start + y, q.start + xx, ch] += gz[b, oy, ox, ch]
    return gx


def add_pool_cases(header: Header, rng: np.random.Generator) -> None:
    for kind_name, case_name, shape, filter_hw, stride, padding in POOL_CASES:
        n, h, w, c = shape
        x = rng.integers(-3, 4, shape).astype(np.int8)  # few levels: max-pooling windows hold ties
        x_array = header.array(f"pool_{kind_name}_{case_name}_input", x) if kind_name == "max" else "nullptr"
        for kind in GRAD_TYPES:
            base = f"pool_{kind_name}_{case_name}_{kind}"
            if kind_name == "mean":
                out_shape, params, terms = (n, 1, 1, c), "{0, 0, 0, 0, 0, 0}", 1
                gz = Grad.random(rng, out_shape, kind)
                gx = np.broadcast_to(gz.real / (h * w), shape)
                gx_abs = np.abs(gx)
            else:
                windows = pool_windows(shape, filter_hw, stride, padding)
                (oh, top, _), (ow, left, _) = windows
                out_shape = (n, oh, ow, c)
                gz = Grad.random(rng, out_shape, kind)
                gx = pool_grad(kind_name, shape, windows, gz.real, x)
                gx_abs = pool_grad(kind_name, shape, windows, np.abs(gz.real), x)
                terms = -(-filter_hw[0] // stride[0]) * -(-filter_hw[1] // stride[1])  # windows holding one element
                params = f"{{{filter_hw[0]}, {filter_hw[1]}, {stride[0]}, {stride[1]}, {top}, {left}}}"
            kernel = {"avg": "kAverage", "max": "kMax", "mean": "kMean"}[kind_name]
            header.case(
                "PoolGradCase",
                f'{{"{kind_name}_pool_grad/{case_name}/{kind}", PoolKernel::{kernel}, {params}, {dims(out_shape)}, '
                f"{gz.operand(header, base + '_grad_output')}, {dims(shape)}, {x_array}, "
                f"{expected_grad(header, base, kind, gx, summation_bound(gx, gx_abs, terms))}}}",
            )


def add_bias_cases(header: Header, rng: np.random.Generator) -> None:
    for case_name, shape, update in BIAS_CASES:
        rows = shape[0] * shape[1] * shape[2]
        for kind in GRAD_TYPES:
            base = f"bias_{case_name}_{kind}"
            gz = Grad.random(rng, shape, kind)
            flat = gz.real.reshape(rows, shape[3])[:, :update]
            bound = summation_bound(flat.sum(axis=0), np.abs(flat).sum(axis=0), rows)
            header.case(
                "BiasGradCase",
                f'{{"bias_grad/{case_name}/{kind}", {dims(shape)}, {gz.operand(header, base + "_grad_output")}, {update}, '
                f"{expected_grad(header, base, kind, flat.sum(axis=0), bound)}}}",
            )


def add_activation_cases(header: Header, rng: np.random.Generator) -> None:
    for case_name, count, lower, upper in ACTIVATION_CASES:
        y = rng.integers(-128, 128, count).astype(np.int8)
        y[:4] = [lower, upper if upper < 128 else 127, lower + 1, upper - 1]  # both clamps and their neighbours
        passes = (lower < y.astype(np.int32)) & (y.astype(np.int32) < upper)
        mask = np.packbits(passes, bitorder="little")
        y_array = header.array(f"activation_{case_name}_y", y)
        mask_array = header.array(f"activation_{case_name}_mask", mask)
        params = f"{{{lower}, {upper}}}"
        no_grad = "{TT_GRAD_F32, nullptr, nullptr, 0.0f}"
        no_expected = "{TT_GRAD_F32, 0, nullptr, nullptr, nullptr, 0.0f}"
        header.case(
            "ActivationCase",
            f'{{"activation_mask/{case_name}", ActivationKernel::kMask, {params}, {count}, {y_array}, nullptr, '
            f"{no_grad}, {mask_array}, {no_expected}}}",
        )
        for kind in GRAD_TYPES:
            for source, kernel, y_input, mask_input in (
                ("output", "kGradFromOutput", y_array, "nullptr"),
                ("mask", "kGradFromMask", "nullptr", mask_array),
            ):
                base = f"activation_{case_name}_{source}_{kind}"
                gz = Grad.random(rng, (count,), kind)
                header.case(
                    "ActivationCase",
                    f'{{"activation_grad_from_{source}/{case_name}/{kind}", ActivationKernel::{kernel}, {params}, {count}, '
                    f"{y_input}, {mask_input}, {gz.operand(header, base + '_grad_output')}, nullptr, "
                    f"{exact_grad(header, base, gz, passes)}}}",
                )


def softmax_cross_entropy(levels: np.ndarray, scale: float, zero_point: int, labels: np.ndarray, smoothing: float):
    """Loss, gradient and their tolerances in float64; a logit at 127 (-128) gets no gradient pushing it up (down)."""
    batch, classes = levels.shape
    x = np.float64(scale) * (levels.astype(np.float64) - zero_point)
    shift = x - x.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shift).sum(axis=1))
    p = np.exp(shift - log_sum[:, None])
    t = (1 - np.float64(np.float32(smoothing))) * np.eye(classes)[labels] + np.float64(np.float32(smoothing)) / classes
    rows = log_sum - (t * shift).sum(axis=1)
    g = p - t
    g[((levels == 127) & (g < 0)) | ((levels == -128) & (g > 0))] = 0.0
    # The bound of the module docstring with a factor 2 for tt_expf and tt_logf, which are not
    # correctly rounded.
    row_bounds = 2 * (classes + 8) * EPS * (1 + log_sum + np.abs(t * shift).sum(axis=1))
    loss_bound = (row_bounds.sum() + (batch + 2) * EPS * np.abs(rows).sum()) / batch
    grad_bound = 2 * (classes + 8) * EPS * (p + t + 1) / batch
    return rows.mean(), loss_bound, g / batch, grad_bound


def add_loss_cases(header: Header, rng: np.random.Generator) -> None:
    zero_point = 3
    for case_name, batch, classes, scale, smoothing, saturated in LOSS_CASES:
        logits = rng.integers(-60, 61, (batch, classes)).astype(np.int8)
        if saturated:
            # Row 0: the label ties another class at 127, so p < t pushes it further up. Row 1: every
            # logit at -128, so the classes other than the label are pushed further down.
            logits[0, :3] = [127, -128, 127]
            logits[1, :] = -128
        labels = rng.integers(0, classes, batch).astype(np.int32)
        labels[:2] = [0, 1]
        loss, loss_bound, grad, grad_bound = softmax_cross_entropy(logits, scale, zero_point, labels, smoothing)
        logits_array = header.array(f"loss_{case_name}_logits", logits)
        labels_array = header.array(f"loss_{case_name}_labels", labels)
        common = f"{{{f32(smoothing)}}}, {{{f32(scale)}, {zero_point}}}, {dims((batch, 1, 1, classes))}, {logits_array}"
        for kind in GRAD_TYPES:
            base = f"loss_{case_name}_{kind}"
            expected = expected_grad(header, base, kind, grad, grad_bound)
            header.case(
                "LossCase",
                f'{{"softmax_cross_entropy/{case_name}/{kind}", {"true" if kind == "s8" else "false"}, {common}, '
                f"{labels_array}, TT_SUCCESS, {f32(loss)}, {f32(loss_bound)}, {expected}}}",
            )
    bad_labels = header.array("loss_bad_labels", np.array([0, 6], np.int32))
    logits = header.array("loss_bad_logits", rng.integers(-60, 61, (2, 6)).astype(np.int8))
    header.case(
        "LossCase",
        f'{{"softmax_cross_entropy/label_out_of_range/f32", false, {{0.0f}}, {{0.1f, 0}}, {dims((2, 1, 1, 6))}, {logits}, '
        f"{bad_labels}, TT_LABEL_OUT_OF_RANGE, 0.0f, 0.0f, {{TT_GRAD_F32, 12, nullptr, nullptr, nullptr, 0.0f}}}}",
    )


def add_grad_add_cases(header: Header, rng: np.random.Generator) -> None:
    count = 45
    for case_name, a_kind, b_kind, sum_kind in GRAD_ADD_CASES:
        a, b = Grad.random(rng, (count,), a_kind), Grad.random(rng, (count,), b_kind)
        base = f"grad_add_{case_name}"
        bound = summation_bound(a.real + b.real, np.abs(a.real) + np.abs(b.real), 2)
        header.case(
            "GradAddCase",
            f'{{"grad_add/{case_name}", {count}, {a.operand(header, base + "_a")}, {b.operand(header, base + "_b")}, '
            f"{expected_grad(header, base, sum_kind, a.real + b.real, bound)}}}",
        )


def unary_derivative(function: int, v: np.ndarray, alpha: float) -> np.ndarray:
    """f' of tt_unary_grad_s8 at the real values v of the saved tensor (y or x)."""
    if function == UNARY_LOGISTIC:
        return v * (1 - v)
    if function == UNARY_TANH:
        return 1 - v * v
    if function == UNARY_HARD_SWISH:
        return np.where(v <= -3, 0.0, np.where(v >= 3, 1.0, (2 * v + 3) / 6))
    return np.where(v > 0, 1.0, alpha)


def add_unary_cases(header: Header, rng: np.random.Generator) -> None:
    count = 53
    for case_name, function, scale, zero_point, alpha in UNARY_CASES:
        saved = rng.integers(-128, 128, count).astype(np.int8)
        v = np.float64(np.float32(scale)) * (saved.astype(np.float64) - zero_point)
        derivative = unary_derivative(function, v, alpha)
        saved_array = header.array(f"unary_{case_name}_saved", saved)
        params = f"{{{function}, {f32(alpha)}, {{{f32(scale)}, {zero_point}}}}}"
        for kind in GRAD_TYPES:
            grad = Grad.random(rng, (count,), kind)
            base = f"unary_{case_name}_{kind}"
            want = derivative * grad.real
            # A few float32 roundings in v and f'(v), one in the product: bounded by the terms' size.
            bound = 8 * EPS * np.abs(grad.real) * (1 + np.abs(v) + v * v) + EPS * np.abs(want)
            header.case(
                "UnaryGradCase",
                f'{{"unary_grad/{case_name}/{kind}", {params}, {count}, {saved_array}, '
                f"{grad.operand(header, base + '_grad')}, {expected_grad(header, base, kind, want, bound)}}}",
            )


def add_mul_cases(header: Header, rng: np.random.Generator) -> None:
    scale, zero_point = 0.03, 5
    for case_name, result_shape, other_shape in MUL_CASES:
        y_shape = np.broadcast_shapes(result_shape, other_shape)
        other = rng.integers(-128, 128, other_shape).astype(np.int8)
        other_real = (other.astype(np.float64) - zero_point) * np.float64(np.float32(scale))
        broadcast = tuple(axis for axis, size in enumerate(result_shape) if size == 1 and y_shape[axis] > 1)
        terms = math.prod(y_shape) // math.prod(result_shape)
        for kind in GRAD_TYPES:
            grad = Grad.random(rng, y_shape, kind)
            base = f"mul_{case_name}_{kind}"
            want = (grad.real * other_real).sum(axis=broadcast, keepdims=True)
            abs_sum = (np.abs(grad.real) * np.abs(other_real)).sum(axis=broadcast, keepdims=True)
            header.case(
                "MulGradCase",
                f'{{"mul_grad/{case_name}/{kind}", {{{f32(scale)}, {zero_point}}}, {dims(y_shape)}, '
                f"{grad.operand(header, base + '_grad')}, {dims(other_shape)}, {header.array(base + '_other', other)}, "
                f"{dims(result_shape)}, {expected_grad(header, base, kind, want, summation_bound(want, abs_sum, terms))}}}",
            )


def add_element_loss_cases(header: Header, rng: np.random.Generator) -> None:
    """Binary cross-entropy and mean squared error, each with predictions saturated at both int8 limits."""
    scale, zero_point, batch = 0.08, 3, 9  # logits up to +-10: exp(-|z|) below 0.05 takes the series
    logits = rng.integers(-128, 128, batch).astype(np.int8)
    labels = rng.integers(0, 2, batch).astype(np.int32)
    logits[:2], labels[:2] = [127, -128], [1, 0]  # pushed further out: no gradient
    z = np.float64(np.float32(scale)) * (logits.astype(np.float64) - zero_point)
    terms = np.maximum(z, 0) - labels * z + np.log1p(np.exp(-np.abs(z)))
    grad = (1 / (1 + np.exp(-z)) - labels) / batch
    grad[((logits == 127) & (grad < 0)) | ((logits == -128) & (grad > 0))] = 0.0
    # tt_expf / tt_logf within a few ulp (factor 2 as for the softmax loss), the log1p series' 1.3e-6 of
    # terms below 0.05, and the summation over the batch.
    loss_bound = (2 * (batch + 8) * EPS * (np.abs(z) * 2 + 1).sum() + 1.3e-6 * 0.05 * batch) / batch
    grad_bound = 2 * 16 * EPS / batch
    arrays = header.array("bce_logits", logits), header.array("bce_labels", labels)
    for kind in GRAD_TYPES:
        expected = expected_grad(header, f"bce_{kind}", kind, grad, np.full(batch, grad_bound))
        header.case(
            "ElementLossCase",
            f'{{"binary_cross_entropy/saturated/{kind}", {{{f32(scale)}, {zero_point}}}, {{0.0f, 0}}, {batch}, '
            f"{arrays[0]}, {arrays[1]}, nullptr, {f32(terms.mean())}, {f32(loss_bound)}, {expected}}}",
        )
    (o_scale, o_zero), (t_scale, t_zero), count = (0.02, -10), (0.03, 4), 40
    output = rng.integers(-128, 128, count).astype(np.int8)
    target = rng.integers(-128, 128, count).astype(np.int8)
    output[:2], target[:2] = [127, -128], [-128, 127]  # pushed further out: no gradient
    o = np.float64(np.float32(o_scale)) * (output.astype(np.float64) - o_zero)
    t = np.float64(np.float32(t_scale)) * (target.astype(np.float64) - t_zero)
    d = o - t
    grad = 2 * d / count
    grad[((output == 127) & (grad < 0)) | ((output == -128) & (grad > 0))] = 0.0
    loss_bound = (count + 8) * EPS * 2 * ((np.abs(o) + np.abs(t)) ** 2).sum() / count
    grad_bound = 8 * EPS * 2 * (np.abs(o) + np.abs(t)) / count
    arrays = header.array("mse_output", output), header.array("mse_target", target)
    for kind in GRAD_TYPES:
        expected = expected_grad(header, f"mse_{kind}", kind, grad, grad_bound)
        header.case(
            "ElementLossCase",
            f'{{"mean_squared_error/saturated/{kind}", {{{f32(o_scale)}, {o_zero}}}, {{{f32(t_scale)}, {t_zero}}}, '
            f"{count}, {arrays[0]}, nullptr, {arrays[1]}, {f32((d * d).mean())}, {f32(loss_bound)}, {expected}}}",
        )


def add_sgd_cases(header: Header, rng: np.random.Generator) -> None:
    for spec in SGD_CASES:
        outer, channels, inner = spec.shape
        base = f"sgd_{spec.name}"
        dtype = np.int32 if spec.s32 else np.int8
        if spec.s32:
            parameter = rng.integers(-20000, 20000, spec.shape).astype(np.int32)
            scales = rng.uniform(1e-4, 4e-4, channels if spec.per_channel else 1).astype(np.float32)
        else:
            parameter = rng.integers(-127, 128, spec.shape).astype(np.int8)
            scales = rng.uniform(0.005, 0.03, channels if spec.per_channel else 1).astype(np.float32)
        grad = Grad.random(rng, (outer, spec.update, inner), spec.grad)
        momentum = rng.normal(0, 0.01, (outer, spec.update, inner)).astype(np.float32) if spec.momentum else None
        if spec.s32 and momentum is not None:  # the first element saturates at the int32 maximum
            parameter.reshape(-1)[0] = 2**31 - 4
            momentum.reshape(-1)[0] = -0.05
        seed = 12345
        expected, expected_momentum, final_state = sgd_step(
            parameter,
            scales,
            grad.stored,
            grad.scale if spec.grad == "s8" else None,
            spec.learning_rate,
            spec.qas,
            spec.rounding,
            seed,
            momentum,
            spec.momentum,
        )
        suffix = "s32" if spec.s32 else "s8"
        initial = header.array(f"{base}_parameter", parameter)
        want = header.array(f"{base}_expected", expected.astype(dtype))
        parameters = f"nullptr, nullptr, {initial}, {want}" if spec.s32 else f"{initial}, {want}, nullptr, nullptr"
        momenta = (
            f"{header.array(base + '_momentum', momentum)}, {header.array(base + '_expected_momentum', expected_momentum)}"
            if momentum is not None
            else "nullptr, nullptr"
        )
        header.case(
            "SgdCase",
            f'{{"sgd_update_{suffix}/{spec.name}/{spec.grad}", {str(spec.s32).lower()}, '
            f"{{{f32(spec.learning_rate)}, {f32(spec.momentum)}, {spec.qas}, {spec.rounding}}}, {seed}u, {final_state}u, "
            f"{scales.size}, {header.array(base + '_scales', scales)}, {{{outer}, {channels}, {spec.update}, {inner}}}, "
            f"{grad.operand(header, base + '_grad')}, {momenta}, {parameter.size}, {parameters}}}",
        )


def add_crc_cases(header: Header, rng: np.random.Generator) -> None:
    for case_name, data in CRC_CASES:
        data = data if data is not None else rng.integers(0, 256, 100).astype(np.uint8).tobytes()
        array = header.array(f"crc_{case_name}", np.frombuffer(data, np.uint8))
        header.case("CrcCase", f'{{"crc32/{case_name}", {array}, {len(data)}, {zlib.crc32(data)}u}}')


def add_top_level_cases(header: Header, rng: np.random.Generator) -> None:
    """tt_grad_top_level: max |level|, over word-sized blocks and a tail, from an unaligned start."""
    levels = rng.integers(-90, 100, 43).astype(np.int8)  # the top on the positive side
    negative = levels.copy()
    negative[41] = -128  # the tail of a 41-level run from index 1 (10 words, then 1); |-128| is 128
    cases = [
        ("positive_top_unaligned", levels, 1, 41),
        ("minus_128_in_tail", negative, 1, 41),
        ("negative_top_in_a_word", -levels, 0, 43),
        ("all_zero", np.zeros(9, np.int8), 0, 9),
        ("tail_only", levels, 2, 3),
        ("empty", levels, 0, 0),
    ]
    for case_name, values, start, count in cases:
        array = header.array(f"top_level_{case_name}", values)
        top = int(np.max(np.abs(values[start : start + count].astype(np.int32)), initial=0))
        header.case("TopLevelCase", f'{{"grad_top_level/{case_name}", {array} + {start}, {count}, {top}}}')


def fleet_blob(tensor: int, s32: bool, scales: np.ndarray, values: np.ndarray, round_: int, samples: int) -> bytes:
    """An update blob for one tensor, from the layout kernels/core/fleet/tt_fleet_update.h documents."""
    data = values.astype("<i4" if s32 else "i1").tobytes()
    data += bytes(-len(data) % 4)
    payload = struct.pack("<IIIIIII", round_, samples, 1, tensor, 2 if s32 else 1, values.size, scales.size)
    payload += scales.astype("<f4").tobytes() + data
    return struct.pack("<4sHHII", b"TTFU", 1, 1, len(payload), zlib.crc32(payload)) + payload


def with_crc(blob: bytes) -> bytes:
    return blob[:12] + struct.pack("<I", zlib.crc32(blob[16:])) + blob[16:]


def add_fleet_cases(header: Header, rng: np.random.Generator) -> None:
    # (name, int32?, tensor index, [outer, channels, trained, inner], per-channel scales?)
    for name, s32, tensor, (outer, channels, trained, inner), per_channel in [
        ("s8_partial_middle_axis", False, 7, (2, 4, 3, 5), True),
        ("s32_bias", True, 12, (1, 6, 6, 1), True),
        ("s8_per_tensor", False, 3, (3, 2, 1, 2), False),
    ]:
        base = f"fleet_{name}"
        low, high = (-(10**6), 10**6) if s32 else (-127, 127)
        dtype = np.int32 if s32 else np.int8
        initial = rng.integers(low, high, (outer, channels, inner), endpoint=True).astype(dtype)
        incoming = rng.integers(low, high, (outer, trained, inner), endpoint=True).astype(dtype)
        scales = rng.uniform(1e-4, 0.03, trained if per_channel else 1).astype(np.float32)
        applied = initial.copy()
        applied[:, :trained, :] = incoming
        upload = fleet_blob(tensor, s32, scales, initial[:, :trained, :], 4, 250)
        good = fleet_blob(tensor, s32, scales, incoming, 5, 0)
        header_end = 16 + 12 + 16  # blob header, round/samples/count, the tensor's header
        cases = [("apply", good, "TT_SUCCESS", applied)]
        flipped = bytearray(good)
        flipped[-1] ^= 0x01
        cases.append(("bad_crc", bytes(flipped), "TT_BLOB_BAD_CHECKSUM", initial))
        other_scale = bytearray(good)
        struct.pack_into("<f", other_scale, header_end, np.float32(scales[0]) * np.float32(2))
        cases.append(("other_scale", with_crc(bytes(other_scale)), "TT_FLEET_MISMATCH", initial))
        cases.append(("truncated", good[:-4], "TT_BLOB_TRUNCATED", initial))
        if not s32:
            minus128 = bytearray(good)
            minus128[header_end + 4 * scales.size + len(incoming.reshape(-1)) - 1] = 0x80
            cases.append(("int8_minus_128", with_crc(bytes(minus128)), "TT_FLEET_OUT_OF_RANGE", initial))
        initial_name = header.array(f"{base}_initial", initial)
        upload_name = header.array(f"{base}_upload", np.frombuffer(upload, np.uint8))
        scales_name = header.array(f"{base}_scales", scales)
        for kind, blob, status, expected in cases:
            blob_name = header.array(f"{base}_{kind}_blob", np.frombuffer(blob, np.uint8))
            expected_name = header.array(f"{base}_{kind}_expected", expected)
            values = f"nullptr, {initial_name}" if s32 else f"{initial_name}, nullptr"
            want = f"nullptr, {expected_name}" if s32 else f"{expected_name}, nullptr"
            header.case(
                "FleetCase",
                f'{{"fleet_update/{name}/{kind}", {"TT_FLEET_S32" if s32 else "TT_FLEET_S8"}, {tensor}, {outer}, {channels}, '
                f"{trained}, {inner}, {scales.size}, {scales_name}, {initial.size}, {values}, {upload_name}, {len(upload)}, "
                f"4, 250, {blob_name}, {len(blob)}, {status}, {want}}}",
            )


CASE_WRITERS: list[Callable[[Header, np.random.Generator], None]] = [
    add_layer_cases,
    add_forward_cases,
    add_bias_cases,
    add_pool_cases,
    add_activation_cases,
    add_loss_cases,
    add_grad_add_cases,
    add_sgd_cases,
    add_crc_cases,
    add_unary_cases,
    add_mul_cases,
    add_element_loss_cases,
    add_fleet_cases,
    add_top_level_cases,
]


def references() -> str:
    header = Header()
    rng = np.random.default_rng(SEED)
    for write in CASE_WRITERS:
        write(header, rng)
    largest = max(int(a.split("[")[1].split("]")[0]) for a in header.arrays)
    return header.text(largest)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: generate_references.py OUT.h", file=sys.stderr)
        return 2
    Path(argv[1]).write_text(references())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

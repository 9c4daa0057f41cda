"""The scratch a TT_TILED_STAGE op asks TFLM for, as its kernel computes it (kernels/core/common/tiled_stage.h).

The op runs a frozen first stage of convs patch by patch (tinytrain_tflm.passes.tiling). Per tile it needs each
stage tensor over a window (the hull over the tensor's readers, clipped), and copies the input's first; the
patches of one tile share one
buffer by lifetime, each sized for its largest tile, and every tile reuses it. Tiles run column strip by
column strip, each strip's bands top to bottom, and an op computes only the rows of its patch the band above
did not (_band's computed): a patch sharing rows with the band above lives for the whole band. The memory plan reserves that
buffer while the op runs, so it must be the kernel's number to the byte: tests/test_tiling.py checks this
mirror against the kernel library's own TinyTrainTiledStageScratch.
"""

from __future__ import annotations

import numpy as np

from ..backend import schema_generated as generated

# The columns of a description row (schema/tinytrain.json, TT_TILED_STAGE's description input).
FIELDS = (
    "kind input input2 height width channels kernel_h kernel_w stride_h stride_w dilation_h dilation_w pad_top "
    "pad_left depth_multiplier input_offset output_offset activation_min activation_max input2_offset left_shift "
    "input_multiplier input_shift input2_multiplier input2_shift output_multiplier output_shift padding activation "
    "output_scale_bits"
).split()
COLUMN = {name: i for i, name in enumerate(FIELDS)}
CONVS = (generated.STAGE_OP_CONV, generated.STAGE_OP_DEPTHWISE)


def input_shape(graph, op) -> tuple[int, ...]:
    """The shape of a TT_TILED_STAGE op's input: its input tensor's, or for a streamed stage (input 0 omitted,
    tinytrain_tflm.passes.tiling.stream_input) the sample's, held by its last input."""
    if op.inputs[0] >= 0:
        return graph.tensors[op.inputs[0]].shape
    return tuple(int(size) for size in graph.tensors[op.inputs[-1]].data)


def streamed_sample(graph) -> int | None:
    """The tensor standing for the sample of a model whose tiled stage streams it (its shape constant), or None."""
    for op in graph.ops:
        if op.kind == generated.TILED_STAGE and op.inputs[0] < 0:
            return op.inputs[-1]
    return None


def tile_span(size: int, parts: int, tile: int) -> tuple[int, int]:
    """Tile `tile` of `parts` along an axis of `size`: edges at round(t * size / parts), halves up."""
    return tuple((2 * t * size + parts) // (2 * parts) for t in (tile, tile + 1))


def _window(row: np.ndarray, axis: int, span: tuple[int, int]) -> tuple[int, int]:
    if row[COLUMN["kind"]] == generated.STAGE_OP_ADD:
        return span
    names = ("kernel_h", "stride_h", "dilation_h", "pad_top") if axis == 0 else ("kernel_w", "stride_w", "dilation_w", "pad_left")
    kernel, stride, dilation, pad = (int(row[COLUMN[name]]) for name in names)
    return span[0] * stride - pad, (span[1] - 1) * stride - pad + (kernel - 1) * dilation + 1


def _sources(row: np.ndarray) -> list[int]:
    count = 2 if row[COLUMN["kind"]] == generated.STAGE_OP_ADD else 1
    return [int(row[COLUMN["input"]]), int(row[COLUMN["input2"]])][:count]


def _sizes(description: np.ndarray, input_shape: tuple[int, ...], axis: int) -> list[int]:
    return [input_shape[1 + axis]] + [int(r[COLUMN["height" if axis == 0 else "width"]]) for r in description]


def _have(description: np.ndarray, need: list[tuple[int, int]], axis: int) -> list[tuple[int, int]]:
    """Where each tensor's bytes lie along the axis: its need, or for a PAD's output its input's, shifted."""
    have = [need[0]]  # the input's patch is copied into the scratch buffer
    for row in description:
        source = have[int(row[COLUMN["input"]]) + 1]
        if row[COLUMN["kind"]] == generated.STAGE_OP_PAD:
            pad = int(row[COLUMN["pad_top" if axis == 0 else "pad_left"]])
            have.append((source[0] + pad, source[1] + pad))
        else:
            have.append(need[len(have)])
    return have


def _strip(description: np.ndarray, input_shape: tuple[int, ...], tiles: tuple[int, int], tx: int):
    """(need, have) columns of every stage tensor (0 the input, k + 1 op k's output) in column strip tx (the
    kernel's Need: a tile's columns depend on its strip alone), or None where the kernel refuses the stage (a
    tensor no later op reads, a conv patch starting left of its window)."""
    n, sizes = len(description), _sizes(description, input_shape, 1)
    need = [(0, 0)] * (n + 1)
    need[n] = tile_span(sizes[n], tiles[1], tx)
    for k in range(n - 1, -1, -1):
        if need[k + 1][1] <= need[k + 1][0]:
            return None
        for source in _sources(description[k]):
            a, b = _window(description[k], 1, need[k + 1])
            window, old = (max(0, a), min(sizes[source + 1], b)), need[source + 1]
            need[source + 1] = window if old[1] <= old[0] else (min(old[0], window[0]), max(old[1], window[1]))
    have = _have(description, need, 1)
    for k, row in enumerate(description):
        if row[COLUMN["kind"]] in CONVS and have[int(row[COLUMN["input"]]) + 1][0] < _window(row, 1, need[k + 1])[0]:
            return None
    return need, have


def _band(description: np.ndarray, input_shape: tuple[int, ...], tiles: tuple[int, int], ty: int, previous):
    """(need, have, computed) rows of every stage tensor in band ty (the kernel's Need), computed[t] the rows
    of need this band computes: past the rows of `previous` (the band above's need, None for the first band),
    which its patch keeps; None where the kernel refuses the stage (the first band needs none of a tensor)."""
    n, sizes = len(description), _sizes(description, input_shape, 0)
    need = [(0, 0)] * (n + 1)
    computed = [(0, 0)] * (n + 1)
    need[n] = tile_span(sizes[n], tiles[0], ty)
    for k in range(n - 1, -1, -1):
        rows = computed[k + 1] = need[k + 1]  # a PAD's output is its input's patch: its rows come with it
        if previous is None and rows[1] <= rows[0]:
            return None
        above = previous[k + 1] if previous is not None else (0, 0)
        if description[k][COLUMN["kind"]] != generated.STAGE_OP_PAD and rows[1] > rows[0] and above[0] <= rows[0] < above[1]:
            computed[k + 1] = (above[1], rows[1])
        if computed[k + 1][1] <= computed[k + 1][0]:
            continue
        for source in _sources(description[k]):
            a, b = _window(description[k], 0, computed[k + 1])
            window, old = (max(0, a), min(sizes[source + 1], b)), need[source + 1]
            if window[1] > window[0]:
                need[source + 1] = window if old[1] <= old[0] else (min(old[0], window[0]), max(old[1], window[1]))
    computed[0] = need[0]
    return need, _have(description, need, 0), computed


def _tiles(description: np.ndarray, input_shape: tuple[int, ...], tiles: tuple[int, int]):
    """(bands, strips): _band of every band, top to bottom (each after the one above), and _strip of every
    strip; None where the kernel refuses the tiling. A tile is a band and a strip: the kernel runs them
    strip by strip, bands top to bottom."""
    strips = [_strip(description, input_shape, tiles, tx) for tx in range(tiles[1])]
    bands, previous = [], None
    for ty in range(tiles[0]):
        bands.append(_band(description, input_shape, tiles, ty, previous))
        if bands[-1] is None:
            return None
        previous = bands[-1][0]
    return None if None in strips else (bands, strips)


# CMSIS-NN's MVE depthwise kernel takes input channels in blocks of this many (its CH_IN_BLOCK_MVE), and
# runs a depthwise conv of one input channel and more than this many outputs as a conv (its
# CONVERT_DW_CONV_WITH_ONE_INPUT_CH_AND_OUTPUT_CH_ABOVE_THRESHOLD, for GCC).
_MVE_CHANNEL_BLOCK = 124
_MVE_ONE_CHANNEL_AS_CONV = 8


def _im2col_bytes(taps: int, convs: str) -> int:
    """arm_convolve_s8's buffer for `taps` input values per output: two int16 columns (DSP), four 16-byte
    aligned int8 columns (MVE)."""
    return 4 * (-(-taps // 4) * 4) if convs == "dsp" else 64 * -(-taps // 16)


def conv_call_scratch(
    depthwise: bool,
    windows: tuple[tuple[int, int, int, int], tuple[int, int, int, int]],
    input_hwc: tuple[int, int, int],
    output_wc: tuple[int, int],
    convs: str,
) -> int:
    """What CMSIS-NN asks for one call of a convolution (kernels/cmsis_nn/.../*_get_buffer_size.cc, CMSIS-NN's
    *_get_buffer_size), built with GCC: `windows` (kernel, stride, dilation, pad before) along rows and
    columns (as geometry.window gives them), its input rows `input_hwc` and its output (width, channels)."""
    (kernel_h, _, dilation_h, pad_top), (kernel_w, stride_w, dilation_w, pad_left) = windows
    dilated = dilation_h != 1 or dilation_w != 1
    unpadded = pad_top == pad_left == 0
    rows, _, channels = input_hwc
    out_channels = output_wc[1]
    if not depthwise:
        if kernel_h == kernel_w == 1 and unpadded and not dilated:
            return 0  # the 1x1 paths: no buffer with GCC
        return _im2col_bytes(kernel_h * kernel_w * channels, convs)
    if convs == "mve" and channels == 1 and out_channels > _MVE_ONE_CHANNEL_AS_CONV:
        # run as a conv of `out_channels` filters over the one channel, whose filter it transposes first
        transposed = out_channels * kernel_h * kernel_w
        if kernel_h == kernel_w == 1 and unpadded and not dilated:
            return transposed
        if rows == 1 and kernel_h == 1 and dilation_w == 1 and stride_w % 4 == 0:
            return transposed + _one_by_n_bytes(kernel_w, stride_w, input_hwc, output_wc[0], pad_left)
        return transposed + _im2col_bytes(kernel_h * kernel_w, convs)
    if channels != out_channels or dilated:
        return 0  # arm_depthwise_conv_s8: no buffer
    if convs == "dsp":
        return 0 if kernel_h == kernel_w == 3 and max(pad_top, pad_left) <= 1 else 2 * channels * kernel_h * kernel_w
    return 4 * _MVE_CHANNEL_BLOCK * kernel_h * kernel_w


def _one_by_n_bytes(kernel_w: int, stride: int, input_hwc: tuple[int, int, int], output_w: int, pad_left: int) -> int:
    """arm_convolve_1_x_n_s8's MVE buffer, for a one-channel input row (the depthwise-as-conv case above)."""
    _, width, channels = input_hwc
    total_pad = (output_w - 1) * stride + kernel_w - width
    odd = total_pad % 2
    right = max(1, (pad_left + odd + stride - 1) // stride) if pad_left + odd else 0
    left = max(1, (pad_left + stride - 1) // stride) if pad_left else 0
    if right + max(output_w - right - left, 0) + left != output_w:
        return _im2col_bytes(kernel_w * channels, "mve")
    left_bytes = pad_left * channels
    right_bytes = right * channels if odd else left_bytes
    return max(kernel_w * channels + left_bytes, (kernel_w - 1) * channels + right_bytes)


def _conv_scratch(description: np.ndarray, input_shape: tuple[int, ...], bands, strips, convs: str) -> int:
    """The most scratch one CMSIS-NN call of the stage's convs may ask for on any tile (the kernel's
    TileConvScratch): each conv runs over its input's patch (have, from the first row its computed rows'
    window reads) for its computed rows, the patch's border as padding, in one call or one per output row
    (kernels/cmsis_nn/common/conv_rows.h). A call's rows come from its band, its columns from its strip."""
    channels = [input_shape[3]] + [int(row[COLUMN["channels"]]) for row in description]
    most = 0
    for k, row in enumerate(description):
        if row[COLUMN["kind"]] not in CONVS:
            continue
        t = int(row[COLUMN["input"]]) + 1
        stride, dilation, kernel = (int(row[COLUMN[name]]) for name in ("stride_h", "dilation_h", "kernel_h"))
        columns_window = tuple(int(row[COLUMN[name]]) for name in ("kernel_w", "stride_w", "dilation_w"))
        depthwise = row[COLUMN["kind"]] == generated.STAGE_OP_DEPTHWISE
        span = dilation * (kernel - 1) + 1
        calls = set()  # (input rows, top pad) of every call
        for _, have, computed in bands:
            out_rows = computed[k + 1]
            if out_rows[1] <= out_rows[0]:
                continue
            window = _window(row, 0, out_rows)[0]
            in_r0, in_r1 = max(have[t][0], window), have[t][1]
            pad_top = in_r0 - window
            calls.add((in_r1 - in_r0, pad_top))  # the whole patch in one call, when its output misses its input
            for oy in range(out_rows[1] - out_rows[0]):
                top = oy * stride - pad_top
                first, stop = max(top, 0), min(top + span, in_r1 - in_r0)
                calls.add((1, span) if stop <= first else (stop - first, first - top))
        columns = {(have[t][1] - have[t][0], need[k + 1][1] - need[k + 1][0], have[t][0] - _window(row, 1, need[k + 1])[0])
                   for need, have in strips}  # fmt: skip
        for rows, row_pad in calls:
            for width, out_width, pad_left in columns:
                windows = ((kernel, stride, dilation, row_pad), (*columns_window, pad_left))
                size = conv_call_scratch(depthwise, windows, (rows, width, channels[t]), (out_width, channels[k + 1]), convs)
                most = max(most, size)
    return most


MAX_EXTENT = 1 << 15  # the kernel's bound on every size and window field


def _well_formed(description: np.ndarray, input_shape: tuple[int, ...], tiles: tuple[int, int]) -> bool:
    """What this mirror needs before it walks the tiles (the kernel's Prepare checks more): rows of known
    kinds reading earlier tensors, sizes and windows in range, at most one tile per output row and column."""
    if description is None or description.ndim != 2 or description.shape[1] != len(FIELDS) or len(input_shape) != 4:
        return False
    if (
        not 1 <= len(description) <= generated.STAGE_MAX_OPS
        or not 1 <= min(input_shape[1:]) <= max(input_shape[1:]) <= MAX_EXTENT
    ):
        return False
    columns = {name: description[:, COLUMN[name]].astype(np.int64) for name in FIELDS}
    positions = np.arange(len(description))
    sized = [columns[name] for name in ("height", "width", "channels", "kernel_h", "kernel_w", "stride_h", "stride_w")]
    sized += [columns["dilation_h"], columns["dilation_w"]]
    adds = columns["kind"] == generated.STAGE_OP_ADD
    return bool(
        np.all((columns["kind"] >= generated.STAGE_OP_CONV) & (columns["kind"] <= generated.STAGE_OP_ADD))
        and np.all((columns["input"] >= -1) & (columns["input"] < positions))
        and np.all(np.where(adds, (columns["input2"] >= -1) & (columns["input2"] < positions), columns["input2"] == -1))
        and all(np.all(np.where(adds, True, (c >= 1) & (c <= MAX_EXTENT))) for c in sized)
        and all(np.all((columns[name] >= 0) & (columns[name] <= MAX_EXTENT)) for name in ("pad_top", "pad_left"))
        and 1 <= tiles[0] <= description[-1, COLUMN["height"]]
        and 1 <= tiles[1] <= description[-1, COLUMN["width"]]
    )


def scratch_bytes(
    description: np.ndarray, input_shape: tuple[int, ...], tiles: tuple[int, int], convs: str | None = None
) -> int | None:
    """Bytes of scratch the kernel requests for this stage on this input, or None where it refuses the tiling
    (or the description is malformed). `convs` names the conv kernels the stage calls, whose own scratch
    follows the patches (16-byte aligned): None for the portable core (none), "dsp" or "mve" for CMSIS-NN's
    on a Cortex-M with the DSP extension or with Helium (kernels/cmsis_nn, one call per output row)."""
    if not _well_formed(description, input_shape, tiles):
        return None
    n = len(description)
    walked = _tiles(description, input_shape, tiles)
    if walked is None:
        return None
    bands, strips = walked
    channels = [input_shape[3]] + [int(row[COLUMN["channels"]]) for row in description]
    most_rows = [max(band[0][t][1] - band[0][t][0] for band in bands) for t in range(n + 1)]
    most_cols = [max(strip[0][t][1] - strip[0][t][0] for strip in strips) for t in range(n + 1)]
    size = [most_rows[t] * most_cols[t] * channels[t] for t in range(n + 1)]
    carried = [any(band[2][t][0] > band[0][t][0] for band in bands) for t in range(n + 1)]
    conv_bytes = _conv_scratch(description, input_shape, bands, strips, convs) if convs is not None else 0
    root = list(range(n + 1))
    last = [0] * (n + 1)
    for k, row in enumerate(description):
        if row[COLUMN["kind"]] == generated.STAGE_OP_PAD:
            root[k + 1] = root[int(row[COLUMN["input"]]) + 1]
        for source in _sources(row):
            last[root[source + 1]] = k
    last = [n if carried[t] else last[t] for t in range(n + 1)]  # kept for the band below
    offset = [-1] * (n + 1)
    total = 0
    for t in range(n + 1):
        if root[t] != t or (t == n and tiles[1] == 1):
            continue
        length, at, moved, first = -(-size[t] // 4) * 4, 0, True, -1 if carried[t] else t - 1
        while moved:  # past every earlier patch alive with this one that it would overlap
            moved = False
            for u in range(t):
                if offset[u] >= 0 and last[u] >= first and at < offset[u] + size[u] and offset[u] < at + length:
                    at, moved = -(-(offset[u] + size[u]) // 4) * 4, True
        offset[t] = at
        total = max(total, at + length)
    return -(-total // 16) * 16 + conv_bytes if conv_bytes else total


def stage_work(description: np.ndarray, input_shape: tuple[int, ...], tiles: tuple[int, int]) -> int | None:
    """Multiply-accumulates of the stage's convs over every tile as the kernel computes them (the columns'
    halos recomputed, the rows' computed once: _band), or None where the kernel refuses the tiling."""
    if not _well_formed(description, input_shape, tiles):
        return None
    walked = _tiles(description, input_shape, tiles)
    if walked is None:
        return None
    bands, strips = walked
    channels = [input_shape[3]] + [int(row[COLUMN["channels"]]) for row in description]
    work = 0
    for k, row in enumerate(description):
        if row[COLUMN["kind"]] not in CONVS:
            continue
        rows = sum(max(r1 - r0, 0) for (r0, r1) in (band[2][k + 1] for band in bands))
        cols = sum(c1 - c0 for (c0, c1) in (strip[0][k + 1] for strip in strips))
        depth = 1 if row[COLUMN["kind"]] == generated.STAGE_OP_DEPTHWISE else channels[int(row[COLUMN["input"]]) + 1]
        work += rows * cols * channels[k + 1] * int(row[COLUMN["kernel_h"]]) * int(row[COLUMN["kernel_w"]]) * depth
    return work

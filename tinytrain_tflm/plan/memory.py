"""Memory plan: where every arena byte of a (training) model goes, without running TFLM.

The persistent part (the "tail") is estimated from counts TFLM's own data
structures give (per tensor, per op, per graph input/output), the variables'
sizes, and a table of what each kernel allocates, measured once per op kind on
the pinned wheel (x86-64). `project_32bit` turns the x86 bookkeeping into a
32-bit MCU's (4-byte pointers); kernel data keeps its x86 size, so the
projection errs high.

The non-persistent part of TFLM's arena (the "head") holds every tensor that is
neither constant nor a variable, each for its lifetime in op order. This module
derives those lifetimes exactly as TFLM does (micro_allocation_info.cc: graph
inputs live from scope 0, op i is scope i + 1, graph outputs live to the end)
and places them with TFLM's greedy planner (greedy_memory_planner.cc: largest
first, stable order for equal sizes, each at the first gap among buffers live
at the same time), so the head it predicts is the one TFLM allocates.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import target
from ..backend import schema, schema_generated
from ..errors import TinyTrainError
from ..frontend import ir
from . import geometry, overlap, tiled_stage

ALIGNMENT = 16  # TFLM's MicroArenaBufferAlignment()

ACTIVATION = "activations"
SAVED = "saved for backward"
GRADIENT = "gradients"


def _aligned(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


def tensor_bytes(tensor: ir.Tensor) -> int:
    """Bytes of a tensor's data, aligned as TFLM allocates it in the arena."""
    return _aligned(int(np.prod(tensor.shape, dtype=np.int64)) * tensor.dtype.itemsize)


def is_planned(tensor: ir.Tensor) -> bool:
    """Whether TFLM's planner places the tensor in the head: constants stay in the model, variables in the tail."""
    return tensor.data is None and not tensor.is_variable


@dataclasses.dataclass(frozen=True)
class MemoryOptions:
    """How the compiler shrinks the arena (see compile() for each option). Tiling's and scheduling's
    memory estimates read it, since they must estimate the model as it will be emitted. Lives with the
    planner because the passes that weigh their choices by its plan take it."""

    # The defaults are the options that give the smallest arena: on MobileNetV2 with MIT's 99kb scheme,
    # tiling alone takes the 32-bit arena from 378 KB to 277 KB and flash requantization then to 200 KB.
    tiles: tuple[int, int] | str | None = "auto"
    overlap_buffers: bool = True
    flash_requantization: bool = True
    # The sample is not an arena tensor: the tiled stage reads it from the firmware (passes.tiling.stream_input).
    stream_input: bool = False


@dataclasses.dataclass
class Buffer:
    tensor: int
    size: int  # bytes, aligned as TFLM allocates them
    first: int  # scope of creation (0 = before the first op)
    last: int  # scope of last use
    category: str
    offset: int = -1
    # (start, size, last scope) of byte ranges that die before the whole buffer (rows a tiled stage has
    # sliced for the last time); empty: all of it lives to `last`. Only in plans written into the model.
    bands: tuple[tuple[int, int, int], ...] = ()

    def parts(self) -> tuple[tuple[int, int, int], ...]:
        return self.bands or ((0, self.size, self.last),)


def _lifetimes(graph: ir.Graph) -> dict[int, list[int]]:
    spans: dict[int, list[int]] = {}

    def touch(tensor: int, scope: int) -> None:
        span = spans.setdefault(tensor, [scope, scope])
        span[1] = scope

    for tensor in graph.inputs:
        touch(tensor, 0)
    for scope, op in enumerate(graph.ops, start=1):
        for tensor in op.outputs:
            spans.setdefault(tensor, [scope, scope])
        for tensor in op.inputs + op.outputs:
            if tensor >= 0:
                touch(tensor, scope)
    for tensor in graph.outputs:
        spans.setdefault(tensor, [len(graph.ops), len(graph.ops)])[1] = len(graph.ops)
    return spans


def _categories(graph: ir.Graph) -> dict[int, str]:
    """Role of each planned tensor in a training model (everything is an activation in an inference model)."""
    loss = next((i for i, op in enumerate(graph.ops) if op.kind in schema.LOSS_OPS), None)
    if loss is None:
        return {}
    produced_backward = {t for op in graph.ops[loss:] for t in op.outputs}
    read_backward = {t for op in graph.ops[loss + 1 :] for t in op.inputs}
    roles = {}
    for op in graph.ops[:loss]:
        for tensor in op.outputs:
            roles[tensor] = SAVED if tensor in read_backward else ACTIVATION
    roles.update({t: GRADIENT for t in produced_backward})
    loss_op = graph.ops[loss]
    roles[loss_op.outputs[0]] = ACTIVATION  # the loss value itself
    return roles


def scratch_bytes(graph: ir.Graph, op: ir.Op) -> int:
    """Scratch an op requests from TFLM's planner in Prepare: a TT_TILED_STAGE op's buffer (its convs' own
    included where the model's target runs them with CMSIS-NN); TFLM's quantized MEAN's int32 accumulator per
    output element and two int arrays (input rank, axis count); else none."""
    if op.kind == "MEAN":
        x = graph.tensors[op.inputs[0]]
        if x.dtype not in (np.int8, np.int16):
            return 0
        requests = (
            4 * int(np.prod(graph.tensors[op.outputs[0]].shape)),
            4 * len(x.shape),
            4 * int(np.prod(graph.tensors[op.inputs[1]].shape)),
        )
        return sum(_aligned(size) for size in requests)
    if op.kind != schema_generated.TILED_STAGE:
        return 0
    return _stage_scratch(graph, op, _cmsis_nn_convs(graph))


def _cmsis_nn_convs(graph: ir.Graph) -> str | None:
    """The CMSIS-NN conv paths the model's target runs ("dsp" or "mve"), None where its kernels are not CMSIS-NN."""
    device = target.of_model(graph)
    return ("mve" if device.mve else "dsp") if device.kernels == "cmsis-nn" else None


def _stage_scratch(graph: ir.Graph, op: ir.Op, convs: str | None) -> int:
    """A TT_TILED_STAGE op's scratch when its convs run on `convs` (tiled_stage.scratch_bytes)."""
    options = schema.decode_blob("TILED_STAGE", op.custom_options)
    description, shape = graph.tensors[op.inputs[1]].data, tiled_stage.input_shape(graph, op)
    size = tiled_stage.scratch_bytes(description, shape, (options["tiles_h"], options["tiles_w"]), convs)
    if size is None:
        raise TinyTrainError(f"{op.kind}: its kernel cannot run this stage in {options['tiles_h']}x{options['tiles_w']} tiles")
    return size


def planned_buffers(graph: ir.Graph) -> list[Buffer]:
    """Every tensor TFLM plans in the head, with its lifetime and role, in TFLM's order (tensor index),
    then each op's scratch buffer (numbered after the tensors, as TFLM adds them), live while it runs."""
    spans = _lifetimes(graph)
    roles = _categories(graph)
    buffers = []
    for index, tensor in enumerate(graph.tensors):
        if not is_planned(tensor) or index not in spans:
            continue
        size = tensor_bytes(tensor)
        if size:
            buffers.append(Buffer(index, size, *spans[index], roles.get(index, ACTIVATION)))
    for scope, op in enumerate(graph.ops, start=1):
        size = scratch_bytes(graph, op)
        if size:
            buffers.append(Buffer(len(graph.tensors) + len(buffers), _aligned(size), scope, scope, ACTIVATION))
    return buffers


def place(
    groups: list[list[Buffer]], overlaps: list[overlap.Overlap] = (), fixed: list[Buffer] = (), tflm_ties: bool = True
) -> None:
    """Sets every buffer's offset as TFLM's GreedyMemoryPlanner does, extended to overlapping buffers.

    Groups go largest first (by their largest buffer). TFLM fills its sort array from the end, then
    bubble-sorts (stably), so groups of equal size go in reverse tensor order; that tie order changes
    the layout. Each buffer goes to the lowest offset where it misses every placed buffer live at the
    same time (TFLM's first fit), except that an op's output may lie `shift` or more bytes below an
    input it overlaps (tinytrain_tflm.plan.overlap), or for an exact overlap (RESHAPE) exactly on it,
    and that a buffer's bands free their bytes when they die. A group is a chain of such overlaps,
    placed from its last output back to its first input, so each input can settle over the output
    placed before it; a lone buffer is a group of one.
    `fixed` buffers (an offline plan's) keep their offsets and are placed first, as in TFLM. `tflm_ties`
    False puts groups of equal size in tensor order instead: an offline plan may lay buffers out in any
    order, and TFLM's tie order can leave a gap at the peak that the other does not."""
    total = sum(len(b.parts()) for b in fixed) + sum(len(b.parts()) for group in groups for b in group)
    firsts, lasts, starts, ends = (np.empty(total, np.int64) for _ in range(4))
    count = 0
    rows: dict[int, slice] = {}  # tensor -> its parts' rows in the arrays
    offsets: dict[int, int] = {}  # tensor -> its placed offset
    over = {o.output: o for o in overlaps}  # output -> its overlap with the input it may overlap
    under = {o.input: o for o in overlaps}  # input -> its overlap with the output that may overlap it

    def add(buffer: Buffer) -> None:
        nonlocal count
        rows[buffer.tensor] = slice(count, count + len(buffer.parts()))
        offsets[buffer.tensor] = buffer.offset
        for start, size, last in buffer.parts():
            firsts[count], lasts[count] = buffer.first, last
            starts[count], ends[count] = buffer.offset + start, buffer.offset + start + size
            count += 1

    def collisions(buffer: Buffer, start: int, size: int, last: int) -> tuple[np.ndarray, ...]:
        """(live, low, high, alias) over the placed parts: a part of `buffer` at offset o collides where
        low < o < high, unless `buffer` goes at the part's alias (-1: none), the offset of a buffer it may
        share exactly."""
        live = (firsts[:count] <= last) & (lasts[:count] >= buffer.first)
        low, high = starts[:count] - size, ends[:count].copy()
        alias = np.full(count, -1, np.int64)
        given = over.get(buffer.tensor)
        if given is not None and given.input in rows:
            if given.exact:  # on its input or clear of it
                alias[rows[given.input]] = offsets[given.input]
            else:  # may start `shift` below its input
                first = rows[given.input].start
                low[first] = max(low[first], starts[first] - _aligned(given.shift))
        taken = under.get(buffer.tensor)
        if taken is not None and taken.output in rows:
            if taken.exact:  # under its output or clear of it
                alias[rows[taken.output]] = offsets[taken.output]
            else:  # its output may start `shift` below it
                first = rows[taken.output].start
                high[first] = min(high[first], starts[first] + _aligned(taken.shift))
        return live, low - start, high - start, alias

    for buffer in fixed:
        add(buffer)
    for group in sorted(reversed(groups) if tflm_ties else groups, key=lambda group: -max(buffer.size for buffer in group)):
        for buffer in reversed(group):
            parts = [collisions(buffer, *part) for part in buffer.parts()]
            offset = 0
            while True:  # every feasible offset above this one clears each current collision: jump past all
                needed = offset
                for live, low, high, alias in parts:
                    hit = live & (low < offset) & (offset < high) & (alias != offset)
                    if hit.any():  # past the part, or up to the alias of a buffer still above
                        needed = max(needed, int(np.where(offset < alias, np.minimum(alias, high), high)[hit].max()))
                if needed == offset:
                    break
                offset = needed
            buffer.offset = offset
            add(buffer)


def _set_sliced_bands(graph: ir.Graph, buffers: list[Buffer]) -> None:
    """Gives each buffer its _sliced_bands, from one pass over the ops."""
    readers: dict[int, list[tuple[int, ir.Op]]] = {}
    for scope, op in enumerate(graph.ops, start=1):
        for tensor in set(op.inputs):
            readers.setdefault(tensor, []).append((scope, op))
    for buffer in buffers:
        if buffer.tensor < len(graph.tensors):  # not a scratch buffer
            buffer.bands = _sliced_bands(graph, buffer, readers.get(buffer.tensor, []))


def _sliced_bands(graph: ir.Graph, buffer: Buffer, readers: list[tuple[int, ir.Op]]) -> tuple[tuple[int, int, int], ...]:
    """The bands of a batch-1 NHWC tensor that only SLICE ops read (a tiled stage's input; `readers` are
    its (scope, op)s): its ALIGNMENT-byte chunks grouped by the last slice reading any of their rows.
    Empty if no band dies early."""
    tensor = graph.tensors[buffer.tensor]
    if len(tensor.shape) != 4 or tensor.shape[0] != 1 or buffer.tensor in graph.outputs or len(readers) < 2:
        return ()
    if any(op.kind != "SLICE" or op.inputs[0] != buffer.tensor or graph.tensors[op.inputs[1]].data is None for _, op in readers):
        return ()
    rows = tensor.shape[1]
    row_last = np.full(rows, buffer.first)  # a row no slice reads is dead from the start
    for scope, op in readers:
        begin, size = int(graph.tensors[op.inputs[1]].data[1]), int(graph.tensors[op.inputs[2]].data[1])
        row_last[begin : rows if size < 0 else begin + size] = scope
    row_bytes = int(np.prod(tensor.shape[2:])) * tensor.dtype.itemsize
    byte_last = np.full(buffer.size, row_last[-1])  # the alignment padding goes with the last row
    byte_last[: rows * row_bytes] = np.repeat(row_last, row_bytes)
    chunk_last = byte_last.reshape(-1, ALIGNMENT).max(axis=1)  # a chunk lives as long as its longest-lived byte
    edges = [0, *(np.flatnonzero(np.diff(chunk_last)) + 1), len(chunk_last)]
    bands = tuple((a * ALIGNMENT, (b - a) * ALIGNMENT, int(chunk_last[a])) for a, b in zip(edges[:-1], edges[1:], strict=True))
    return bands if len(bands) > 1 else ()


OFFLINE_PLAN = "OfflineMemoryAllocation"  # TFLM's metadata name for a head planned ahead of time


@dataclasses.dataclass
class MemoryPlan:
    buffers: list[Buffer]
    head: int  # bytes of the planned (non-persistent) arena section
    num_ops: int
    shared: list[tuple[int, str, int]] = dataclasses.field(default_factory=list)  # (scope, category, bytes) two buffers share

    def live_bytes(self) -> dict[str, np.ndarray]:
        """Bytes live at each scope (0 .. num_ops), per category: what the plot shows."""
        series: dict[str, np.ndarray] = {}
        for buffer in self.buffers:
            line = series.setdefault(buffer.category, np.zeros(self.num_ops + 1, np.int64))
            for _, size, last in buffer.parts():
                line[buffer.first : last + 1] += size
        for scope, category, size in self.shared:
            series[category][scope] -= size
        return series

    def at_peak(self) -> dict[str, int]:
        """Planned bytes per category among the buffers live at the scope where the most bytes are live."""
        live = self.live_bytes()
        scope = int(np.argmax(sum(live.values())))
        return {category: int(line[scope]) for category, line in live.items() if line[scope]}


def _chains(buffers: list[Buffer], overlaps: list[overlap.Overlap]) -> list[list[Buffer]]:
    """Buffers grouped into chains of overlaps (each tensor overlaps at most one input and one output),
    first input to last output, in tensor order of their first member; the others alone."""
    by_tensor = {buffer.tensor: buffer for buffer in buffers}
    after = {o.input: o.output for o in overlaps}
    outputs = set(after.values())
    chains = []
    for buffer in buffers:
        if buffer.tensor in outputs:
            continue  # in the chain of its input
        chain, tensor = [buffer], buffer.tensor
        while tensor in after:
            tensor = after[tensor]
            chain.append(by_tensor[tensor])
        chains.append(chain)
    return chains


def _shared_bytes(graph: ir.Graph, plan: MemoryPlan) -> None:
    """Records the bytes an op's output shares with one of its inputs while the op runs."""
    by_tensor = {buffer.tensor: buffer for buffer in plan.buffers}
    for scope, op in enumerate(graph.ops, start=1):
        for out in (by_tensor[t] for t in op.outputs if t in by_tensor):
            for a in (by_tensor[t] for t in set(op.inputs) if t in by_tensor):
                common = min(a.offset + a.size, out.offset + out.size) - max(a.offset, out.offset)
                if common > 0:
                    plan.shared.append((scope, out.category, common))


def plan_memory(graph: ir.Graph, options: MemoryOptions | None = None, fewer_split_calls: bool = False) -> MemoryPlan:
    """The head as TFLM lays it out. With `options`, the plan compile() gives a graph it emits with them:
    outputs placed over the inputs they may overwrite (tinytrain_tflm.plan.overlap) if
    options.overlap_buffers, else TFLM's own greedy plan. Without, the plan of the model as it is: its
    offline plan if it has one (TFLM places any tensor the plan leaves out around it), else TFLM's.
    `fewer_split_calls` then also drops the overlaps that slow their op and save no byte of the head
    (_drop_split_calls): the offline plan's choice, after the estimates, whose heads it keeps."""
    buffers = planned_buffers(graph)
    if options is None and OFFLINE_PLAN in graph.metadata:
        offsets = _read_offline_plan(graph)
        fixed = [b for b in buffers if b.tensor < len(offsets) and offsets[b.tensor] >= 0]  # scratch: TFLM places it
        for buffer in fixed:
            buffer.offset = int(offsets[buffer.tensor])
        _set_sliced_bands(graph, fixed)
        placed = {b.tensor for b in fixed}
        place([[b] for b in buffers if b.tensor not in placed], fixed=fixed)
    else:
        place([[b] for b in buffers])
        if options is not None and options.overlap_buffers:  # kept only where it beats TFLM's own plan
            greedy, greedy_head = {b.tensor: b.offset for b in buffers}, _head(buffers)
            overlaps = overlap.find_overlaps(graph, {b.tensor: b.last for b in buffers})
            _set_sliced_bands(graph, buffers)
            head = _place_overlapping(buffers, overlaps)
            if fewer_split_calls:
                _drop_split_calls(graph, buffers, overlaps, head)
            if _head(buffers) >= greedy_head:
                for buffer in buffers:
                    buffer.offset, buffer.bands = greedy[buffer.tensor], ()
    plan = MemoryPlan(buffers, _head(buffers), len(graph.ops))
    _shared_bytes(graph, plan)
    return plan


def _place_overlapping(buffers: list[Buffer], overlaps: list[overlap.Overlap]) -> int:
    """Places the buffers with these overlaps in the tie order that gives the smaller head (the offline plan
    may take either), and returns that head."""
    chains = _chains(buffers, overlaps)
    place(chains, overlaps)
    tflm_order, tflm_order_head = {b.tensor: b.offset for b in buffers}, _head(buffers)
    place(chains, overlaps, tflm_ties=False)
    if _head(buffers) >= tflm_order_head:
        for buffer in buffers:
            buffer.offset = tflm_order[buffer.tensor]
    return _head(buffers)


def _splits_calls(graph: ir.Graph, output: int) -> bool:
    """Whether the op writing `output` runs slower over an input it overlaps: TT_CONV_2D with a 1x1 filter
    under CMSIS-NN, which then calls CMSIS-NN's 1x1 path once per output row (or band of rows) instead of
    once per image, and each call sums every filter row again (kernels/cmsis_nn/common/conv_rows.h): a pass
    over the whole filter per extra call, which on a 4x4 or 8x8 image is a large share of the conv's work."""
    op = next(op for op in graph.ops if output in op.outputs)
    return op.kind == schema_generated.CONV_2D and graph.tensors[op.inputs[1]].shape[1:3] == (1, 1)


def _drop_split_calls(graph: ir.Graph, buffers: list[Buffer], overlaps: list[overlap.Overlap], head: int) -> None:
    """Places the buffers without the overlaps that split their op's calls (_splits_calls) where the head
    stays at most `head` (the placement with every overlap, which the buffers hold): first without all of
    them, else without those at scopes whose live bytes, the overlap's shared bytes added back, stay below
    the head; else as they are. Far from the peak (MobileNetV2's last blocks) an overlap saves no byte."""
    if target.of_model(graph).kernels != "cmsis-nn":
        return
    split = [o for o in overlaps if _splits_calls(graph, o.output)]
    if not split:
        return
    placed = {b.tensor: b.offset for b in buffers}
    # The bytes live at each scope with no two buffers sharing any: a plan with no shared bytes recorded.
    unshared = sum(MemoryPlan(buffers, head, len(graph.ops)).live_bytes().values())
    first = {b.tensor: b.first for b in buffers}
    below = [o for o in split if unshared[first[o.output]] < head]
    for dropped in (split, below):
        if dropped and _place_overlapping(buffers, [o for o in overlaps if o not in dropped]) <= head:
            return
    for buffer in buffers:
        buffer.offset = placed[buffer.tensor]


def _head(buffers: list[Buffer]) -> int:
    return max((b.offset + b.size for b in buffers), default=0)


def _read_offline_plan(graph: ir.Graph) -> np.ndarray:
    """The offsets of the model's offline plan, after check_offline_plan."""
    check_offline_plan(graph)
    return np.frombuffer(graph.metadata[OFFLINE_PLAN], "<i4")[3:]


def check_offline_plan(graph: ir.Graph) -> None:
    """Refuses an offline plan TFLM must not follow (TFLM trusts it to the byte: a wrong one gives wrong
    results silently, or writes outside the arena). Any plan that is safe for the graph is accepted, not only
    the one this version's planner writes, so a model keeps working across planner changes. Safe means:
    well formed (version 0, one subgraph, one offset per tensor); an offset for exactly the tensors TFLM
    plans in the head (-1 for constants, variables, empty and unused tensors); each offset a multiple of
    TFLM's alignment, its tensor inside the arena (from 0 to the bytes the head's buffers, scratch included,
    take unshared: no plan needs more); and no two tensors live at the same time sharing a byte, except an
    op's output over the input it may overwrite (plan.overlap: starting at least its shift below that input;
    a RESHAPE's exactly on it, never partly, where TFLM's kernel would memcpy between overlapping bytes, as
    an older planner could place it) and the bands of a tiled stage's input its slices have freed. The
    first violation is a one-line error naming the tensors. Does nothing for a model without a plan."""
    blob = graph.metadata.get(OFFLINE_PLAN)
    if blob is None:
        return
    count = len(graph.tensors)
    values = np.frombuffer(blob[: len(blob) // 4 * 4], "<i4")
    if len(blob) != 4 * (3 + count) or list(values[:3]) != [0, 1, count]:
        raise TinyTrainError(
            f"malformed {OFFLINE_PLAN} metadata: {len(blob)} bytes for {count} tensors "
            f"(expected {4 * (3 + count)}, version 0, one subgraph); recompile the model"
        )
    everything = planned_buffers(graph)
    # A plan leaves TFLM room for the scratch buffers (it places them itself), and no plan needs more than all
    # the buffers laid end to end: the planner puts each at 0 or at most at the end of one placed before it.
    arena = sum(b.size for b in everything)
    buffers = [b for b in everything if b.tensor < count]
    needed = {b.tensor: b for b in buffers}
    for index, offset in enumerate(int(o) for o in values[3:]):  # Python integers: an offset near 2^31 must not wrap
        tensor = f"tensor {index} ({graph.tensors[index].name!r})"
        at = f"{OFFLINE_PLAN} metadata places {tensor} at offset {offset}"
        buffer = needed.get(index)
        if buffer is None:
            if offset != -1:
                raise TinyTrainError(f"{at}, but TFLM keeps it out of the head (a constant, a variable, empty or unused): "
                                     "its entry must be -1; recompile the model")  # fmt: skip
        elif offset == -1:
            raise TinyTrainError(
                f"{OFFLINE_PLAN} metadata leaves {tensor} unplanned, but it needs {buffer.size} bytes of the head; "
                "recompile the model"
            )
        elif offset < 0:
            raise TinyTrainError(f"{at}, before the arena; recompile the model")
        elif offset % ALIGNMENT:
            raise TinyTrainError(f"{at}, not a multiple of TFLM's {ALIGNMENT}-byte alignment; recompile the model")
        elif offset + buffer.size > arena:
            raise TinyTrainError(
                f"{at}: its {buffer.size} bytes end past byte {arena}, where the head's buffers end even laid out "
                "unshared; recompile the model"
            )
        else:
            buffer.offset = offset
    _set_sliced_bands(graph, buffers)
    conflict = _first_conflict(graph, buffers)
    if conflict:
        raise TinyTrainError(f"{OFFLINE_PLAN} metadata {conflict}; recompile the model")


def _first_conflict(graph: ir.Graph, buffers: list[Buffer]) -> str | None:
    """What the first pair of `buffers` (by tensor index) that share a byte while both are live does wrong, or
    None: allowed only for an op's output over the input it overwrites, from at least its shift below it."""
    overlaps = {(o.output, o.input): o for o in overlap.find_overlaps(graph, {b.tensor: b.last for b in buffers})}
    parts = [
        (k, b.first, last, b.offset + start, b.offset + start + size)
        for k, b in enumerate(buffers)
        for start, size, last in b.parts()
    ]
    owner, firsts, lasts, starts, ends = np.array(parts, np.int64).reshape(-1, 5).T
    for part in range(len(parts)):
        later = slice(part + 1, None)
        clash = (
            (owner[later] != owner[part])
            & (firsts[later] <= lasts[part])
            & (firsts[part] <= lasts[later])
            & (starts[later] < ends[part])
            & (starts[part] < ends[later])
        )
        for other in np.flatnonzero(clash) + part + 1:
            a, b = buffers[owner[part]], buffers[owner[other]]
            found = _conflict(graph, a, b, overlaps)
            if found:
                return found
    return None


def _conflict(graph: ir.Graph, a: Buffer, b: Buffer, overlaps: dict[tuple[int, int], overlap.Overlap]) -> str | None:
    """Why `a` and `b`, live together and sharing bytes, may not (None if `a` is an op's output over its input
    `b` from far enough below, or exactly on it for an exact overlap, or the other way round)."""

    def name(buffer: Buffer) -> str:
        return f"tensor {buffer.tensor} ({graph.tensors[buffer.tensor].name!r}, {buffer.size} B at offset {buffer.offset})"

    for output, given in ((a, b), (b, a)):
        allowed = overlaps.get((output.tensor, given.tensor))
        if allowed is not None:
            shift = _aligned(allowed.shift)
            if (output.offset == given.offset) if allowed.exact else (output.offset + shift <= given.offset):
                return None
            index = next(k for k, op in enumerate(graph.ops) if op.outputs[:1] == [output.tensor] and given.tensor in op.inputs)
            over = f"places the output {name(output)} of op {index} ({graph.ops[index].kind})"
            if allowed.exact:  # its kernel copies unless the two are one, and a copy between overlapping bytes is undefined
                return f"{over} partly over its input {name(given)}: the op may share that input's bytes only at the same offset"
            return f"{over} over its input {name(given)}: the op may overwrite that input only from {shift} bytes below it"
    scope = max(a.first, b.first)  # the first scope both are live at: 0 before the first op, op i at i + 1
    when = f"at op {scope - 1} ({graph.ops[scope - 1].kind})" if scope else "before the first op"
    return f"places {name(a)} and {name(b)} on shared bytes, while both are live {when}"


def offline_plan(graph: ir.Graph) -> bytes:
    """The model's head planned with overlapping buffers, as TFLM's OfflineMemoryAllocation metadata
    (format version 0, one subgraph, one offset per tensor, -1 for tensors TFLM does not plan)."""
    offsets = np.full(len(graph.tensors), -1, np.int64)
    for buffer in plan_memory(graph, MemoryOptions(tiles=None, overlap_buffers=True), fewer_split_calls=True).buffers:
        if buffer.tensor < len(graph.tensors):  # TFLM places scratch buffers itself, in the gaps this plan leaves
            offsets[buffer.tensor] = buffer.offset
    return np.concatenate([[0, 1, len(graph.tensors)], offsets]).astype("<i4").tobytes()


# Persistent bytes a kernel allocates for one op on the pinned wheel (x86-64):
# base + arrays * align16(4 * channels), channels as _channels() counts them.
# Measured with one-op models (their per-model overhead of 32 B removed). The
# tinytrain ops' OpData since grew by its kernel pointer(s) (specializable_ops.h):
# their bases add that growth in TFLM's 16-byte allocation units, as measured
# on two training models to the byte.
KERNEL_DATA = {
    "CONV_2D": (92, 2),  # OpDataConv + per-channel output multiplier and shift
    "DEPTHWISE_CONV_2D": (92, 2),
    "FULLY_CONNECTED": (108, 0),
    "ADD": (72, 0),
    "MEAN": (39, 0),
    "AVERAGE_POOL_2D": (32, 0),
    "MAX_POOL_2D": (32, 0),
    "PAD": (64, 0),
    "RESHAPE": (12, 0),
    "SLICE": (0, 0),
    "SHAPE": (4, 0),
    "STRIDED_SLICE": (96, 0),
    "PACK": (0, 0),
    schema_generated.INIT_VARIABLES: (40, 0),
    schema_generated.SOFTMAX_CROSS_ENTROPY: (80, 0),
    schema_generated.ACTIVATION_MASK: (24, 0),
    schema_generated.ACTIVATION_GRAD: (72, 0),
    schema_generated.BIAS_GRAD: (48, 0),
    schema_generated.MEAN_GRAD: (48, 0),
    schema_generated.GRAD_ADD: (56, 0),
    schema_generated.AVERAGE_POOL_2D_GRAD: (96, 0),
    schema_generated.MAX_POOL_2D_GRAD: (104, 0),
    # The six layer-gradient ops keep neither their options (beside their params) nor their shapes
    # (read from the tensors): their bases fell by their OpData's shrinkage in 16-byte units.
    schema_generated.CONV_2D_FILTER_GRAD: (72, 0),
    schema_generated.DEPTHWISE_CONV_2D_FILTER_GRAD: (72, 0),
    schema_generated.FULLY_CONNECTED_FILTER_GRAD: (40, 0),
    schema_generated.CONV_2D_INPUT_GRAD: (56, 0),  # filter scales are read from the model, not copied
    schema_generated.DEPTHWISE_CONV_2D_INPUT_GRAD: (56, 0),
    schema_generated.FULLY_CONNECTED_INPUT_GRAD: (56, 0),
    schema_generated.SGD: (80, 0),  # keeps params and the seed, not the options too (OpData 112 -> 96 B on x86)
    schema_generated.CONV_2D: (48, 0),  # requantization read from the model; options parsed in Prepare, shapes in Eval
    schema_generated.DEPTHWISE_CONV_2D: (48, 0),
    schema_generated.TILED_STAGE: (48, 0),  # OpData (options, scratch index and size) and TFLM's scratch handle
}
DEFAULT_KERNEL_DATA = (64, 0)  # an op kind not measured yet
INPUT_GRAD_OPS = (
    schema_generated.CONV_2D_INPUT_GRAD,
    schema_generated.DEPTHWISE_CONV_2D_INPUT_GRAD,
    schema_generated.FULLY_CONNECTED_INPUT_GRAD,
)


def _channels(graph: ir.Graph, op: ir.Op) -> int:
    kind = op.kind
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return graph.tensors[op.outputs[0]].shape[-1]
    if kind in INPUT_GRAD_OPS:
        quant = graph.tensors[op.inputs[2]].quantization
        return len(quant.scale) if quant is not None else 1
    if kind == schema_generated.SGD:
        parameter, grad = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        return grad.shape[parameter.quantization.axis] if parameter.quantization is not None else 1
    return 0


def kernel_data_bytes(graph: ir.Graph) -> int:
    total = 0
    for op in graph.ops:
        base, arrays = KERNEL_DATA.get(op.kind, DEFAULT_KERNEL_DATA)
        total += base + arrays * _aligned(4 * _channels(graph, op))
    return total


@dataclasses.dataclass(frozen=True)
class Bookkeeping:
    """Sizes of TFLM's own records, by pointer size."""

    eval_tensor: int  # TfLiteEvalTensor, one per tensor
    node: int  # NodeAndRegistration, one per op
    io_tensor: int  # persistent TfLiteTensor of each graph input and output
    io_quantization: int  # its quantization record, for a quantized one
    allocator: int  # the allocator's own objects
    allocation_info: int  # AllocationInfo, one per tensor: a temporary of TFLM's planning pass
    planner_buffer: int  # GreedyMemoryPlanner's working arrays per planned buffer: temporary too


# The allocator term was measured between 712 and 792 B on small models. TFLM plans the head in
# temporary memory above the persistent section, before it allocates the graph's I/O tensors:
# AllocationInfo per tensor plus the greedy planner's 40 B per planned buffer. On models whose
# head is a few KB, that planning pass, not head + tail, sets the minimum arena.
X86_64 = Bookkeeping(
    eval_tensor=24, node=64, io_tensor=64, io_quantization=32, allocator=736, allocation_info=32, planner_buffer=40
)
CORTEX_M = Bookkeeping(
    eval_tensor=12, node=32, io_tensor=40, io_quantization=16, allocator=368, allocation_info=24, planner_buffer=40
)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """The arena a model needs, by category, in bytes."""

    planned: dict[str, int]  # head bytes by role at the peak, plus fragmentation
    persistent: dict[str, int]  # tail bytes by kind
    head: int
    planning: int  # bytes TFLM's planning pass needs above the persistent section (see Bookkeeping)

    @property
    def tail(self) -> int:
        return sum(self.persistent.values())

    @property
    def total(self) -> int:
        return self.tail + max(self.head, self.planning)


def estimate(graph: ir.Graph, bookkeeping: Bookkeeping = X86_64, options: MemoryOptions | None = None) -> MemoryEstimate:
    """Predicted minimum arena, by category, with `bookkeeping` for the target's pointer size
    (options: as plan_memory's)."""
    plan = plan_memory(graph, options)
    planned = plan.at_peak()
    planned["fragmentation"] = plan.head - sum(planned.values())
    # Momentum (input 3), the learning rate (input 5) and gradient accumulators (input 6).
    sgd_ops = [op for op in graph.ops if op.kind == schema_generated.SGD]
    optimizer_state = {t for op in sgd_ops for t in (op.inputs[3], op.inputs[5], op.inputs[6]) if t >= 0}
    scale_histories = ir.scale_histories(graph)
    weights = optimizer = histories = 0
    for index, tensor in enumerate(graph.tensors):
        if tensor.is_variable:
            size = tensor_bytes(tensor)
            if index in optimizer_state:
                optimizer += size
            elif index in scale_histories:
                histories += size
            else:
                weights += size
    io = graph.inputs + graph.outputs
    quantized_io = sum(graph.tensors[t].quantization is not None for t in io)
    io_records = bookkeeping.io_tensor * len(io) + bookkeeping.io_quantization * quantized_io
    persistent = {
        "trainable weights": weights,
        "optimizer state": optimizer,
        "gradient scale history": histories,
        "kernel data": kernel_data_bytes(graph),
        "TFLM bookkeeping": bookkeeping.eval_tensor * len(graph.tensors)
        + bookkeeping.node * len(graph.ops)
        + io_records
        + bookkeeping.allocator,
    }
    planning = ALIGNMENT + bookkeeping.allocation_info * len(graph.tensors) + bookkeeping.planner_buffer * len(plan.buffers)
    return MemoryEstimate(planned, persistent, plan.head, planning - io_records)


FORWARD_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D", schema_generated.CONV_2D, schema_generated.DEPTHWISE_CONV_2D)


def target_conv_scratch(graph: ir.Graph) -> int:
    """The largest scratch buffer the model's target asks for in one forward convolution, beyond what the
    pinned x86 wheel's kernels (TFLM's reference convolutions, tinytrain's portable core) ask for: CMSIS-NN's
    im2col and depthwise buffers, in a builtin or tinytrain convolution (for a whole op, which bounds its
    per-row calls) or among a tiled stage's patches. Each lives only while its op runs, so this bounds what
    they add to the arena the x86 runtime measures."""
    convs = _cmsis_nn_convs(graph)
    if convs is None:
        return 0
    most = 0
    for op in graph.ops:
        if op.kind in FORWARD_CONVS:
            x, y = graph.tensors[op.inputs[0]].shape, graph.tensors[op.outputs[0]].shape
            windows = (geometry.window(graph, op, 1), geometry.window(graph, op, 2))
            depthwise = op.kind in ("DEPTHWISE_CONV_2D", schema_generated.DEPTHWISE_CONV_2D)
            most = max(most, tiled_stage.conv_call_scratch(depthwise, windows, x[1:], (y[2], y[3]), convs))
        elif op.kind == schema_generated.TILED_STAGE:
            most = max(most, _stage_scratch(graph, op, convs) - _stage_scratch(graph, op, None))
    return most


def project_32bit(measured_x86: int, graph: ir.Graph) -> int:
    """A measured x86-64 arena with TFLM's bookkeeping resized for 4-byte pointers, and room for the
    target's convolution scratch that the x86 runtime does not ask for (target_conv_scratch): an upper
    bound on that part, so the projection errs high rather than low."""
    bookkeeping = estimate(graph, CORTEX_M).total - estimate(graph, X86_64).total
    return measured_x86 + bookkeeping + target_conv_scratch(graph)


def plot(graph: ir.Graph, path: str, title: str = "") -> None:
    """Live arena bytes over the op schedule, stacked by category, persistent bytes as the base."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TinyTrainError("plotting needs matplotlib: pip install matplotlib") from None
    plan = plan_memory(graph)
    result = estimate(graph)
    scopes = np.arange(plan.num_ops + 1)
    persistent = list(result.persistent.items())
    live = plan.live_bytes()
    labels = [f"{name} (persistent)" for name, _ in persistent] + list(live)
    rows = [np.full(len(scopes), size) for _, size in persistent] + [live[name] for name in live]
    figure, axis = plt.subplots(figsize=(12, 4.5))
    axis.stackplot(scopes, np.array(rows) / 1024, labels=labels, step="mid")
    total = result.total / 1024
    axis.axhline(total, color="black", linestyle="--", linewidth=1, label=f"planned arena {total:.1f} KB")
    loss = next((i + 1 for i, op in enumerate(graph.ops) if op.kind in schema.LOSS_OPS), None)
    if loss is not None:
        axis.axvline(loss, color="grey", linewidth=0.8)
        axis.text(loss, axis.get_ylim()[1] * 0.9, " loss; backward starts", va="top", fontsize=8, color="grey")
    axis.set_xlabel("op (schedule order)")
    axis.set_ylabel("KB")
    axis.set_title(title or "TFLM arena over the op schedule")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

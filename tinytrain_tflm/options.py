"""What the user decides about a training model (CompileOptions), and the switches that turn off one of
the compiler's savings only to measure it (Ablation). Both are frozen values that the passes needing
them receive whole; compile() builds them from its keyword arguments."""

from __future__ import annotations

import dataclasses

from .passes.optimizer import SGD
from .passes.scheme import UpdateScheme
from .plan.memory import MemoryOptions


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    """Everything compile() takes besides the model and the target."""

    update: str | dict | UpdateScheme = "last"
    optimizer: SGD = SGD()
    gradient: str = "int8"  # "float32" is the reference the tests compare int8 with
    label_smoothing: float = 0.0
    activation_masks: bool = True
    memory: MemoryOptions = MemoryOptions()
    loss: str = "softmax_cross_entropy"


@dataclasses.dataclass(frozen=True)
class Ablation:
    """Each False turns one saving off, only to measure what it saves (benchmarks/memory.py, tests).

    immediate_updates: False defers every update to the end of the backward pass.
    split_partial: False keeps the whole weight tensor of a partially trained layer as a variable
    (tinytrain_tflm.passes.partial). prune_backward: False computes the gradient of every activation.
    schedule_for_planner: False keeps autodiff's backward order (tinytrain_tflm.passes.schedule; deferred
    updates never reorder). fused_stage: False emits a tiled first stage as per-tile copies of its ops
    instead of one TT_TILED_STAGE op (tinytrain_tflm.passes.tiling). fuse_backward: False keeps
    autodiff's backward ops unfused (tinytrain_tflm.passes.fusion). fuse_bias_updates: False keeps each
    bias gradient an op and a tensor of its own (tinytrain_tflm.passes.fusion; with int8 gradients the
    fused update reads the exact sum, so the bits differ)."""

    immediate_updates: bool = True
    split_partial: bool = True
    prune_backward: bool = True
    schedule_for_planner: bool = True
    fused_stage: bool = True
    fuse_backward: bool = True
    fuse_bias_updates: bool = True


EVERY_SAVING = Ablation()  # what compile() emits

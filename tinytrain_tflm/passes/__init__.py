"""The passes over the IR that make a training model: what trains (scheme), partial layers, tiling,
the loss, autodiff, the optimizer's updates, flash requantization, the backward schedule, overlaps."""

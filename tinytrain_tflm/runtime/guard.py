"""Divergence guard on the host: watch a Trainer's steps for a loss that explodes or weights that saturate,
warn once, and optionally roll back to the last good state kept in memory.

Training diverges on a device in two visible ways: the loss climbs far above the chance level, or far
above where it was, and stays there (a learning rate too high, data gone bad), or the int8 weights pile
up at their limits (TT_SGD saturates them at -127 and 127), after which the model predicts one class. A
single high loss is normal (a wrong label, a hard sample), so the loss is judged by its mean over a
window of steps.

With rollback, a trip restores the last healthy state and pauses training (each sample is evaluated,
not trained on) until a window of samples scores a healthy loss again: a burst of bad data passes
without being learnt. If training diverges again from the same state halt_after times in a row, the
data was healthy when it resumed, so the learning rate is at fault: training stops for good.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import sys

import numpy as np

from ..backend import schema_generated
from ..errors import TinyTrainError
from .trainer import Trainer

GUARD_MODES = ("off", "warn", "rollback")


@dataclasses.dataclass(frozen=True)
class GuardOptions:
    """When the guard trips, and what it keeps to roll back to.

    window: steps the loss is averaged over (k), and how often the weights are checked.
    loss_bound: the mean loss over a window above which training is diverging; None: LOSS_BOUND_FACTOR
    times the loss of a uniform prediction (ln of the class count; 2 classes for binary cross-entropy),
    and no bound for mean squared error, whose scale is the data's.
    loss_rise: training is diverging too when the window's mean loss exceeds this many times the lowest
    mean loss of a snapshot interval so far (None: no such check). Measured against the best interval, not
    the last, so a slow slide toward chance (the loss creeping up to ln(classes)) trips it too.
    saturation_rise: rise in the share of trained int8 weights at a limit over the share training started
    from (per-channel quantization already puts one weight per output channel at +-127).
    snapshot_every: steps between the healthy states kept for a rollback (a multiple of window).
    rollback: roll back to the last healthy state when the guard trips, instead of only warning.
    halt_after: with rollback, stop training after this many rollbacks in a row to one state (see the module
    docstring); later steps evaluate, never train.
    """

    window: int = 50
    loss_bound: float | None = None
    loss_rise: float | None = 2.0
    saturation_rise: float = 0.05
    snapshot_every: int = 500
    rollback: bool = False
    halt_after: int = 3

    def __post_init__(self):
        if self.window < 1 or self.snapshot_every < self.window or self.snapshot_every % self.window:
            raise TinyTrainError(
                f"the guard's snapshot interval ({self.snapshot_every}) must be a multiple of its window ({self.window} >= 1)"
            )
        if self.loss_bound is not None and not (math.isfinite(self.loss_bound) and self.loss_bound > 0):
            raise TinyTrainError(f"the guard's loss bound must be finite and > 0, got {self.loss_bound}")
        if self.halt_after < 1:
            raise TinyTrainError(f"the guard's halt_after must be >= 1, got {self.halt_after}")
        if self.loss_rise is not None and not (math.isfinite(self.loss_rise) and self.loss_rise > 1):
            raise TinyTrainError(f"the guard's loss rise must be finite and > 1, got {self.loss_rise}")
        if not 0 < self.saturation_rise < 1:
            raise TinyTrainError(f"the guard's saturation rise must be in (0, 1), got {self.saturation_rise}")


LOSS_BOUND_FACTOR = 3.0


def saturated_share(trainer: Trainer) -> float:
    """Share of the trained int8 weights at a limit (|q| >= 127: TT_SGD saturates at -127 and 127)."""
    weights = [w for w in trainer.weights().values() if w.dtype == np.int8]
    return sum(int(np.sum(np.abs(w.astype(np.int16)) >= 127)) for w in weights) / max(1, sum(w.size for w in weights))


def default_loss_bound(trainer: Trainer) -> float | None:
    kind = trainer.metadata["loss"]
    if kind == schema_generated.LOSS_MEAN_SQUARED_ERROR:
        return None
    classes = 2 if kind == schema_generated.LOSS_BINARY_CROSS_ENTROPY else trainer.metadata["num_classes"]
    return LOSS_BOUND_FACTOR * math.log(max(classes, 2))


@dataclasses.dataclass(frozen=True)
class GuardEvent:
    step: int  # steps taken through the guard when it tripped
    reason: str
    rolled_back_to: int | None  # the step of the state restored, or None (warned only)
    halted: bool = False  # the guard stopped training here (GuardOptions.halt_after)


class DivergenceGuard:
    """Steps a Trainer and watches it. Use guard.step(x, label) in place of trainer.step, and guard.trainer
    for everything else: a rollback replaces the trainer with one built from the last healthy state."""

    def __init__(self, trainer: Trainer, options: GuardOptions = GuardOptions(), warn=None):
        """warn: called once with the first trip's one-line message (default: print it to stderr)."""
        self.trainer = trainer
        self.options = options
        self.loss_bound = options.loss_bound if options.loss_bound is not None else default_loss_bound(trainer)
        self.start_share = saturated_share(trainer)
        self.steps = 0
        self.events: list[GuardEvent] = []
        self._losses: collections.deque[float] = collections.deque(maxlen=options.window)
        self._warn = warn or (lambda line: print(line, file=sys.stderr))
        self._snapshot = (0, trainer.training_model().bytes) if options.rollback else None
        self._rollbacks_to_snapshot = 0
        self._interval_losses: list[float] = []  # since the last snapshot_every boundary
        self.reference_loss: float | None = None  # the lowest mean loss of a snapshot interval so far
        self.paused = False  # after a rollback, until a window of samples scores a healthy loss
        self.halted = False

    def step(self, x: np.ndarray, label) -> float:
        """trainer.step(x, label), then the checks; returns the step's loss. While paused or halted, the
        sample is evaluated, not trained on (self.steps counts training steps only)."""
        if self.halted or self.paused:
            loss = float(self.trainer._run(x, label, schema_generated.CONTROL_BACKWARD)[0][0])
            self._losses.append(loss)
            if self.paused and len(self._losses) == self.options.window and self._loss_trouble() is None:
                self.paused = False
                self._losses.clear()
            return loss
        loss = self.trainer.step(x, label)
        self.steps += 1
        self._losses.append(loss)
        self._interval_losses.append(loss)
        reason = self._diverging(loss)
        if reason is not None:
            self._trip(reason)
        elif self.steps % self.options.snapshot_every == 0:
            interval = float(np.mean(self._interval_losses))
            self.reference_loss = interval if self.reference_loss is None else min(self.reference_loss, interval)
            self._interval_losses = []
            if self._snapshot is not None:
                self._snapshot = (self.steps, self.trainer.training_model().bytes)
                self._rollbacks_to_snapshot = 0
        return loss

    def _loss_trouble(self) -> str | None:
        """What is wrong with the window's losses (full windows only), or None."""
        if len(self._losses) < self.options.window:
            return None
        mean, window = float(np.mean(self._losses)), self.options.window
        if self.loss_bound is not None and mean > self.loss_bound:
            return f"the mean loss over the last {window} steps is {mean:.3g}, above {self.loss_bound:.3g}"
        rise = self.options.loss_rise
        if rise is not None and self.reference_loss is not None and mean > rise * self.reference_loss:
            before = self.reference_loss
            return f"the mean loss over the last {window} steps is {mean:.3g}, over {rise:g} times the best {before:.3g} so far"
        return None

    def _diverging(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"the loss is {loss}"
        if (trouble := self._loss_trouble()) is not None:
            return trouble
        if self.steps % self.options.window == 0:
            share = saturated_share(self.trainer)
            if share > self.start_share + self.options.saturation_rise:
                return f"{share:.0%} of the trained int8 weights sit at -127 or 127 ({self.start_share:.0%} at the start)"
        return None

    def _trip(self, reason: str) -> None:
        restored = None
        self._losses.clear()
        self._interval_losses = []
        if self._snapshot is not None:
            restored, model = self._snapshot
            previous, self.trainer = self.trainer, Trainer(model)
            # The run-time settings are the caller's, not training state: the restored trainer keeps them.
            self.trainer.learning_rate, self.trainer.batch_size = previous.learning_rate, previous.batch_size
            self._rollbacks_to_snapshot += 1
            self.halted = self._rollbacks_to_snapshot >= self.options.halt_after
            self.paused = not self.halted
        if self.halted:
            self._warn(
                f"warning: step {self.steps}: training stopped: it diverged {self.options.halt_after} times in a row "
                f"from the state of step {restored}, which it keeps; a lower --lr (compile) helps"
            )
        elif not self.events:
            action = (
                f"rolled back to the state of step {restored}"
                if restored is not None
                else "a lower --lr (compile) or `--guard rollback` helps"
            )
            self._warn(f"warning: step {self.steps}: training may be diverging: {reason}; {action}")
        self.events.append(GuardEvent(self.steps, reason, restored, self.halted))

    def summary(self) -> str | None:
        """One line on what the guard did, or None if it never tripped."""
        if not self.events:
            return None
        rollbacks = sum(event.rolled_back_to is not None for event in self.events)
        what = f"rolled back {rollbacks} times" if rollbacks else f"tripped {len(self.events)} times"
        stopped = f"; training stopped at step {self.events[-1].step}" if self.halted else ""
        return f"guard: {what} (first at step {self.events[0].step}, last at step {self.events[-1].step}){stopped}"

"""Sparse-update scheme search under a memory budget (the paper's method).

1. Contribution analysis: on a transfer task, train on device, for a few steps
   each, the classifier plus the biases of the last k layers for several k,
   and the classifier plus each (layer, channel ratio) of weights; each gain
   is the held-out accuracy gained over training the classifier alone. Every
   scheme trains the classifier: a new task needs a new head.
2. Evolutionary search: a scheme's fitness is the sum of its parts' gains,
   if its arena fits the budget. Memory comes from the planner's estimate and
   is measured in TFLM (bisection) for every scheme the search keeps, so the
   result is checked against the real arena, not the estimate.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np

from ..compiler import compile_with
from ..errors import TinyTrainError
from ..frontend import read
from ..options import CompileOptions
from ..passes.optimizer import SGD
from ..passes.scheme import RATIOS, conv_like_layers
from ..plan import memory
from ..runtime import interpreter
from ..runtime.trainer import Trainer
from ..target import HOST, Target

# Every candidate scheme compiles with these unless the caller gives its own: int8 gradients (a quarter
# of float32's memory, so more fits a budget) and a learning rate its few steps per part can use.
SEARCH_OPTIONS = CompileOptions(optimizer=SGD(lr=0.005), gradient="int8")


@dataclasses.dataclass(frozen=True)
class SearchTask:
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


@dataclasses.dataclass
class SearchResult:
    scheme: dict
    arena_bytes: int  # measured in TFLM, <= the budget
    gain: float  # summed contributions (the search's proxy)
    bias_gains: dict[int, float]
    weight_gains: dict[tuple[int, float], float]

    def to_json(self) -> str:
        return json.dumps(self.scheme)


class SchemeSearch:
    """Contribution analysis and evolutionary search for one model, task and budget (without a task,
    only the sizing: fits and last_layers_baseline)."""

    def __init__(
        self,
        model: bytes,
        task: SearchTask | None,
        budget: int,
        options: CompileOptions = SEARCH_OPTIONS,
        target: Target = HOST,
        steps: int = 300,
        candidate_layers: int = 12,
        progress: Callable[[str], None] | None = None,
    ):
        self.model, self.task, self.budget = model, task, budget
        self.options, self.target, self.steps = options, target, steps
        self.progress = progress or (lambda message: None)
        self.layers = len(conv_like_layers(read.read_graph(model)))
        # The classifier (the last layer) always trains; the others are candidates.
        self.candidates = list(range(max(0, self.layers - 1 - candidate_layers), self.layers - 1))
        self._memory: dict[str, int] = {}

    def _compile(self, scheme: dict):
        return compile_with(self.model, dataclasses.replace(self.options, update=scheme), self.target)

    def fits(self, scheme: dict) -> bool:
        """Whether the scheme's arena, measured in TFLM, fits the budget. The planner's estimate
        (within 0.3% on large models, 4% on arenas of a few KB) only skips the
        measurement of schemes far over budget."""
        key = json.dumps(scheme, sort_keys=True)
        if key not in self._memory:
            model = self._compile(scheme).bytes
            estimate = memory.estimate(read.read_graph(model)).total
            self._memory[key] = estimate if estimate > 1.1 * self.budget else interpreter.minimum_arena_size(model)
        return self._memory[key] <= self.budget

    def accuracy_after_training(self, scheme: dict) -> float:
        """Held-out accuracy after `steps` on-device steps with this scheme (same samples for every scheme)."""
        if self.task is None:
            raise TinyTrainError("this SchemeSearch has no task: it sizes schemes (fits, last_layers_baseline), not train them")
        trainer = Trainer(self._compile(scheme))
        for i in np.random.default_rng(0).integers(0, len(self.task.train_x), self.steps):
            trainer.step(self.task.train_x[i], int(self.task.train_y[i]))
        return trainer.accuracy(self.task.val_x, self.task.val_y)

    def contributions(self) -> tuple[dict[int, float], dict[tuple[int, float], float]]:
        """Gain of each part over the classifier alone. A part that does not fit the budget even
        alone is skipped (no scheme holding it could fit): on a large model most deep, wide
        layers are, and measuring them would cost the most time."""
        base = self.accuracy_after_training(with_classifier({}, self.layers))
        self.progress(f"contribution: classifier alone reaches {base:.3f}")

        def gain(part: dict, label: str) -> float | None:
            scheme = with_classifier(part, self.layers)
            if not self.fits(scheme):
                self.progress(f"contribution: + {label}: over budget, skipped")
                return None
            value = self.accuracy_after_training(scheme) - base
            self.progress(f"contribution: + {label}: {value:+.3f}")
            return value

        depths = sorted({k for k in (2, 4, 8, 12, 16, 22, self.layers) if 1 < k <= self.layers})
        bias_gains = {1: 0.0}
        for depth in depths:
            if (value := gain({"bias_last": depth}, f"biases of the last {depth} layers")) is not None:
                bias_gains[depth] = value
        weight_gains = {}
        for layer in self.candidates:
            for ratio in RATIOS:
                if (value := gain({"weights": {str(layer): ratio}}, f"layer {layer} weights x{ratio:g}")) is not None:
                    weight_gains[(layer, ratio)] = value
        return bias_gains, weight_gains

    def last_layers_baseline(self) -> dict | None:
        """The most last layers (weights and biases) that fit the budget: what the search must beat."""
        best = None
        for count in range(1, self.layers + 1):
            scheme = {"bias_last": count, "weights": {str(self.layers - 1 - i): 1 for i in range(count)}}
            if not self.fits(scheme):
                break
            best = scheme
        return best

    def run(self, population: int = 16, generations: int = 12, seed: int = 0) -> SearchResult:
        if not self.fits(with_classifier({}, self.layers)):
            raise TinyTrainError(f"no update scheme fits a {self.budget:,}-byte arena: training the classifier alone needs more")
        bias_gains, weight_gains = self.contributions()
        rng = np.random.default_rng(seed)
        depths = sorted(bias_gains)
        # Per candidate layer, the ratios that fit alone (0.0: the layer's weights stay frozen).
        choices = [(0.0, *(r for r in RATIOS if (layer, r) in weight_gains)) for layer in self.candidates]

        def fitness(genome: tuple) -> float:
            if not self.fits(to_scheme(genome, self.candidates, self.layers)):
                return -np.inf
            depth, ratios = genome
            weights = sum(weight_gains[(layer, r)] for layer, r in zip(self.candidates, ratios, strict=True) if r)
            return bias_gains[depth] + weights

        def rank(genome: tuple) -> tuple[float, int]:
            """Fitness first; among equal gains the smaller arena (nothing gained, nothing spent)."""
            value = fitness(genome)
            memory = self._memory[json.dumps(to_scheme(genome, self.candidates, self.layers), sort_keys=True)]
            return value, -memory

        def random_genome() -> tuple:
            ratios = tuple(float(rng.choice(options)) if rng.random() < 0.2 else 0.0 for options in choices)
            return int(rng.choice(depths)), ratios

        def mutate(genome: tuple) -> tuple:
            depth, ratios = genome
            ratios = list(ratios)
            if rng.random() < 0.5:
                depth = int(rng.choice(depths))
            else:
                index = rng.integers(len(ratios))
                ratios[index] = float(rng.choice(choices[index]))
            return depth, tuple(ratios)

        def crossover(a: tuple, b: tuple) -> tuple:
            ratios = tuple(x if rng.random() < 0.5 else y for x, y in zip(a[1], b[1], strict=True))
            return (a[0] if rng.random() < 0.5 else b[0]), ratios

        pool = [random_genome() for _ in range(population)]
        baseline = self.last_layers_baseline()
        if baseline is not None:
            pool[0] = to_genome(baseline, self.candidates, depths)
        for generation in range(generations):
            ranked = sorted(pool, key=rank, reverse=True)
            parents = ranked[: max(2, population // 4)]
            self.progress(f"search: generation {generation + 1}/{generations}, best summed gain {fitness(ranked[0]):+.3f}")
            children = [
                mutate(crossover(*(parents[i] for i in rng.choice(len(parents), 2)))) for _ in range(population - len(parents))
            ]
            pool = parents + children
        best = max(pool, key=rank)
        if fitness(best) == -np.inf:  # only the classifier fits: the search found nothing better to add
            best = (1, (0.0,) * len(self.candidates))
        scheme = to_scheme(best, self.candidates, self.layers)
        measured = self._memory[json.dumps(scheme, sort_keys=True)]
        self.progress(f"search: best scheme {scheme} measures {measured:,} bytes")
        return SearchResult(scheme, measured, fitness(best), bias_gains, weight_gains)


def with_classifier(scheme: dict, layers: int) -> dict:
    """The scheme plus the classifier's weights (full) and bias."""
    weights = dict(scheme.get("weights", {}))
    weights[str(layers - 1)] = 1
    return {"bias_last": max(1, scheme.get("bias_last", 0)), "weights": weights}


def to_scheme(genome: tuple, candidates: list[int], layers: int) -> dict:
    """A (bias depth, ratio per candidate layer) genome as an update scheme, classifier included."""
    depth, ratios = genome
    weights = {str(layer): ratio for layer, ratio in zip(candidates, ratios, strict=True) if ratio}
    return with_classifier({"bias_last": depth, "weights": weights}, layers)


def to_genome(scheme: dict, candidates: list[int], depths: list[int]) -> tuple:
    depth = max((d for d in depths if d <= scheme.get("bias_last", 0)), default=1)
    weights = {int(k): v for k, v in scheme.get("weights", {}).items()}
    return depth, tuple(weights.get(layer, 0.0) for layer in candidates)

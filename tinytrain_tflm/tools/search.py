"""Sparse-update scheme search under a memory budget (the paper's method).

1. Contribution analysis: on a transfer task, train on device, for a few steps
   each, the classifier plus the biases of the last k layers for several k,
   and the classifier plus each (layer, channel ratio) of weights; each gain
   is the held-out accuracy gained over training the classifier alone. Every
   scheme trains the classifier: a new task needs a new head.
2. Evolutionary search: a scheme's fitness is the sum of its parts' gains,
   if its arena fits the budget. Memory comes from the planner's estimate and
   is measured in TFLM (bisection) for every scheme the search keeps, so the
   result is checked against the real arena, not the estimate. For a 32-bit
   target the budget is judged on the measured x86-64 arena projected to 4-byte
   pointers (memory.project_32bit); the CLI measures the result on the emulated
   board when it can.

The result is written as a scheme file (SearchResult.to_json): the scheme with the
compile options and target it was searched with, which `compile --update @FILE` takes
whole, so the compiled arena is the one the search measured.
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

# Every candidate scheme compiles with these unless the caller gives its own: compile()'s defaults (the
# smallest arena, so more fits a budget) and a learning rate its few steps per part can use.
SEARCH_OPTIONS = CompileOptions(optimizer=SGD(lr=0.005))


@dataclasses.dataclass(frozen=True)
class SearchTask:
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray


SCHEME_FILE_VERSION = 1


@dataclasses.dataclass
class SearchResult:
    scheme: dict
    arena_bytes: int  # measured in TFLM (projected to 32 bits for a 32-bit target), <= the budget
    gain: float  # summed contributions (the search's proxy)
    bias_gains: dict[int, float]
    weight_gains: dict[tuple[int, float], float]
    budget: int
    target: Target
    compile_options: dict  # the compile() keywords every candidate was compiled with

    def to_json(self) -> str:
        """The scheme file: what `compile --update @FILE` (and load_scheme_file) read back."""
        return json.dumps(
            {
                "tinytrain_scheme_file": SCHEME_FILE_VERSION,
                "scheme": self.scheme,
                "compile": self.compile_options,
                "target": self.target.name,
                "kernels": self.target.kernels,
                "budget_bytes": self.budget,
                "arena_bytes": self.arena_bytes,
                "arena_method": arena_method(self.target),
            }
        )


def arena_method(target: Target) -> str:
    if target.pointer_bytes == 8:
        return "measured in TFLM (x86-64)"
    return "measured in TFLM (x86-64), projected to 4-byte pointers"


@dataclasses.dataclass(frozen=True)
class SchemeFile:
    """A scheme with the compile options, target and budget it was searched with (all optional but the scheme)."""

    scheme: dict
    compile_options: dict
    target: str | None
    kernels: str | None
    budget: int | None


def load_scheme_file(text: str, origin: str) -> SchemeFile:
    """A scheme file written by the search, or a plain scheme JSON ({"bias_last": ..., "weights": ...})."""
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise TinyTrainError(f"{origin} is not JSON: {error}") from None
    if not isinstance(content, dict) or "tinytrain_scheme_file" not in content:
        return SchemeFile(content, {}, None, None, None)  # a plain scheme, which compile checks
    if content["tinytrain_scheme_file"] != SCHEME_FILE_VERSION:
        raise TinyTrainError(f"{origin} is scheme file version {content['tinytrain_scheme_file']}; this tool reads version 1")
    options = content.get("compile", {})
    known = {"gradient", "tiles", "flash_requantization"}
    if not isinstance(options, dict) or set(options) - known:
        raise TinyTrainError(f"{origin}: 'compile' must be an object with keys among {sorted(known)}")
    budget = content.get("budget_bytes")
    if budget is not None and (not isinstance(budget, int) or budget <= 0):
        raise TinyTrainError(f"{origin}: budget_bytes must be a positive integer, got {budget!r}")
    return SchemeFile(content.get("scheme"), options, content.get("target"), content.get("kernels"), budget)


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
        """target: the device the schemes are compiled for; the budget is judged on its pointer size."""
        self.model, self.task, self.budget = model, task, budget
        self.options, self.target, self.steps = options, target, steps
        self.progress = progress or (lambda message: None)
        self.layers = len(conv_like_layers(read.read_graph(model)))
        # The classifier (the last layer) always trains; the others are candidates.
        self.candidates = list(range(max(0, self.layers - 1 - candidate_layers), self.layers - 1))
        self._memory: dict[str, int] = {}

    def compile_scheme(self, scheme: dict):
        return compile_with(self.model, dataclasses.replace(self.options, update=scheme), self.target)

    @property
    def compile_options(self) -> dict:
        """The memory options every candidate is compiled with, as the scheme file records them (the ones
        its arena depends on; the optimizer is compile's own choice)."""
        tiles = self.options.memory.tiles
        return {
            "gradient": self.options.gradient,
            "tiles": list(tiles) if isinstance(tiles, tuple) else tiles,
            "flash_requantization": self.options.memory.flash_requantization,
        }

    def fits(self, scheme: dict) -> bool:
        """Whether the scheme's arena, measured in TFLM, fits the budget. The planner's estimate
        (within 0.3% on large models, 4% on arenas of a few KB) only skips the
        measurement of schemes far over budget."""
        key = json.dumps(scheme, sort_keys=True)
        if key not in self._memory:
            model = self.compile_scheme(scheme).bytes
            graph = read.read_graph(model)
            bookkeeping = memory.X86_64 if self.target.pointer_bytes == 8 else memory.CORTEX_M
            estimate = memory.estimate(graph, bookkeeping).total
            if estimate > 1.1 * self.budget:
                self._memory[key] = estimate
            elif self.target.pointer_bytes == 8:
                self._memory[key] = interpreter.minimum_arena_size(model)
            else:
                self._memory[key] = memory.project_32bit(interpreter.minimum_arena_size(model), graph)
        return self._memory[key] <= self.budget

    def accuracy_after_training(self, scheme: dict) -> float:
        """Held-out accuracy after `steps` on-device steps with this scheme (same samples for every scheme)."""
        if self.task is None:
            raise TinyTrainError("this SchemeSearch has no task: it sizes schemes (fits, last_layers_baseline), not train them")
        trainer = Trainer(self.compile_scheme(scheme))
        for i in np.random.default_rng(0).integers(0, len(self.task.train_x), self.steps):
            trainer.step(self.task.train_x[i], int(self.task.train_y[i]))
        return trainer.accuracy(self.task.val_x, self.task.val_y)

    def bias_depths(self) -> list[int]:
        """The depths of last-layer biases whose gain contributions() measures (depth 1 comes with the classifier)."""
        return sorted({k for k in (2, 4, 8, 12, 16, 22, self.layers) if 1 < k <= self.layers})

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

        bias_gains = {1: 0.0}
        for depth in self.bias_depths():
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
        self.progress(f"search: best scheme {json.dumps(scheme)} measures {measured:,} bytes")
        return SearchResult(
            scheme, measured, fitness(best), bias_gains, weight_gains, self.budget, self.target, self.compile_options
        )


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

"""Benchmark: sparse update against last-layer training on three real transfer tasks.

Not a test: prints one table per task and writes a plot of the search's contribution curves.
The tasks (tinytrain_tflm.tools.tasks, data from tinytrain_tflm.tools.datasets, installed by
`make setup`):
- watch: per-wearer adaptation on seglearn's smartwatch exercises (1-D CNN as Conv2D over (T, 1, 6));
- digits: MNIST reduced to 8x8 -> scikit-learn's 8x8 digits (10 per class on device);
- animals: Fashion-MNIST -> animal silhouettes, ten new classes (30 per class on device).

Per task: a float CNN is pretrained in TensorFlow on the source domain (cached in build/transfer/),
converted to int8, and trained on the TFLM x86 runtime one sample per step (int8 gradients, SGD with
QAS and stochastic rounding). Rows: accuracy before training; the classifier alone; the classifier
with every bias; the scheme `SchemeSearch` finds under the budget; all layers. Each trains the same
samples in the same order per seed; the fp32 column fine-tunes exactly the same parameters in
TensorFlow with the same SGD, samples and order. The budget is the arena halfway between the
classifier alone and all layers (override with --budget). The search runs per seed, on that seed's
validation split (held out from training and test); where two seeds' search data are the same (watch:
every seed's search adapts the same pilot wearer) the earlier result is reused, the search being
deterministic. --search-once searches on seed 0's split only and trains its scheme on every seed.
--rounding-seeds N trains each int8 row N times per seed, with different stochastic-rounding streams
(SGD.seed): on animals the stream alone moves one seed's searched scheme between 32.4% and 40.8%, as
much as the int8-fp32 difference being measured, so one stream per seed is a noisy comparison.

--instructions adds each scheme's training step on the emulated Cortex-M7 (CMSIS-NN kernels, QEMU
counting instructions) and the instructions to reach the classifier alone's accuracy (each seed's steps
times its scheme's instructions per step); it needs the cross tools and TFLM's sources (README, "On a
microcontroller").

Arena: measured in TFLM on x86 (bisection) and projected to a 32-bit MCU (plan.memory.project_32bit).
"to reach" is the first checkpoint (every --check-every steps) where the test accuracy reaches the
classifier alone's final accuracy, averaged over the seeds that reach it.

    .venv/bin/python benchmarks/transfer.py [--tasks watch,digits,animals] [--seeds 3] [--budget 20KB]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import tinytrain_tflm as tt  # noqa: E402
from tinytrain_tflm.frontend.convert import keras_to_int8  # noqa: E402
from tinytrain_tflm.passes.scheme import RATIOS  # noqa: E402
from tinytrain_tflm.plan import memory  # noqa: E402
from tinytrain_tflm.tools import tasks  # noqa: E402
from tinytrain_tflm.tools.cli import parse_size  # noqa: E402
from tinytrain_tflm.tools.search import SEARCH_OPTIONS, SchemeSearch, SearchTask  # noqa: E402

CACHE = Path(__file__).resolve().parent.parent / "build" / "transfer"
# Per task: epochs on device (over its training split) and the learning rate.
TRAINING = {"watch": (3, 0.01), "watch-same-arm": (3, 0.01), "digits": (5, 0.01), "animals": (3, 0.01)}


def pretrained(name: str, task: tasks.RealTask):
    """(float Keras model, int8 .tflite bytes, source accuracy), pretrained once and cached."""
    import tensorflow as tf

    keras_path, tflite_path, info_path = (CACHE / f"{name}.{ext}" for ext in ("keras", "tflite", "json"))
    if not (keras_path.exists() and tflite_path.exists() and info_path.exists()):
        print(
            f"pretraining the {name} model in float on its source domain ({len(task.data.pretrain_x):,} samples)...", flush=True
        )
        model, source_accuracy = tasks.pretrained_real_model(task)
        CACHE.mkdir(parents=True, exist_ok=True)
        model.save(keras_path)
        tflite_path.write_bytes(keras_to_int8(model, task.data.pretrain_x[:200]))
        info_path.write_text(json.dumps({"source_accuracy": source_accuracy}))
    model = tf.keras.models.load_model(keras_path)
    return model, tflite_path.read_bytes(), json.loads(info_path.read_text())["source_accuracy"]


def arena(model: bytes, scheme) -> tuple[int, int]:
    """(x86 measured, 32-bit projected) minimum arena of the scheme's training model."""
    training = tt.compile(model, update=scheme, gradient="int8")
    measured = tt.minimum_arena_size(training.bytes)
    return measured, memory.project_32bit(measured, tt.read_graph(training.bytes))


def step_instructions(model: bytes, scheme, sample: np.ndarray) -> int:
    """Instructions of one training step (one invoke: forward, loss, backward and update) on the emulated
    Cortex-M7 with its default kernels, CMSIS-NN's for TFLM's forward ops (tinytrain_tflm.firmware.device;
    QEMU counts instructions, not cycles)."""
    from tinytrain_tflm.backend.schema_generated import CONTROL_BACKWARD, CONTROL_UPDATE
    from tinytrain_tflm.firmware import device
    from tinytrain_tflm.target import target

    cortex_m7 = target("cortex-m7")
    training = tt.compile(model, update=scheme, gradient="int8", target=cortex_m7).bytes
    graph = tt.read_graph(training)
    quantized = graph.tensors[graph.inputs[0]].quantization.quantize(sample[None], np.int8)
    run = device.run(
        device.build_firmware(training, cortex_m7), cortex_m7.ram_bytes, [(CONTROL_BACKWARD | CONTROL_UPDATE, [0], quantized)]
    )
    if run.error:
        raise SystemExit(f"cortex-m7: {run.error}")
    return run.invokes[0].instructions


def cached_instructions(model: bytes, scheme_key: str, sample: np.ndarray) -> int:
    """step_instructions, kept in build/transfer/instructions.json per (model, scheme): each scheme is one
    firmware build, minutes on a loaded machine, and the count depends only on the model and scheme."""
    path = CACHE / "instructions.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    key = f"{hashlib.sha256(model).hexdigest()[:16]} {scheme_key}"
    if key not in known:
        count = step_instructions(model, json.loads(scheme_key), sample)
        known = json.loads(path.read_text()) if path.exists() else {}  # another run may have added some meanwhile
        known[key] = count
        path.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
    return known[key]


def train_int8(
    model: bytes, scheme, task: tasks.TransferTask, order: np.ndarray, lr: float, check_every: int, rounding_seed: int = 1
) -> list[float]:
    """Test accuracy at every check_every steps (and at the end) of on-device training in `order`;
    rounding_seed seeds the stochastic rounding's generators (SGD.seed)."""
    optimizer = tt.SGD(lr=lr, seed=rounding_seed)
    trainer = tt.Trainer(tt.compile(model, update=scheme, optimizer=optimizer, gradient="int8"))
    curve = []
    for step, i in enumerate(order, 1):
        trainer.step(task.train_x[i], int(task.train_y[i]))
        if step % check_every == 0 or step == len(order):
            curve.append(trainer.accuracy(task.test_x, task.test_y))
    return curve


def steps_to_reach(curve: list[float], target: float, check_every: int, total: int) -> int | None:
    for index, accuracy in enumerate(curve):
        if accuracy >= target - 1e-9:
            return min((index + 1) * check_every, total)
    return None


def plot_contributions(path: Path, results: dict) -> None:
    """results: task name -> (SearchResult, number of conv-like layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.6), squeeze=False)
    for axis, (name, (result, layers)) in zip(axes[0], results.items(), strict=True):
        candidates = sorted({layer for layer, _ in result.weight_gains})
        for ratio in RATIOS:
            points = [(c, result.weight_gains[(c, ratio)]) for c in candidates if (c, ratio) in result.weight_gains]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=f"weights x{ratio:g}")
        depths = sorted(result.bias_gains)
        axis.plot(
            [layers - d for d in depths], [result.bias_gains[d] for d in depths], "k--", marker="s", label="biases from layer"
        )
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_title(f"{name}: gain over classifier alone")
        axis.set_xticks(range(layers))
        axis.set_xlabel("conv-like layer index")
        axis.set_ylabel("validation accuracy gain")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def run_task(name: str, args: argparse.Namespace) -> object:
    epochs, lr = TRAINING[name]
    lr = args.lr or lr
    first = tasks.real_task(name, seed=0)
    float_model, model, source_accuracy = pretrained(name, first)
    layers = len(tt.passes.scheme.conv_like_layers(tt.read_graph(model)))
    base_arena = arena(model, "last")[0]
    all_arena = arena(model, "all")[0]
    budget = parse_size(args.budget) if args.budget else (base_arena + all_arena) // 2
    print(f"\n== {name}: {first.description}")
    print(f"   float source accuracy {source_accuracy:.1%}; int8 model {len(model):,} bytes, {layers} conv-like layers")
    print(f"   budget {budget:,} bytes (classifier alone {base_arena:,}, all layers {all_arena:,}, x86 measured)", flush=True)

    steps = args.search_steps or len(first.search_x) * epochs
    searches: dict[str, object] = {}  # the search's data (hash) -> its result

    def search(task: tasks.RealTask):
        """SchemeSearch on this seed's search data, or the earlier result when a seed's search data are the
        same (watch: every seed adapts the same pilot wearer; the search itself is deterministic)."""
        key = hashlib.sha256(b"".join(a.tobytes() for a in (task.search_x, task.search_y, task.val_x, task.val_y))).hexdigest()
        if key not in searches:
            start = time.perf_counter()
            searches[key] = SchemeSearch(
                model,
                SearchTask(task.search_x, task.search_y, task.val_x, task.val_y),
                budget,
                dataclasses.replace(SEARCH_OPTIONS, optimizer=tt.SGD(lr=lr)),
                steps=steps,
                candidate_layers=layers - 1,
                progress=lambda message: print(f"   {message}", flush=True) if args.verbose else None,
            ).run(generations=args.generations)
            print(
                f"   search ({steps} steps per contribution, {time.perf_counter() - start:.0f} s):"
                f" {json.dumps(searches[key].scheme)}",
                flush=True,
            )
        else:
            print("   search: the same data as an earlier seed's, its scheme reused")
        return searches[key]

    fixed = [
        ("classifier only", "last"),
        ("classifier + all biases", {"bias_last": layers, "weights": {str(layers - 1): 1}}),
        ("searched", None),  # per seed
        ("all layers", "all"),
    ]
    labels = [label for label, _ in fixed]
    sizes: dict[str, object] = {}  # scheme (json) -> arena (x86, 32-bit)

    def measure(scheme) -> str:
        key = json.dumps(scheme, sort_keys=True)
        if key not in sizes:
            sizes[key] = arena(model, scheme)
        return key

    befores, results = [], {label: ([], [], []) for label in labels}  # int8 curves, fp32 finals, scheme keys
    found = None
    for seed in range(args.seeds):
        task = first if seed == 0 else tasks.real_task(name, seed=seed)
        seed_search = search(first if args.search_once else task)
        found = found or seed_search
        data = task.data
        order = np.concatenate([np.random.default_rng(100 * seed + e).permutation(len(data.train_x)) for e in range(epochs)])
        befores.append(tt.Trainer(tt.compile(model, update="last")).accuracy(data.test_x, data.test_y))
        for label, scheme in fixed:
            scheme = scheme or seed_search.scheme
            for rounding_seed in range(1, args.rounding_seeds + 1):
                curve = train_int8(model, scheme, data, order, lr, args.check_every, rounding_seed)
                results[label][0].append(curve)
                results[label][2].append(measure(scheme))
            results[label][1].append(tasks.float_finetune(float_model, scheme, data, lr, order))
        print(f"   seed {seed}: {task.description}; {len(order)} steps; before {befores[-1]:.1%}", flush=True)

    # After training: firmware builds share one lock across processes, and no accuracy run waits on them.
    instructions = {key: cached_instructions(model, key, first.data.train_x[0]) if args.instructions else None for key in sizes}
    total = len(order)
    reference = np.mean([curve[-1] for curve in results["classifier only"][0]])
    runs = args.seeds * args.rounding_seeds
    rounding = f" x {args.rounding_seeds} rounding seeds (int8)" if args.rounding_seeds > 1 else ""
    print(f"\n   {name}: test accuracy over {args.seeds} seeds{rounding} (mean +- std), {total} steps of batch 1, lr {lr}")
    print(
        f"   {'scheme':26} {'int8+QAS':>14} {'fp32 same':>14} {'int8-fp32':>9} {'arena x86':>10} {'32-bit':>8}"
        f" {'M7 M instr/step':>15} {'to reach':>8} {'M instr':>8}"
    )
    print(f"   {'before training':26} {np.mean(befores):>7.1%} +-{np.std(befores):4.1%}")
    for label in labels:
        curves, fp32, keys = results[label]
        finals, fp32 = np.array([curve[-1] for curve in curves]), np.array(fp32)
        reached = [steps_to_reach(c, reference, args.check_every, total) for c in curves]
        # Instructions to reach: each seed's steps times its scheme's instructions per step.
        costs = [r * instructions[k] for r, k in zip(reached, keys, strict=True) if r is not None and instructions[k]]
        reached = [r for r in reached if r is not None]
        to_reach = f"{np.mean(reached):.0f}" if len(reached) == runs else f"{len(reached)}/{runs}"
        x86 = np.mean([sizes[k][0] for k in keys])
        projected = np.mean([sizes[k][1] for k in keys])
        fits = "" if all(sizes[k][0] <= budget for k in keys) else " (over budget)"
        per_step = [instructions[k] for k in keys if instructions[k]]
        cost = f"{np.mean(per_step) / 1e6:.2f}" if per_step else "-"
        to_reach_cost = f"{np.mean(costs) / 1e6:.0f}" if len(costs) == runs else "-"
        print(
            f"   {label:26} {finals.mean():>7.1%} +-{finals.std():4.1%} {fp32.mean():>7.1%} +-{fp32.std():4.1%}"
            f" {100 * (finals.mean() - fp32.mean()):>+8.1f}p {x86:>10,.0f} {projected:>8,.0f} {cost:>15} {to_reach:>8}"
            f" {to_reach_cost:>8}{fits}"
        )
    for seed, key in enumerate(results["searched"][2][:: args.rounding_seeds]):
        x86, projected = sizes[key]
        print(f"   searched, seed {seed}: {key} ({x86:,} B x86)")
    print("   per seed, int8 (each rounding seed) / fp32 final:")
    for label in labels:
        finals = [curve[-1] for curve in results[label][0]]
        per_seed = [finals[i : i + args.rounding_seeds] for i in range(0, len(finals), args.rounding_seeds)]
        pairs = ", ".join(f"{' '.join(f'{x:.1%}' for x in c)}/{f:.1%}" for c, f in zip(per_seed, results[label][1], strict=True))
        print(f"     {label:26} {pairs}", flush=True)
    return found, layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="watch,digits,animals")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", help="arena budget, e.g. 20KB (default: halfway between classifier alone and all layers)")
    parser.add_argument("--lr", type=float, help="learning rate (default: per task)")
    parser.add_argument("--search-steps", type=int, help="steps per contribution measurement (default: the task's run)")
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument(
        "--search-once", action="store_true", help="search on seed 0's split only and train its scheme on every seed (faster)"
    )
    parser.add_argument(
        "--rounding-seeds",
        type=int,
        default=1,
        help="int8 runs per seed with different stochastic-rounding streams (SGD.seed 1..N); the int8 column averages them",
    )
    parser.add_argument("--check-every", type=int, default=100, help="steps between test accuracy checkpoints")
    parser.add_argument("--plot", help="contribution curves (default: build/transfer/contributions-<tasks>.png)")
    parser.add_argument(
        "--instructions", action="store_true", help="measure each scheme's step on the emulated Cortex-M7 (cross tools, QEMU)"
    )
    parser.add_argument("--verbose", action="store_true", help="print each contribution as it is measured")
    args = parser.parse_args()
    found = {name: run_task(name, args) for name in args.tasks.split(",")}
    plot = Path(args.plot or CACHE / f"contributions-{'-'.join(found)}.png")
    plot_contributions(plot, found)
    print(f"\ncontribution curves: {plot}")


if __name__ == "__main__":
    main()

"""Benchmark: training models on emulated Cortex-M boards (tinytrain_tflm.firmware.device).

Not a test: prints a table. Per model, update scheme, target and kernel set:
- the exact minimum arena, bisected in the emulated firmware (32-bit, TFLM 90b983c), next to `plan`'s
  32-bit projection;
- flash: the firmware's code and constants, the model included;
- instructions per inference (control 0) and per training step (control 3; the first after allocation
  apart, see measure()), their ratio, and the
  ratio of a step to the unmodified model's stock TFLM inference on the same target and kernels. That
  inference is the unmodified graph (no tiling, no tinytrain forward op, TFLM's own arena plan) run as
  the second predict invoke of its last-layer training model: its loss op then only writes NaN, and
  TT_INIT_VARIABLES only checks its flag.

QEMU runs with -icount shift=3: its virtual clock advances 8 ns per instruction, and the harness reads
SysTick (25 MHz, one tick per 5 instructions) around each Invoke(). These are instruction counts, not
cycles: QEMU models no pipeline, caches or wait states. Weights are random: memory does not depend on
them, and instructions only through the int8 gradients' second passes (delayed scaling: a step writes a
gradient in one pass unless the scale its history predicts missed). Keras' random MobileNetV2 is extreme
there: its activations vanish (the int8 feature map before the pooling has scale 8e-9 and one level), so
every gradient below the classifier is 0 and takes one pass; a trained model's gradients are not, and
miss now and then (the second-pass column says how often on these samples). Needs the cross tools and
TFLM's sources (see tinytrain_tflm/firmware/device.py; `make test` sets TINYTRAIN_THIRD_PARTY and
TINYTRAIN_BUILD_DIR).

With --profile, each row is followed by the training step's instructions per op (the harness's
per-op counter: tinytrain's custom ops by name, TFLM's builtins by theirs), largest first. With
--reference-core, the cmsis-nn rows use tinytrain's portable kernel core instead of its Cortex-M versions
(kernels/cmsis_nn): the "before" of those versions. --no-arena skips the arena bisection (speed only).

--speed prints only the speed table of issue 12 (emulated Cortex-M7, CMSIS-NN, 1 MB arena region, no
bisection): the DS-CNN with every layer training, MobileNetV2-w0.35 128x128 with MIT's 99kb scheme
(benchmarks/memory.py's mit_scheme) and with its last layer, each with and without flash requantization;
stock TFLM + CMSIS-NN inference of the unmodified model, our predict and train step, and the step's
share in forward, backward and update from the per-op profile: forward is what the predict invoke's ops
take (the same forward ops), update the TT_SGD ops, backward the rest of the step's ops (the loss and
every gradient op). Shares are of the step's per-op total, which leaves out the interpreter's own work.
Beside the second step (profiled), the mean of steps 2 to STEPS (each on its own random sample) and the
share of int8 gradient writes in those steps that took a second pass, counted by the host Trainer on the
same model and samples (bit-identical to the device); then the same for steps STEADY_FROM to STEADY_STEPS
(10-14), once the int8 gradients' predicted scales have settled.

--defaults prints issue 13's table: MobileNetV2-w0.35 128x128 with MIT's 99kb scheme on the emulated
Cortex-M7 with CMSIS-NN, compiled with compile's defaults and with each memory default turned off: the
bisected arena, the instructions of a predict and of a training step, and each step's per-op profile.

--stage "none;auto;4x4;..." prints the tiled stage's table (issue 12, item 3): MobileNetV2-w0.35 128x128 with
MIT's 99kb scheme, int8 gradients, flash requantization, overlapping buffers, per first-stage grid, on
emulated Cortex-M7 with CMSIS-NN: predict, step, stock inference, the TT_TILED_STAGE op's instructions,
the bisected 32-bit arena and the plan's stage scratch, with per-op profiles of the predict and of stock.

    .venv/bin/python benchmarks/device.py [--quick] [--targets cortex-m7,cortex-m4] [--kernels reference,cmsis-nn]
        [--schemes "last layer;..."] [--profile] [--reference-core] [--no-arena] [--speed] [--stage GRIDS] [--defaults]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/memory.py (python -P leaves it out)

import numpy as np  # noqa: E402
from memory import ds_cnn_kws, mit_scheme  # noqa: E402  (benchmarks/memory.py)
from models import int8_model, mobilenet_v2_035_128  # noqa: E402

import tinytrain_tflm as tt  # noqa: E402
from tinytrain_tflm.backend import schema  # noqa: E402
from tinytrain_tflm.backend.schema_generated import CONTROL_BACKWARD, CONTROL_UPDATE, SGD, TILED_STAGE  # noqa: E402
from tinytrain_tflm.firmware import device  # noqa: E402
from tinytrain_tflm.passes.scheme import conv_like_layers  # noqa: E402
from tinytrain_tflm.plan import memory  # noqa: E402
from tinytrain_tflm.runtime.trainer import sample_tensor, training_metadata  # noqa: E402
from tinytrain_tflm.target import target  # noqa: E402

# The unmodified MobileNetV2 needs more than 256 KB (its stock inference is the speed reference only).
STOCK_ARENA_REGION = 1 << 20
# Training steps of the speed and defaults tables, each on its own random sample: the second is profiled,
# and steps 2 to STEPS give the mean and the second-pass rate (int8 gradients' delayed scaling).
STEPS = 5
# The speed table also runs to STEADY_STEPS and gives steps STEADY_FROM to STEADY_STEPS apart: after the
# first few steps the gains the histories predict have settled and second passes are rarer. Both columns
# are printed; steps 2-5 stay the headline figure.
STEADY_FROM = 10
STEADY_STEPS = 14


# Step k (from 0) trains with label step_label(k): k + 1 for the first nine, so STEPS' labels are as before,
# and within every table model's 10 or more classes after.
def step_label(k: int) -> int:
    return k % 9 + 1


def schemes(source: bytes) -> list[tuple[str, dict]]:
    layers = len(conv_like_layers(tt.read_graph(source)))
    partial = {"bias_last": 8, "weights": {str(layers - 1): 1, str(layers - 3): 0.25, str(layers - 6): 0.125}}
    base = {"gradient": "int8", "tiles": "auto", "flash_requantization": False}
    return [
        ("last layer", {**base, "update": "last"}),
        ("last layer, flash requantization", {**base, "update": "last", "flash_requantization": True}),
        ("bias 8 + classifier + 1/4, 1/8 of two pointwise", {**base, "update": partial}),
        ("the same, flash requantization", {**base, "update": partial, "flash_requantization": True}),
    ]


@dataclasses.dataclass(frozen=True)
class Settings:
    profile: bool = False
    reference_core: bool = False
    arena: bool = True


def measure(model: bytes, device_target, samples: np.ndarray, settings: Settings = Settings()) -> dict:
    """Flash, and the instructions of a predict, one training step per sample (sample k with label
    step_label(k); at least two samples) and a second predict; the per-op counts are the second step's. The
    first step after allocation finds each int8 gradient's scale in two passes; later ones quantize in one
    pass at the scale the gradient's history predicts, unless it misses (kernels/core/common/grad_io.h), so
    "step" (the second), "mean step" (steps 2 to STEPS or fewer) and "steady step" (steps STEADY_FROM to the
    last, when there are that many) are what training costs per step."""
    firmware = device.build_firmware(model, device_target, settings.reference_core)
    graph = tt.read_graph(model)
    sample = sample_tensor(graph, training_metadata(graph))  # a streamed sample is no graph input
    quantized = [sample.quantization.quantize(samples[i : i + 1], sample.dtype) for i in range(len(samples))]
    train = CONTROL_BACKWARD | CONTROL_UPDATE
    steps = [(train, [step_label(k)], x) for k, x in enumerate(quantized)]
    invokes = [(0, [0], quantized[0]), *steps, (0, [0], quantized[0])]
    run = device.run(firmware, device_target.ram_bytes, invokes, profile=settings.profile)
    if run.error:
        raise SystemExit(f"{device_target.label}: {run.error}")
    predict, first_step, *later, again = run.invokes
    return {
        "flash": firmware.flash_bytes,
        "predict": predict.instructions,
        "first step": first_step.instructions,
        "step": later[0].instructions,
        "mean step": float(np.mean([step.instructions for step in later[: STEPS - 1]])),
        "steady step": float(np.mean([step.instructions for step in later[STEADY_FROM - 2 :]] or [np.nan])),
        "step ops": later[0].ops,
        "predict ops": predict.ops,
        "predict again": again.instructions,
        "firmware": firmware,
    }


def second_pass_rates(model: bytes, samples: np.ndarray, spans: list[tuple[int, int]]) -> list[float]:
    """Per span (first, last) of measure()'s training steps (numbered from 1), the share of int8 gradient
    writes in those steps that took a second pass, counted by the host Trainer on the same model, samples
    and labels: its steps are bit-identical to the device's (tests/test_device.py), its second-pass
    counters too."""
    trainer = tt.Trainer(model)
    counts = [0]
    for k, sample in enumerate(samples):
        trainer.step(sample, step_label(k))
        counts.append(trainer.second_passes()[0])
    histories = trainer.second_passes()[1]
    return [(counts[last] - counts[first - 1]) / max(1, histories * (last - first + 1)) for first, last in spans]


def stock_inference(source: bytes, device_target, samples: np.ndarray, profile: bool = False) -> int:
    """Instructions of the unmodified graph's inference (see the module docstring), in a 1 MB arena region;
    with `profile`, also printed per op."""
    untouched = {"tiles": None, "flash_requantization": False, "overlap_buffers": False}
    model = tt.compile(source, update="last", target=device_target, **untouched).bytes
    region = dataclasses.replace(device_target, ram_bytes=STOCK_ARENA_REGION)
    figures = measure(model, region, samples[:2], Settings(profile=profile, arena=False))
    if profile:
        print_profile(figures["predict ops"], figures["predict"], "stock inference")
    return figures["predict again"]


def print_profile(ops: dict[str, tuple[int, int]], total: int, invoke: str = "training step") -> None:
    """An invoke's per-op table, largest first; the rest of the invoke is the interpreter's own work."""
    print(f"\n  | op ({invoke}) | calls | instructions | share of the {invoke} |\n  |---|---|---|---|")
    for name, (calls, count) in sorted(ops.items(), key=lambda item: -item[1][1]):
        print(f"  | {name} | {calls} | {count:,} | {100 * count / total:.1f}% |")
    print()


def benchmark(
    title: str,
    source: bytes,
    rows: list[tuple[str, dict]],
    targets: list[str],
    kernel_sets: list[str],
    settings: Settings = Settings(),
) -> None:
    graph = tt.read_graph(source)
    shape = graph.tensors[graph.inputs[0]].shape
    samples = np.random.default_rng(0).uniform(-1, 1, (2, *shape[1:])).astype(np.float32)
    print(f"\n{title}")
    columns = [
        "scheme",
        "target",
        "32-bit arena measured",
        "plan's projection",
        "flash",
        "predict",
        "first train step",
        "train step",
    ]
    columns += ["step / predict", "step / stock inference"]
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for name in targets:
        for kernels in kernel_sets:
            device_target = target(name, kernels)
            stock = stock_inference(source, device_target, samples)
            for label, options in rows:
                start = time.perf_counter()
                model = tt.compile(source, target=device_target, **options).bytes
                figures = measure(model, device_target, samples, settings)
                projected = memory.project_32bit(tt.minimum_arena_size(model), tt.read_graph(model))
                if settings.arena:
                    arena = device.minimum_arena(figures["firmware"])
                    arena_columns = f"{arena:,} B | {projected:,} B ({100 * (projected - arena) / arena:+.1f}%)"
                else:
                    arena_columns = f"(not measured) | {projected:,} B"
                print(
                    f"| {label} | {device_target.label} | {arena_columns} | {figures['flash']:,} B "
                    f"| {figures['predict'] / 1e6:,.2f} M | {figures['first step'] / 1e6:,.2f} M "
                    f"| {figures['step'] / 1e6:,.2f} M "
                    f"| {figures['step'] / figures['predict']:.2f} | {figures['step'] / stock:.2f} |",
                    flush=True,
                )
                if settings.profile:
                    print_profile(figures["step ops"], figures["step"])
                elapsed = time.perf_counter() - start
                print(f"  ({elapsed:.0f} s; stock inference {stock / 1e6:,.2f} M instructions)", file=sys.stderr)


def speed_models() -> list[tuple[str, bytes, list[tuple[str, dict]]]]:
    """Issue 12's speed table: (title, model, [(scheme, compile options)]), each scheme also with flash
    requantization."""
    mobilenet = mobilenet_v2_035_128()
    layers = len(conv_like_layers(tt.read_graph(mobilenet)))
    # Every option the table depends on is stated: the compile defaults may change.
    base = {"gradient": "int8", "tiles": "auto", "flash_requantization": False, "overlap_buffers": True}
    models = [
        ("DS-CNN, 20x10x1, 12 classes", ds_cnn_kws(), [("all layers", {**base, "tiles": None, "update": "all"})]),
        (
            "MobileNetV2-w0.35, 128x128, 10 classes",
            mobilenet,
            [("MIT 99kb", {**base, "update": mit_scheme("99kb", layers)}), ("last layer", {**base, "update": "last"})],
        ),
    ]
    flash = {"flash_requantization": True}
    streamed = {**flash, "stream_input": True}
    return [
        (
            title,
            model,
            [
                row
                for label, options in rows
                for row in (
                    (label, options),
                    (f"{label}, flash requantization", {**options, **flash}),
                    *([(f"{label}, flash requantization, streamed sample", {**options, **streamed})] if options["tiles"] else []),
                )
            ],
        )
        for title, model, rows in models
    ]


def step_shares(predict_ops: dict[str, tuple[int, int]], step_ops: dict[str, tuple[int, int]]) -> tuple[float, float, float]:
    """Forward, backward and update shares of the step's per-op instructions (see the module docstring)."""
    total = sum(count for _, count in step_ops.values())
    forward = sum(count for _, count in predict_ops.values())
    update = sum(count for name, (_, count) in step_ops.items() if name == SGD)
    return forward / total, (total - forward - update) / total, update / total


def speed_table(name: str = "cortex-m7", profile: bool = False, wanted: list[str] | None = None) -> None:
    """With `profile`, each row is followed by its step's per-op table; `wanted` keeps the rows whose
    "model: scheme" contains one of its strings."""
    device_target = dataclasses.replace(target(name, "cmsis-nn"), ram_bytes=STOCK_ARENA_REGION)
    columns = ["model", "scheme", "stock TFLM + CMSIS-NN inference", "our predict", "our train step"]
    columns += ["step / stock inference", "forward", "backward", "update"]
    columns += [f"mean of steps 2-{STEPS}", "mean / stock", f"second passes, steps 2-{STEPS}"]
    steady = f"{STEADY_FROM}-{STEADY_STEPS}"
    columns += [f"mean of steps {steady}", "steady / stock", f"second passes, steps {steady}"]
    print(f"\nSpeed on {device_target.label}, instructions (QEMU -icount), int8 gradients")
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for title, source, rows in speed_models():
        graph = tt.read_graph(source)
        shape = graph.tensors[graph.inputs[0]].shape
        samples = np.random.default_rng(0).uniform(-1, 1, (STEADY_STEPS, *shape[1:])).astype(np.float32)
        rows = [(label, options) for label, options in rows if not wanted or any(w in f"{title}: {label}" for w in wanted)]
        if not rows:
            continue
        stock = stock_inference(source, device_target, samples)
        for label, options in rows:
            start = time.perf_counter()
            model = tt.compile(source, target=device_target, **options).bytes
            figures = measure(model, device_target, samples, Settings(profile=True, arena=False))
            shares = step_shares(figures["predict ops"], figures["step ops"])
            early, later = second_pass_rates(model, samples, [(2, STEPS), (STEADY_FROM, STEADY_STEPS)])
            print(
                f"| {title} | {label} | {stock / 1e6:,.2f} M | {figures['predict'] / 1e6:,.2f} M "
                f"| {figures['step'] / 1e6:,.2f} M | {figures['step'] / stock:.2f} | "
                + " | ".join(f"{100 * share:.0f}%" for share in shares)
                + f" | {figures['mean step'] / 1e6:,.2f} M | {figures['mean step'] / stock:.2f} | {100 * early:.0f}% "
                f"| {figures['steady step'] / 1e6:,.2f} M | {figures['steady step'] / stock:.2f} | {100 * later:.0f}% |",
                flush=True,
            )
            if profile:
                print_profile(figures["step ops"], figures["step"])
            print(f"  ({time.perf_counter() - start:.0f} s)", file=sys.stderr)


# Each of compile's memory-first defaults turned off alone, then both (issue 13: the defaults are the options
# that fit best without a speed penalty on the target).
DEFAULTS_OFF = [
    ("compile's defaults (int8 gradients, tiles auto, flash requantization)", {}),
    ("--tile none", {"tiles": None}),
    ("--no-flash-requantization", {"flash_requantization": False}),
    ("--tile none --no-flash-requantization", {"tiles": None, "flash_requantization": False}),
    ("--gradient float32", {"gradient": "float32"}),
]


def defaults_table(name: str = "cortex-m7") -> None:
    """MobileNetV2-w0.35 128x128 with MIT's 99kb scheme on the emulated target with CMSIS-NN: the bisected
    arena and the instructions of a training step, with compile's defaults and each memory default off."""
    device_target = target(name, "cmsis-nn")
    source = mobilenet_v2_035_128()
    scheme = mit_scheme("99kb", len(conv_like_layers(tt.read_graph(source))))
    shape = tt.read_graph(source).tensors[tt.read_graph(source).inputs[0]].shape
    samples = np.random.default_rng(0).uniform(-1, 1, (STEPS, *shape[1:])).astype(np.float32)
    region = dataclasses.replace(device_target, ram_bytes=STOCK_ARENA_REGION)
    columns = ["compiled with", "arena measured", "vs defaults", "predict", "train step", "vs defaults"]
    columns += [f"mean of steps 2-{STEPS}", f"second passes, steps 2-{STEPS}"]
    print(f"\nMobileNetV2-w0.35 128x128, MIT 99kb, on {device_target.label} (instructions, QEMU -icount)")
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    first = None
    for label, options in DEFAULTS_OFF:
        start = time.perf_counter()
        model = tt.compile(source, update=scheme, target=device_target, **options).bytes
        figures = measure(model, region, samples, Settings(profile=True, arena=False))
        arena = device.minimum_arena(figures["firmware"])
        first = first or (arena, figures["step"])
        print(
            f"| {label} | {arena:,} B | {100 * (arena - first[0]) / first[0]:+.1f}% "
            f"| {figures['predict'] / 1e6:,.2f} M | {figures['step'] / 1e6:,.2f} M "
            f"| {100 * (figures['step'] - first[1]) / first[1]:+.1f}% | {figures['mean step'] / 1e6:,.2f} M "
            f"| {100 * second_pass_rates(model, samples, [(2, STEPS)])[0]:.0f}% |",
            flush=True,
        )
        print_profile(figures["step ops"], figures["step"])
        print(f"  ({time.perf_counter() - start:.0f} s)", file=sys.stderr)


def parse_tiles(text: str) -> tuple[int, int] | str | None:
    """A --stage grid: none, auto, or HxW."""
    if text in ("none", "auto"):
        return None if text == "none" else "auto"
    try:
        rows, cols = (int(part) for part in text.split("x"))
    except ValueError:
        raise SystemExit(f"--stage: a grid is none, auto or HxW (e.g. 4x4), got {text!r}") from None
    return rows, cols


def stage_table(grids: list[str], name: str = "cortex-m7") -> None:
    """Issue 12 item 3's table: MobileNetV2-w0.35 128x128, MIT's 99kb scheme, int8 gradients, flash
    requantization, overlapping buffers, on emulated Cortex-M7 with CMSIS-NN (1 MB arena region), per
    first-stage tiling: predict, step, the stage op's instructions in the predict, the exact 32-bit
    arena (bisected on the device) and stock TFLM + CMSIS-NN inference of the unmodified model."""
    device_target = dataclasses.replace(target(name, "cmsis-nn"), ram_bytes=STOCK_ARENA_REGION)
    source = mobilenet_v2_035_128()
    layers = len(conv_like_layers(tt.read_graph(source)))
    shape = tt.read_graph(source).tensors[tt.read_graph(source).inputs[0]].shape
    samples = np.random.default_rng(0).uniform(-1, 1, (2, *shape[1:])).astype(np.float32)
    stock = stock_inference(source, device_target, samples, profile=True)
    base = {"gradient": "int8", "update": mit_scheme("99kb", layers), "flash_requantization": True}
    base["overlap_buffers"] = True
    columns = ["tiles", "predict", "step", "stock inference", "step / stock", "TT_TILED_STAGE (predict)"]
    columns += ["32-bit arena measured", "stage scratch (plan)"]
    print(f"\nMobileNetV2-w0.35 128x128, MIT 99kb, int8 gradients, flash requantization, {device_target.label}")
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for text in grids:
        start = time.perf_counter()
        model = tt.compile(source, target=device_target, tiles=parse_tiles(text), **base).bytes
        graph = tt.read_graph(model)
        stage = next((op for op in graph.ops if op.kind == TILED_STAGE), None)
        label = text
        if stage is not None:
            options = schema.decode_blob("TILED_STAGE", stage.custom_options)
            label += f" ({options['tiles_h']}x{options['tiles_w']}, {options['num_ops']} ops)" if text == "auto" else ""
        figures = measure(model, device_target, samples, Settings(profile=True))
        stage_calls, stage_count = figures["predict ops"].get(TILED_STAGE, (0, 0))
        arena = device.minimum_arena(figures["firmware"])
        scratch = memory.scratch_bytes(graph, stage) if stage is not None else 0
        print(
            f"| {label} | {figures['predict'] / 1e6:,.2f} M | {figures['step'] / 1e6:,.2f} M | {stock / 1e6:,.2f} M "
            f"| {figures['step'] / stock:.2f} | {stage_count / 1e6:,.2f} M ({stage_calls}) | {arena:,} B | {scratch:,} B |",
            flush=True,
        )
        print_profile(figures["predict ops"], figures["predict"], "predict")
        print(f"  ({time.perf_counter() - start:.0f} s)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small CNN only (seconds, not minutes)")
    parser.add_argument("--targets", default="cortex-m7", help="comma-separated targets (default cortex-m7)")
    parser.add_argument("--kernels", default="reference,cmsis-nn", help="comma-separated kernel sets")
    parser.add_argument("--schemes", help="MobileNetV2 scheme labels separated by ; (default: every scheme)")
    parser.add_argument("--profile", action="store_true", help="per-op instructions of each training step")
    parser.add_argument("--reference-core", action="store_true", help="the portable core in cmsis-nn builds too")
    parser.add_argument("--no-arena", action="store_true", help="skip the arena bisection")
    parser.add_argument("--speed", action="store_true", help="issue 12's speed table only (emulated Cortex-M7)")
    parser.add_argument("--stage", help="the tiled-stage table for these grids, ; separated (none;auto;4x4;...)")
    parser.add_argument("--defaults", action="store_true", help="issue 13's table: each compile default off (Cortex-M7)")
    args = parser.parse_args()
    device.check_tools()
    if args.stage:
        stage_table(args.stage.split(";"))
        return
    if args.speed:
        speed_table(profile=args.profile, wanted=args.schemes.split(";") if args.schemes else None)
        return
    if args.defaults:
        defaults_table()
        return
    targets, kernel_sets = args.targets.split(","), args.kernels.split(",")
    settings = Settings(args.profile, args.reference_core, not args.no_arena)
    blocks = [("all layers", {"update": "all", "gradient": "int8", "tiles": None, "flash_requantization": False})]
    benchmark("MobileNetV2 blocks, 5 classes", int8_model("mobilenet_v2_blocks"), blocks, targets, kernel_sets, settings)
    if not args.quick:
        source = mobilenet_v2_035_128()
        rows = schemes(source)
        if args.schemes:
            wanted = args.schemes.split(";")
            unknown = sorted(set(wanted) - {label for label, _ in rows})
            if unknown:
                raise SystemExit(f"unknown schemes {unknown}; the schemes are {[label for label, _ in rows]}")
            rows = [(label, scheme) for label, scheme in rows if label in wanted]
        title = "MobileNetV2-w0.35, 128x128, 10 classes, int8 gradients, tiled"
        benchmark(title, source, rows, targets, kernel_sets, settings)


if __name__ == "__main__":
    main()

"""Benchmark: generated kernels (tinytrain-tflm codegen) against the generic ones.

Not a test: prints, per training model,
  flash  .text (code and read-only data) of the kernel code a firmware links for the model's
         specializable ops, compiled for a Cortex-M7 with arm-none-eabi-g++ -Os: the generic core
         functions of those op kinds (with the ones they call) against every generated kernel.
         Core level only: the TFLM glue needs TFLM's headers, and it is the same code in both builds
         but for the generated registrations' small selection tables.
  step   wall time of one training step on x86 (Trainer.step in the TFLM reference runtime, the
         forward builtins and the Python call included), median of N steps after one warm-up,
         generic plugin against the generated one, same model and samples. Both give identical
         weights (checked).
  bwd    the backward and update part of it: the step's median minus the median of a predict
         (forward only) on the same samples.

    .venv/bin/python benchmarks/codegen.py [--quick] [--steps N]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
from generated_kernels import KERNELS, build_host_libraries, compile_for_cortex_m7  # noqa: E402
from models import int8_model, mobilenet_v2_035_128  # noqa: E402

import tinytrain_tflm as tt  # noqa: E402
from tinytrain_tflm import codegen  # noqa: E402
from tinytrain_tflm.scheme import conv_like_layers  # noqa: E402


def configs(quick: bool) -> dict[str, tt.TrainingModel]:
    models = {
        "DS-CNN, all layers, float32 gradients": tt.compile(int8_model("ds_cnn"), update="all", optimizer=tt.SGD(lr=0.05)),
        "MobileNetV2 blocks, sparse, int8 gradients": tt.compile(
            int8_model("mobilenet_v2_blocks"), update={"bias_last": 4, "weights": {"6": 1, "4": 0.5}}, gradient="int8"
        ),
    }
    if not quick:
        source = mobilenet_v2_035_128()
        classifier = len(conv_like_layers(tt.read_graph(source))) - 1
        models["MobileNetV2-w0.35 128x128, biases of last 8 + classifier, int8"] = tt.compile(
            source, update={"bias_last": 8, "weights": {str(classifier): 1}}, gradient="int8", tiles="auto"
        )
    return models


def _generic_sources(code: codegen.GeneratedCode) -> list[Path]:
    """The core files defining the generic functions of the model's specializable op kinds, and those they call."""
    by_name = {path.stem: path for path in KERNELS.glob("core/*/tt_*.cc")}
    pending = [
        by_name[function] for op in {k.op for k in code.kernels} for function, _, _ in codegen.OP_KINDS[op].functions.values()
    ]
    needed: set[Path] = set()
    while pending:
        path = pending.pop()
        if path not in needed:
            needed.add(path)
            pending += [by_name[name] for name in re.findall(r"\b(tt_\w+)\(", path.read_text()) if name in by_name]
    return sorted(needed)


def _text_bytes(objects: list[Path]) -> int:
    output = subprocess.run(["arm-none-eabi-size", *map(str, objects)], check=True, capture_output=True, text=True).stdout
    return sum(int(line.split()[0]) for line in output.splitlines()[1:])


def _median_seconds(run, samples: list[np.ndarray]) -> float:
    seconds = []
    for i, x in enumerate(samples):
        start = time.perf_counter()
        run(x, i)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def _step_seconds(model: tt.TrainingModel, library: Path | None, steps: int) -> tuple[float, float, dict[str, np.ndarray]]:
    """Median seconds of a step and of its backward and update part, and the weights after the steps."""
    trainer = tt.Trainer(model, kernel_library=library)
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1, 1, trainer.input.shape).astype(np.float32) for _ in range(steps)]
    trainer.step(samples[0], 0)  # warm-up
    predict = _median_seconds(lambda x, i: trainer.predict(x), samples)
    step = _median_seconds(lambda x, i: trainer.step(x, i % trainer.metadata["num_classes"]), samples)
    return step, step - predict, trainer.weights()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip MobileNetV2-w0.35")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    models = configs(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        codes = {name: codegen.write(model.bytes, root / f"model_{i}") for i, (name, model) in enumerate(models.items())}
        print(f"building {len(models)} generated plugins ...", flush=True)
        libraries = build_host_libraries([root / f"model_{i}" for i in range(len(models))], root / "build")
        print(
            f"{'model':64} {'kernels':>7} {'flash generic':>13} {'generated':>9} "
            f"{'step generic':>12} {'generated':>9} {'bwd generic':>11} {'generated':>9}"
        )
        for i, ((name, model), library) in enumerate(zip(models.items(), libraries, strict=True)):
            code = codes[name]
            objects = root / f"objects_{i}"
            objects.mkdir()
            generic_flash = _text_bytes(compile_for_cortex_m7(_generic_sources(code), [KERNELS], objects))
            generated = [root / f"model_{i}" / k.file for k in code.kernels]
            generated_flash = _text_bytes(compile_for_cortex_m7(generated, [KERNELS, root / f"model_{i}"], objects))
            generic_step, generic_backward, generic_weights = _step_seconds(model, None, args.steps)
            generated_step, generated_backward, generated_weights = _step_seconds(model, library, args.steps)
            same = all(generic_weights[k].tobytes() == generated_weights[k].tobytes() for k in generic_weights)
            print(
                f"{name:64} {len(code.kernels):>7} {generic_flash:>11,} B {generated_flash:>7,} B "
                f"{1000 * generic_step:>9.2f} ms {1000 * generated_step:>6.2f} ms "
                f"{1000 * generic_backward:>8.2f} ms {1000 * generated_backward:>6.2f} ms" + ("" if same else "  WEIGHTS DIFFER"),
                flush=True,
            )


if __name__ == "__main__":
    main()

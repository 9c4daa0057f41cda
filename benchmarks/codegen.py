"""Benchmark: generated kernels (tinytrain-tflm codegen) against the generic ones.

Not a test: prints, per training model,
  flash  code (.text) and constants (.rodata) of the kernels a firmware links for the model's
         specialized ops, compiled for a Cortex-M7 with arm-none-eabi-g++ -Os: the generic core
         functions of those op kinds (with the ones they call) against every generated kernel.
         The generated constants are mostly per-channel scales, which the generic kernels read
         from the model instead. Core level only: the TFLM glue needs TFLM's headers; it is in
         both builds, the generated one adding its registrations' selection code.
  step   wall time of one training step on x86 (Trainer.step in the TFLM reference runtime, the
         forward builtins and the Python call included), fastest of N steps (the first excluded),
         generic plugin against the generated one, run alternately on the same samples. Both end
         with identical weights (checked).
  bwd    the backward and update part of it: the fastest step minus the fastest predict (forward
         only) on the same samples.

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
from tinytrain_tflm.firmware import codegen  # noqa: E402
from tinytrain_tflm.passes.scheme import conv_like_layers  # noqa: E402


def configs(quick: bool) -> dict[str, tt.TrainingModel]:
    models = {
        "DS-CNN, all layers, float32 gradients": tt.compile(
            int8_model("ds_cnn"), update="all", optimizer=tt.SGD(lr=0.05), gradient="float32"
        ),
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


def _flash_bytes(objects: list[Path]) -> tuple[int, int]:
    """(code, constants): the objects' .text* and .rodata* sections."""
    output = subprocess.run(["arm-none-eabi-size", "-A", *map(str, objects)], check=True, capture_output=True, text=True).stdout
    sections = [line.split() for line in output.splitlines() if line.startswith(".")]
    return (
        sum(int(size) for name, size, _ in sections if name.startswith(".text")),
        sum(int(size) for name, size, _ in sections if name.startswith(".rodata")),
    )


def _timings(model: tt.TrainingModel, library: Path, steps: int) -> tuple[dict[str, float], bool]:
    """Fastest seconds of a step and of a predict (forward only) for the generic and the generated
    kernels, run alternately on the same samples so machine load hits both alike; and whether both
    ended with identical weights."""
    trainers = {"generic": tt.Trainer(model), "generated": tt.Trainer(model, kernel_library=library)}
    rng = np.random.default_rng(0)
    classes = trainers["generic"].metadata["num_classes"]
    seconds: dict[str, float] = {}
    for i in range(steps):
        x = rng.uniform(-1, 1, trainers["generic"].input.shape).astype(np.float32)
        for kind, trainer in trainers.items():
            for what in ("predict", "step"):
                start = time.perf_counter()
                if what == "step":
                    trainer.step(x, i % classes)
                else:
                    trainer.predict(x)
                elapsed = time.perf_counter() - start
                if i > 0:  # the first invoke copies the weights
                    seconds[f"{kind} {what}"] = min(seconds.get(f"{kind} {what}", elapsed), elapsed)
    weights = [trainer.weights() for trainer in trainers.values()]
    same = all(weights[0][k].tobytes() == weights[1][k].tobytes() for k in weights[0])
    return seconds, same


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
            f"{'model':64} {'kernels':>7} {'generic code+consts':>19} {'generated code+consts':>21} "
            f"{'step generic':>12} {'generated':>9} {'bwd generic':>11} {'generated':>9}"
        )
        for i, ((name, model), library) in enumerate(zip(models.items(), libraries, strict=True)):
            code = codes[name]
            objects = root / f"objects_{i}"
            objects.mkdir()
            generic_code, generic_constants = _flash_bytes(compile_for_cortex_m7(_generic_sources(code), [KERNELS], objects))
            generated = [root / f"model_{i}" / k.file for k in code.kernels]
            generated_code, constants = _flash_bytes(compile_for_cortex_m7(generated, [KERNELS, root / f"model_{i}"], objects))
            t, same = _timings(model, library, args.steps)
            generic_step, generated_step = t["generic step"], t["generated step"]
            generic_backward, generated_backward = generic_step - t["generic predict"], generated_step - t["generated predict"]
            print(
                f"{name:64} {len(code.kernels):>7} {generic_code:>10,} + {generic_constants:>6,} B "
                f"{generated_code:>10,} + {constants:>8,} B "
                f"{1000 * generic_step:>9.2f} ms {1000 * generated_step:>6.2f} ms "
                f"{1000 * generic_backward:>8.2f} ms {1000 * generated_backward:>6.2f} ms" + ("" if same else "  WEIGHTS DIFFER"),
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Command line: tinytrain-tflm <command> ...; every failure is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import emit, loss, read, runtime
from .errors import TinyTrainError


def _read_model(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TinyTrainError(f"cannot read {path}: {error.strerror}") from None


def _write_output(path: str, data: bytes, inputs: list[str]) -> None:
    target = Path(path).resolve()
    if any(target == Path(p).resolve() for p in inputs):
        raise TinyTrainError(f"refusing to overwrite the input file {path}; choose another -o")
    try:
        target.write_bytes(data)
    except OSError as error:
        raise TinyTrainError(f"cannot write {path}: {error.strerror}") from None


def _doctor(_: argparse.Namespace) -> None:
    import tflite_micro

    runtime.load_plugin()
    print(f"tflite-micro {tflite_micro.__version__} (pinned {runtime.PINNED_TFLM_VERSION}): ok")
    print(f"kernel library {runtime.PLUGIN_PATH}: loaded, schema version matches")


def _arena(args: argparse.Namespace) -> None:
    model = _read_model(args.model)
    progress = (lambda message: print(f"\r{message:<60}", end="", file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    size = runtime.minimum_arena_size(model, progress=progress)
    if progress:
        print(file=sys.stderr)
    interpreter = runtime.Interpreter(model, size)
    interpreter.run(runtime.zero_inputs(model))
    report = interpreter.arena_report()
    print(f"minimum arena: {size} bytes (measured in TFLM by bisection; x86-64 bookkeeping)")
    print(f"  head (planned tensors, scratch): {report.head} bytes")
    print(f"  tail (persistent):               {report.tail} bytes")
    for name, used in report.categories.items():
        print(f"    {name}: {used} bytes")


def _attach_loss(args: argparse.Namespace) -> None:
    graph = read.read_graph(_read_model(args.model))
    training = loss.attach_loss(graph, label_smoothing=args.label_smoothing, gradient=args.gradient)
    _write_output(args.output, emit.emit_model(training), [args.model])
    print(f"wrote {args.output}: loss and {args.gradient} logit gradient attached")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinytrain-tflm", description="On-device training for TensorFlow Lite Micro.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="check the TFLM runtime and the kernel library").set_defaults(run=_doctor)
    arena = commands.add_parser("arena", help="measure a model's minimum TFLM arena by bisection")
    arena.add_argument("model", help=".tflite file")
    arena.set_defaults(run=_arena)
    attach = commands.add_parser("attach-loss", help="add the softmax cross-entropy loss and its logit gradient")
    attach.add_argument("model", help="int8 .tflite classifier")
    attach.add_argument("-o", "--output", required=True, help="output .tflite (never the input)")
    attach.add_argument("--label-smoothing", type=float, default=0.0)
    attach.add_argument("--gradient", choices=sorted(loss.GRADIENT_DTYPES), default="float32")
    attach.set_defaults(run=_attach_loss)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except TinyTrainError as error:
        print(f"tinytrain-tflm: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

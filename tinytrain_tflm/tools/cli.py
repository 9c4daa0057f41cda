"""Command line: tinytrain-tflm <command> ...; every failure is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import target as targets
from ..backend import emit
from ..compiler import compile
from ..errors import TinyTrainError
from ..firmware import c_array, codegen
from ..frontend import read
from ..options import CompileOptions, MemoryOptions
from ..passes import loss
from ..passes.optimizer import ROUNDINGS, SGD
from ..plan import memory
from ..runtime import interpreter
from ..runtime.trainer import Trainer, training_metadata


def _read_model(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TinyTrainError(f"cannot read {path}: {error.strerror}") from None


def _same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (same device and inode: hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def _refuse_inputs(path: str, inputs: list[str]) -> None:
    if any(_same_file(path, p) for p in inputs):
        raise TinyTrainError(f"refusing to overwrite the input file {path}; choose another -o")


def _new_file_mode(path: Path) -> int:
    """The mode the output gets: the old file's, else what open() would give a new one (0666 minus umask)."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomically(path: str, write: Callable[[Path], None]) -> None:
    """Runs write(temporary path) beside `path`, then renames it over `path`: a failed or interrupted
    run leaves the old file whole. The temporary name keeps the suffix (matplotlib reads the format from it)."""
    target, temporary = Path(path), None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
        os.close(handle)
        write(Path(temporary))
        os.chmod(temporary, _new_file_mode(target))
        os.replace(temporary, target)
    except OSError as error:
        raise TinyTrainError(f"cannot write {path}: {error.strerror}") from None
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)


def _refuse_model(path: str) -> None:
    """A plot or report never replaces a TFLite model, an input of this run or not."""
    try:
        with open(path, "rb") as existing:
            is_model = existing.read(8)[4:8] == b"TFL3"
    except OSError:  # nothing there (or unreadable: the write reports it)
        return
    if is_model:
        raise TinyTrainError(f"refusing to overwrite {path}, a TFLite model, with a plot; choose another path")


def _write_output(path: str, data: bytes, inputs: list[str]) -> None:
    _refuse_inputs(path, inputs)
    _write_atomically(path, lambda temporary: temporary.write_bytes(data))


def _doctor(_: argparse.Namespace) -> None:
    import tflite_micro

    interpreter.load_plugin()
    print(f"tflite-micro {tflite_micro.__version__} (pinned {interpreter.PINNED_TFLM_VERSION}): ok")
    print(f"kernel library {interpreter.PLUGIN_PATH}: loaded, schema version matches")


def _measure_arena(model: bytes) -> int:
    """The exact minimum arena by bisection, with a progress line on a terminal."""
    progress = (lambda message: print(f"\r{message:<60}", end="", file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    size = interpreter.minimum_arena_size(model, progress=progress)
    if progress:
        print(file=sys.stderr)
    return size


def _arena(args: argparse.Namespace) -> None:
    model = _read_model(args.model)
    size = _measure_arena(model)
    probe = interpreter.Interpreter(model, size)
    probe.run(interpreter.zero_inputs(model))
    report = probe.arena_report()
    print(f"minimum arena: {size} bytes (measured in TFLM by bisection; x86-64 bookkeeping)")
    print(f"  head (planned tensors, scratch): {report.head} bytes")
    print(f"  tail (persistent):               {report.tail} bytes")
    for name, used in report.categories.items():
        print(f"    {name}: {used} bytes")


def _attach_loss(args: argparse.Namespace) -> None:
    _refuse_inputs(args.output, [args.model])
    graph = read.read_graph(_read_model(args.model))
    training = loss.attach_loss(graph, label_smoothing=args.label_smoothing, gradient=args.gradient)
    _write_output(args.output, emit.emit_model(training), [args.model])
    print(f"wrote {args.output}: loss and {args.gradient} logit gradient attached")


def _compile(args: argparse.Namespace) -> None:
    _refuse_inputs(args.output, [args.model])
    optimizer = SGD(lr=args.lr, momentum=args.momentum, qas=not args.no_qas, rounding=args.rounding, seed=args.seed)
    training = compile(
        _read_model(args.model),
        update=args.update,
        optimizer=optimizer,
        gradient=args.gradient,
        label_smoothing=args.label_smoothing,
        activation_masks=not args.no_masks,
        tiles=_tiles(args.tile),
        overlap_buffers=not args.no_overlap,
        flash_requantization=args.flash_requantization,
        target=targets.target(args.target or "host", args.kernels),
    )
    _write_output(args.output, training.bytes, [args.model])
    trainer = Trainer(training)
    trained = sum(int(np.prod(trainer.graph.tensors[p.grad].shape)) for p in trainer.parameters)
    tensors = len(trainer.parameters)
    print(f"wrote {args.output}: {len(training.bytes):,} bytes, {tensors} trainable tensors, {trained:,} trained values")


# Largest tile grid side: a first stage cut finer than 64 patches a side would be mostly halo.
MAX_TILES = 64
# Bounds of the counting options: far above a useful run, below what never ends.
COUNT_LIMITS = {"epochs": 10**6, "steps": 10**7, "generations": 10**5}


def _check_options(args: argparse.Namespace) -> None:
    """Bounds every numeric option before any work (SGD bounds lr, momentum and its seed further)."""
    for name, high in COUNT_LIMITS.items():
        value = getattr(args, name, None)
        if value is not None and not 1 <= value <= high:
            raise TinyTrainError(f"--{name} must be in [1, {high:,}], got {value}")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < 2**31:
        raise TinyTrainError(f"--seed must be in [0, 2^31), got {seed}")
    for name in ("lr", "momentum", "label_smoothing"):
        value = getattr(args, name, None)
        if value is not None and not math.isfinite(value):
            raise TinyTrainError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


def _tiles(text: str | None) -> tuple[int, int] | str | None:
    if text is None or text == "auto":
        return text
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise TinyTrainError(f'--tile takes "auto" or ROWSxCOLS like 3x2, got {text!r}') from None
    if not (1 <= rows <= MAX_TILES and 1 <= cols <= MAX_TILES):
        raise TinyTrainError(f"--tile takes 1 to {MAX_TILES} rows and columns, got {text!r}")
    return rows, cols


def _load_data(path: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as data:
            x, y = data["x"], data["y"]
    except (OSError, ValueError) as error:
        raise TinyTrainError(f"cannot read {path}: {error}") from None
    except KeyError:
        raise TinyTrainError(f"{path} must hold arrays 'x' (samples) and 'y' (integer labels)") from None
    if len(x) != len(y) or len(x) == 0:
        raise TinyTrainError(f"{path}: 'x' has {len(x)} samples and 'y' {len(y)} labels; they must match and be non-empty")
    if y.dtype.kind not in "iu":
        raise TinyTrainError(f"{path}: labels 'y' must be integers, got {y.dtype.name}")
    if y.min() < 0 or y.max() >= classes:
        raise TinyTrainError(f"{path}: labels must be in [0, {classes}), found {y.min()}..{y.max()}")
    return x, y


def _progress(done: int, total: int, text: str) -> None:
    if not sys.stderr.isatty() and done not in (total, total // 2):
        return
    width = 30
    bar = "#" * (width * done // total) + "-" * (width - width * done // total)
    end = "\n" if done == total or not sys.stderr.isatty() else ""
    print(f"\r[{bar}] {done}/{total} {text}", end=end, file=sys.stderr, flush=True)


def _train(args: argparse.Namespace) -> None:
    trainer = Trainer(_read_model(args.model))
    x, y = _load_data(args.data, trainer.metadata["num_classes"])
    output = args.output or str(Path(args.model).with_suffix(".trained.tflite"))
    _refuse_inputs(output, [args.model, args.data])
    print(f"accuracy before: {trainer.accuracy(x, y):.1%} on {len(x)} samples")
    order = np.random.default_rng(args.seed)
    for epoch in range(1, args.epochs + 1):
        losses = []
        for count, i in enumerate(order.permutation(len(x)), 1):
            losses.append(trainer.step(x[i], int(y[i])))
            _progress(count, len(x), f"epoch {epoch}/{args.epochs} loss {np.mean(losses):.4f}")
        print(f"epoch {epoch}: mean loss {np.mean(losses):.4f}, accuracy {trainer.accuracy(x, y):.1%}")
    _write_output(output, trainer.training_model().bytes, [args.model, args.data])
    print(f"wrote {output} (the training model, starting from the trained weights)")


def _device_target(args: argparse.Namespace, graph) -> targets.Target:
    """--target / --kernels, else the target the model was compiled for."""
    if args.target is None:
        return targets.of_model(graph).with_kernels(args.kernels)
    return targets.target(args.target, args.kernels)


def _plan(args: argparse.Namespace) -> None:
    if args.plot:
        _refuse_inputs(args.plot, [args.model])
        _refuse_model(args.plot)
    model = _read_model(args.model)
    graph = read.read_graph(model)
    device_target = _device_target(args, graph)
    measured = _measure_arena(model)
    planned = memory.estimate(graph)
    on_device, how = c_array.device_minimum(model, device_target)
    report = {
        "arena_bytes": measured,
        "arena_bytes_32bit": memory.project_32bit(measured, graph) if on_device is None else on_device,
        "arena_bytes_32bit_method": "measured" if on_device is not None else "projected",
        "target": device_target.name,
        "kernels": device_target.kernels,
        "estimate_bytes": planned.total,
        "estimate_error": (planned.total - measured) / measured,
        "flash_bytes": len(model),
        "head_bytes": planned.head,
        "planned_at_peak": planned.planned,
        "persistent": planned.persistent,
    }
    if args.plot:
        _write_atomically(args.plot, lambda temporary: memory.plot(graph, str(temporary), title=Path(args.model).name))
    if args.json:
        print(json.dumps(report))
        return
    error = 100 * report["estimate_error"]
    print(f"minimum arena: {measured:,} bytes measured in TFLM (x86-64)")
    if on_device is not None:
        print(f"32-bit: {on_device:,} bytes {how}")
    else:
        print(f"32-bit: {report['arena_bytes_32bit']:,} bytes projected, not measured ({how})")
    print(f"planner estimate: {planned.total:,} bytes ({error:+.1f}%); flash (model): {len(model):,} bytes")
    print(f"  planned, reused over time: {planned.head:,} bytes; live at the peak:")
    for name, size in planned.planned.items():
        print(f"    {name:24} {size:>10,}")
    if planned.planning > planned.head:
        print(f"  TFLM's planning pass needs {planned.planning:,} bytes above the persistent section, more than the head")
    print(f"  persistent: {planned.tail:,} bytes")
    for name, size in planned.persistent.items():
        print(f"    {name:24} {size:>10,}")
    if args.plot:
        print(f"plot: {args.plot}")


def parse_budget(text: str) -> int:
    units = {"kb": 1024, "mb": 1024 * 1024, "b": 1}
    lowered = text.strip().lower()
    unit = next((u for u in ("kb", "mb", "b") if lowered.endswith(u)), "b")
    try:
        value = float(lowered.removesuffix(unit)) * units[unit]
    except ValueError:
        raise TinyTrainError(f"--budget takes bytes like 262144, 256KB or 0.25MB (KB = 1024 bytes), got {text!r}") from None
    if not 0 < value <= interpreter.MAX_ARENA_BYTES:
        raise TinyTrainError(f"--budget must be between 1 byte and {interpreter.MAX_ARENA_BYTES:,} bytes, got {text!r}")
    return int(value)


def _search(args: argparse.Namespace) -> None:
    from .search import SchemeSearch, SearchTask

    _refuse_inputs(args.output, [args.model, args.data])
    model = _read_model(args.model)
    graph = read.read_graph(model)
    x, y = _load_data(args.data, graph.tensors[graph.outputs[0]].shape[-1])
    order = np.random.default_rng(args.seed).permutation(len(x))
    split = max(1, len(x) // 5)
    val, train = order[:split], order[split:]
    task = SearchTask(x[train], y[train], x[val], y[val])
    memory_options = MemoryOptions(_tiles(args.tile), flash_requantization=args.flash_requantization)
    search = SchemeSearch(
        model,
        task,
        parse_budget(args.budget),
        CompileOptions(optimizer=SGD(lr=args.lr), gradient=args.gradient, memory=memory_options),
        steps=args.steps,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    result = search.run(generations=args.generations, seed=args.seed)
    _write_output(args.output, (result.to_json() + "\n").encode(), [args.model, args.data])
    print(f"wrote {args.output}: {result.scheme} ({result.arena_bytes:,} bytes measured, summed gain {result.gain:+.3f})")


def _export(args: argparse.Namespace) -> None:
    if not args.output and not args.c_array:
        raise TinyTrainError("export needs -o TUNED.tflite (inference model), --c-array OUT.cc (training model), or both")
    if args.output:
        _refuse_inputs(args.output, [args.model])
    model = _read_model(args.model)
    if args.c_array:
        source = Path(args.c_array)
        header = c_array.header_path(source)
        if args.output and Path(args.output).resolve() in (source.resolve(), header.resolve()):
            raise TinyTrainError(f"-o {args.output} and --c-array {args.c_array} would write the same file")
        for path in (source, header):
            _refuse_inputs(str(path), [args.model])
        name = c_array.c_identifier(args.c_name or source.stem)
        origin = f"export {Path(args.model).name} --c-array {source.name}"
        graph = read.read_graph(model)
        training_metadata(graph)  # a model that is not a training model fails here, before the measuring
        arena = c_array.arena_size(model, args.arena, _device_target(args, graph))
        text, header_text = c_array.c_array_files(model, source, name, arena, origin)
        if arena.method == "measured" and not arena.method_32bit.startswith("measured"):
            print(f"note: kArenaBytes32 is {arena.method_32bit}", file=sys.stderr)
        _write_output(str(header), header_text.encode(), [args.model])
        _write_output(str(source), text.encode(), [args.model])
        print(f"wrote {source} and {header.name}: the training model ({len(model):,} bytes) as {name}::kData")
    if args.output:
        exported = Trainer(model).export()
        _write_output(args.output, exported, [args.model])
        print(f"wrote {args.output}: {len(exported):,} bytes, an inference model for stock TFLM")


def _arduino_library(args: argparse.Namespace) -> None:
    from ..firmware import arduino

    model = _read_model(args.model)
    origin = f"arduino-library {Path(args.model).name}"
    files = arduino.assemble(model, Path(args.output), c_array.arena_size(model, args.arena), origin)
    print(f"wrote {args.output}: the TinyTrain Arduino library, {len(files)} files (sketch: examples/{arduino.SKETCH})")


def _codegen(args: argparse.Namespace) -> None:
    code = codegen.write(_read_model(args.model), args.output)
    for name in code.files:
        print(f"wrote {Path(args.output) / name}")
    print(
        f"{len(code.kernels)} generated kernels for {len({k.op for k in code.kernels})} op kinds; "
        f"resolver size {code.resolver_size} ({len(code.builtins)} builtin + {len(code.custom_ops)} tinytrain ops)"
    )


def _add_target_arguments(parser: argparse.ArgumentParser, target_help: str) -> None:
    parser.add_argument("--target", choices=sorted(targets.TARGETS), help=target_help)
    kernels_help = "the kernels TFLM runs builtin ops with on the target (default: cmsis-nn on Cortex-M, reference on host)"
    parser.add_argument("--kernels", choices=sorted(targets.KERNEL_SETS), help=kernels_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinytrain-tflm", description="On-device training for TensorFlow Lite Micro.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="check the TFLM runtime and the kernel library").set_defaults(run=_doctor)
    compile_ = commands.add_parser("compile", help="compile an int8 .tflite into a training model")
    compile_.add_argument("model", help="int8 .tflite classifier (full-integer quantized)")
    compile_.add_argument("-o", "--output", required=True, help="training model to write (never the input)")
    scheme_help = '"all", "last" or JSON like \'{"bias_last": 4, "weights": {"7": 0.5}}\''
    compile_.add_argument("--update", default="last", help=scheme_help)
    compile_.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    compile_.add_argument("--momentum", type=float, default=0.0)
    compile_.add_argument("--no-qas", action="store_true", help="naive int8 SGD instead of quantization-aware scaling")
    compile_.add_argument("--rounding", choices=sorted(ROUNDINGS), default="stochastic")
    compile_.add_argument("--seed", type=int, default=1, help="stochastic rounding seed")
    compile_.add_argument("--gradient", choices=sorted(loss.GRADIENT_DTYPES), default="float32", help="gradient representation")
    compile_.add_argument("--label-smoothing", type=float, default=0.0)
    compile_.add_argument("--no-masks", action="store_true", help="keep int8 activations instead of 1-bit ReLU masks")
    compile_.add_argument("--tile", help='run the frozen first stage in patches: "auto" or ROWSxCOLS, e.g. 3x2')
    compile_.add_argument(
        "--no-overlap",
        action="store_true",
        help="let TFLM plan the arena: no output written over its input (for kernels that do not produce rows in order)",
    )
    compile_.add_argument(
        "--flash-requantization",
        action="store_true",
        help="forward convs read their per-channel requantization from the model (flash), not the arena; slower on a device",
    )
    _add_target_arguments(
        compile_, "the device the model is for: its kernels decide which ops may overlap buffers (default host)"
    )
    compile_.set_defaults(run=_compile)
    train = commands.add_parser("train", help="train a training model on the TFLM runtime")
    train.add_argument("model", help="training model from `compile`")
    train.add_argument("--data", required=True, help=".npz with 'x' (samples) and 'y' (labels)")
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--seed", type=int, default=0, help="shuffling seed")
    train.add_argument("-o", "--output", help="trained training model (default: MODEL.trained.tflite)")
    train.set_defaults(run=_train)
    plan = commands.add_parser("plan", help="memory plan: measured minimum arena, estimate by category, 32-bit projection")
    plan.add_argument("model", help=".tflite (training or inference)")
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.add_argument("--plot", help="write a PNG of live memory over the op schedule")
    _add_target_arguments(plan, "measure the 32-bit arena on this target's emulated board (default: the model's target)")
    plan.set_defaults(run=_plan)
    search = commands.add_parser("search", help="search the sparse-update scheme that trains best within a memory budget")
    search.add_argument("model", help="int8 .tflite classifier")
    search.add_argument("--budget", required=True, help="arena budget, e.g. 256KB (KB = 1024 bytes)")
    search.add_argument("--data", required=True, help=".npz with 'x' and 'y' of the transfer task (a fifth is held out)")
    search.add_argument("-o", "--output", default="scheme.json", help="scheme JSON to write (default scheme.json)")
    search.add_argument("--steps", type=int, default=300, help="on-device steps per contribution measurement")
    search.add_argument("--generations", type=int, default=12)
    search.add_argument("--lr", type=float, default=0.005)
    search.add_argument("--gradient", choices=sorted(loss.GRADIENT_DTYPES), default="int8")
    search.add_argument("--tile", help='tile the first stage of every candidate: "auto" or ROWSxCOLS')
    search.add_argument("--flash-requantization", action="store_true", help="compile every candidate with --flash-requantization")
    search.add_argument("--seed", type=int, default=0)
    search.set_defaults(run=_search)
    export = commands.add_parser(
        "export", help="write the inference model with the training model's weights, or the training model as a C array"
    )
    export.add_argument("model", help="training model")
    export.add_argument("-o", "--output", help="inference .tflite to write (never the input)")
    export.add_argument("--c-array", help="write the training model as OUT.cc plus OUT.h (arena size, tensor positions)")
    export.add_argument("--c-name", help="C++ namespace of the array and constants (default: OUT's file name)")
    arena_help = "arena size in the header: measured in TFLM by bisection (default) or the planner's estimate"
    export.add_argument("--arena", choices=("measured", "estimated"), default="measured", help=arena_help)
    _add_target_arguments(export, "measure kArenaBytes32 on this target's emulated board (default: the model's target)")
    export.set_defaults(run=_export)
    generate = commands.add_parser(
        "codegen", help="generate the kernels and op resolver setup a firmware needs for a training model"
    )
    generate.add_argument("model", help="training model from `compile`")
    generate.add_argument("-o", "--output", required=True, help="directory to write (new, empty, or a previous codegen output)")
    generate.set_defaults(run=_codegen)
    library = commands.add_parser("arduino-library", help="assemble the Arduino library with the training model's sketch")
    library.add_argument("model", help="training model the TrainOnDevice sketch trains")
    library.add_argument("-o", "--output", required=True, help="new directory to create (e.g. ~/Arduino/libraries/TinyTrain)")
    library.add_argument("--arena", choices=("measured", "estimated"), default="measured", help=arena_help)
    library.set_defaults(run=_arduino_library)
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
        _check_options(args)
        args.run(args)
    except TinyTrainError as error:
        print(f"tinytrain-tflm: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: tinytrain-tflm <command> ...; every failure is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib.metadata
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
from ..compiler import TrainingModel, compile
from ..errors import TinyTrainError
from ..firmware import c_array, codegen
from ..frontend import read
from ..options import CompileOptions, MemoryOptions
from ..passes import loss
from ..passes.optimizer import ROUNDINGS, SGD
from ..plan import memory
from ..runtime import checkpoint, interpreter
from ..runtime.guard import GUARD_MODES, DivergenceGuard, GuardOptions
from ..runtime.trainer import Trainer, scheduled_learning_rate, training_metadata
from .layers import layers_text
from .search import SchemeFile, SchemeSearch, SearchTask, arena_method, load_scheme_file


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


def _check_output(path: str, inputs: list[str]) -> None:
    """The checks on an output path that can run before any work: not an input, in a directory that exists."""
    _refuse_inputs(path, inputs)
    directory = Path(path).parent
    if not directory.is_dir():
        raise TinyTrainError(f"cannot write {path}: directory {directory} does not exist")
    if Path(path).is_dir():
        raise TinyTrainError(f"cannot write {path}: it is a directory")


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _check_plot(path: str, inputs: list[str]) -> None:
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise TinyTrainError(f"--plot writes an image: give a path ending in {', '.join(PLOT_SUFFIXES)}, got {path}")
    _check_output(path, inputs)


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


DEFAULTS = CompileOptions()  # compile's memory options default to the Python API's: the smallest arena
TILE_HELP = 'run the frozen first stage in patches: "auto" (default), "none" or ROWSxCOLS, e.g. 3x2'
FLASH_HELP = "forward convs read their per-channel requantization from the model (flash), not the arena (default on)"
LOSS_HELP = "classifier, one-logit sigmoid head, or regression / autoencoder (int8 target of the output's shape)"


def _attach_loss(args: argparse.Namespace) -> None:
    _check_output(args.output, [args.model])
    graph = read.read_graph(_read_model(args.model))
    training = loss.attach_loss(graph, label_smoothing=args.label_smoothing, gradient=args.gradient, loss=args.loss)
    _write_output(args.output, emit.emit_model(training), [args.model])
    print(f"wrote {args.output}: {args.loss} loss and {args.gradient} gradient attached")


def _scheme_file(update: str) -> tuple[SchemeFile | None, str | None]:
    """--update @FILE, or a path to an existing .json file: the scheme file and its path."""
    if update.startswith("@"):
        path = update[1:]
    elif update.endswith(".json") and Path(update).is_file():
        path = update
    else:
        return None, None
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise TinyTrainError(f"cannot read the scheme file {path}: {getattr(error, 'strerror', None) or error}") from None
    return load_scheme_file(text, path), path


def _searched_option(args: argparse.Namespace, name: str, flag: str, searched, default):
    """The option the user gave, else the one the scheme was searched with, else the default; a note when the
    user overrides the search's (the budget it met may not hold then)."""
    given = getattr(args, name)
    if given is None:
        return default if searched is None else searched
    if searched is not None and given != searched:
        print(f"note: the scheme was searched with {flag} {searched}; compiling with {given}", file=sys.stderr)
    return given


def _compile(args: argparse.Namespace) -> None:
    scheme_file, scheme_path = _scheme_file(args.update)
    _check_output(args.output, [args.model] + ([scheme_path] if scheme_path else []))
    ram = parse_size(args.ram, "--ram") if args.ram else None
    searched = scheme_file.compile_options if scheme_file else {}
    tiles = searched.get("tiles")
    gradient = _searched_option(args, "gradient", "--gradient", searched.get("gradient"), DEFAULTS.gradient)
    flash = _searched_option(
        args,
        "flash_requantization",
        "--flash-requantization",
        searched.get("flash_requantization"),
        DEFAULTS.memory.flash_requantization,
    )
    tile = _searched_option(args, "tile", "--tile", _tile_text(tiles), _tile_text(DEFAULTS.memory.tiles))
    target_name = _searched_option(args, "target", "--target", scheme_file and scheme_file.target, "host")
    same_target = scheme_file is not None and target_name == scheme_file.target
    kernels = _searched_option(args, "kernels", "--kernels", scheme_file.kernels if same_target else None, None)
    if ram is None and scheme_file and scheme_file.budget:
        ram = scheme_file.budget
    optimizer = SGD(
        lr=args.lr,
        momentum=args.momentum,
        qas=not args.no_qas,
        rounding=args.rounding,
        seed=args.seed,
        accumulate=args.accumulate,
    )
    device_target = targets.target(target_name, kernels)
    model = _read_model(args.model)

    def build(gradient: str, flash: bool, tile: str | None) -> TrainingModel:
        return compile(
            model,
            update=scheme_file.scheme if scheme_file else args.update,
            optimizer=optimizer,
            gradient=gradient,
            label_smoothing=args.label_smoothing,
            activation_masks=not args.no_masks,
            tiles=_tiles(tile),
            overlap_buffers=not args.no_overlap,
            flash_requantization=flash,
            stream_input=args.stream_input,
            target=device_target,
            loss=args.loss,
        )

    memory_options_given = (
        scheme_file is not None
        or args.stream_input
        or any(getattr(args, name) is not None for name in ("gradient", "flash_requantization", "tile"))
    )
    if ram is not None and not memory_options_given:
        training = _fit_ram(build, device_target, ram)
    else:
        training = build(gradient, flash, tile)
    _write_output(args.output, training.bytes, [args.model])
    trainer = Trainer(training)
    trained = sum(int(np.prod(p.trained_shape)) for p in trainer.parameters)
    tensors = len(trainer.parameters)
    print(f"wrote {args.output}: {len(training.bytes):,} bytes, {tensors} trainable tensors, {trained:,} trained values")
    if ram is not None and memory_options_given:
        _check_ram(training.bytes, device_target, ram)


# compile --ram without memory options tries these in order, from the reference to the smallest arena: int8
# gradients (a quarter of the gradient memory, coarser steps), flash requantization (8 bytes per output channel
# less, but tinytrain's conv kernels instead of the target's optimized ones), tiling (recomputes the patches'
# overlap in the first stage). Overlapping buffers stay on unless --no-overlap says otherwise.
MEMORY_LADDER = (("float32", False, None), ("int8", False, None), ("int8", True, None), ("int8", True, "auto"))


def _memory_flags(gradient: str, flash: bool, tile: str | None) -> str:
    return f"--gradient {gradient} --{'' if flash else 'no-'}flash-requantization --tile {tile or 'none'}"


def _fit_ram(build, device_target: targets.Target, ram: int) -> TrainingModel:
    """The first training model of MEMORY_LADDER whose arena fits `ram`, or an error naming the smallest."""
    smallest = None
    for options in MEMORY_LADDER:
        training = build(*options)
        arena, how = _target_arena(training.bytes, device_target)
        if arena <= ram:
            print(f"chose {_memory_flags(*options)}: the arena needs {arena:,} bytes ({how}), within the {ram:,}-byte budget")
            return training
        if smallest is None or arena < smallest[0]:
            smallest = (arena, _memory_flags(*options), how)
    arena, flags, how = smallest
    raise TinyTrainError(
        f"nothing fits the {ram:,}-byte budget: the smallest arena is {arena:,} bytes ({flags}; {how}); "
        "train fewer layers (`tinytrain-tflm search --budget` finds which)"
    )


def _target_arena(model: bytes, device_target: targets.Target) -> tuple[int, str]:
    """The arena a budget is judged on: on a 32-bit target the one measured on its emulated board when the
    tools are there, else the x86-64 measurement projected to 4-byte pointers; on the host, x86-64's."""
    if device_target.pointer_bytes == 8:
        return _measure_arena(model), "measured in TFLM, x86-64"
    on_device, how = c_array.device_minimum(model, device_target)
    if on_device is not None:
        return on_device, how
    return memory.project_32bit(_measure_arena(model), read.read_graph(model)), f"32-bit projection; {how}"


def _check_ram(model: bytes, device_target: targets.Target, ram: int) -> None:
    arena, how = _target_arena(model, device_target)
    if arena > ram:
        over = 100 * (arena - ram) / ram
        print(f"warning: the arena needs {arena:,} bytes ({how}), {over:.0f}% over the {ram:,}-byte budget", file=sys.stderr)
    else:
        print(f"arena: {arena:,} bytes ({how}), within the {ram:,}-byte budget")


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
    guard_loss = getattr(args, "guard_loss", None)
    if guard_loss is not None and not (math.isfinite(guard_loss) and guard_loss > 0):
        raise TinyTrainError(f"--guard-loss must be a finite number > 0, got {guard_loss}")


def _tile_text(tiles: tuple[int, int] | list[int] | str | None) -> str | None:
    """--tile's spelling of a tile grid: ROWSxCOLS, "auto" or "none"; None for no choice (a scheme file without one)."""
    if isinstance(tiles, (list, tuple)):
        return "x".join(map(str, tiles))
    return tiles


def _tiles(text: str | None) -> tuple[int, int] | str | None:
    if text is None or text == "none":
        return None
    if text == "auto":
        return text
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise TinyTrainError(f'--tile takes "auto", "none" or ROWSxCOLS like 3x2, got {text!r}') from None
    if not (1 <= rows <= MAX_TILES and 1 <= cols <= MAX_TILES):
        raise TinyTrainError(f"--tile takes 1 to {MAX_TILES} rows and columns, got {text!r}")
    return rows, cols


def _load_data(path: str, classes: int, sample_shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x and y of an .npz; y may also be a column (N, 1). sample_shape: the model's input without the batch."""
    try:
        data = np.load(path)
    except (OSError, ValueError, EOFError) as error:
        raise TinyTrainError(f"cannot read {path}: {error}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise TinyTrainError(f"{path} holds one array; give an .npz of 'x' (samples) and 'y' (labels): np.savez(path, x=x, y=y)")
    try:
        with data:
            x, y = data["x"], data["y"]
    except (OSError, ValueError) as error:
        raise TinyTrainError(f"cannot read {path}: {error}") from None
    except KeyError:
        raise TinyTrainError(f"{path} must hold arrays 'x' (samples) and 'y' (integer labels)") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise TinyTrainError(f"{path}: 'y' must hold one integer label per sample, shape (N,), got shape {y.shape}")
    if x.ndim == 0 or len(x) != len(y) or len(x) == 0:
        raise TinyTrainError(f"{path}: 'x' has {len(x)} samples and 'y' {len(y)} labels; they must match and be non-empty")
    if y.dtype.kind not in "iu":
        raise TinyTrainError(f"{path}: labels 'y' must be integers, got {y.dtype.name}")
    if y.min() < 0 or y.max() >= classes:
        raise TinyTrainError(f"{path}: labels must be in [0, {classes}), found {y.min()}..{y.max()}")
    if sample_shape is not None and x.shape[1:] != sample_shape:
        raise TinyTrainError(f"{path}: the model takes samples of shape {sample_shape}, 'x' holds {x.shape[1:]}")
    if x.dtype.kind not in "iuf":
        raise TinyTrainError(f"{path}: samples 'x' must be numbers, got {x.dtype.name}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        first = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise TinyTrainError(f"{path}: 'x' holds NaN or infinite values (first in sample {first})")
    return x, y


def _progress(done: int, total: int, text: str) -> None:
    if not sys.stderr.isatty() and done not in (total, total // 2):
        return
    width = 30
    bar = "#" * (width * done // total) + "-" * (width - width * done // total)
    end = "\n" if done == total or not sys.stderr.isatty() else ""
    print(f"\r[{bar}] {done}/{total} {text}", end=end, file=sys.stderr, flush=True)


def _held_out(args: argparse.Namespace, x: np.ndarray, y: np.ndarray, classes: int, sample_shape) -> tuple:
    """(train x, train y, held-out x, held-out y) from --val or --validation-split; no held-out data without them."""
    if args.val:
        return (x, y, *_load_data(args.val, classes, sample_shape))
    if not args.validation_split:
        return x, y, None, None
    count = round(len(x) * args.validation_split)
    if not 1 <= count < len(x):
        split = args.validation_split
        raise TinyTrainError(f"--validation-split {split} of {len(x)} samples leaves no held-out or no training sample")
    order = np.random.default_rng(args.seed).permutation(len(x))
    held, kept = order[:count], order[count:]
    return x[kept], y[kept], x[held], y[held]


def _train(args: argparse.Namespace) -> None:
    output = args.output or str(Path(args.model).with_suffix(".trained.tflite"))
    _check_output(output, [args.model, args.data] + ([args.val] if args.val else []))
    if args.val and args.validation_split:
        raise TinyTrainError("give --val or --validation-split, not both")
    if args.keep == "best" and not (args.val or args.validation_split):
        raise TinyTrainError("--keep best needs held-out samples: --validation-split 0.1 or --val HELD_OUT.npz")
    trainer = Trainer(_read_model(args.model))
    if trainer.compiled_learning_rate is None:
        raise TinyTrainError("the model updates no parameter (compiled with an update scheme that trains nothing)")
    base_rate = args.lr if args.lr is not None else trainer.compiled_learning_rate
    trainer.batch_size = args.batch
    classes, sample_shape = trainer.metadata["num_classes"], trainer.input.shape[1:]
    x, y, val_x, val_y = _held_out(args, *_load_data(args.data, classes, sample_shape), classes, sample_shape)
    if val_x is None:
        print(f"accuracy before: {trainer.accuracy(x, y):.1%} on the {len(x)} training samples (no held-out samples)")
    else:
        accuracy, mean_loss = trainer.evaluate(val_x, val_y)
        print(f"before training: held-out accuracy {accuracy:.1%}, loss {mean_loss:.4f} ({len(val_x)} held-out samples)")
    order = np.random.default_rng(args.seed)
    guard = None
    if args.guard != "off":
        guard = DivergenceGuard(trainer, GuardOptions(loss_bound=args.guard_loss, rollback=args.guard == "rollback"))
    best = None  # (held-out accuracy, -loss, epoch, training model bytes)
    step_epochs = args.step_epochs or max(1, args.epochs // 3)
    for epoch in range(1, args.epochs + 1):
        trainer.learning_rate = scheduled_learning_rate(args.schedule, base_rate, epoch, args.epochs, step_epochs, args.gamma)
        losses = []
        for count, i in enumerate(order.permutation(len(x)), 1):
            losses.append(trainer.step(x[i], int(y[i])) if guard is None else guard.step(x[i], int(y[i])))
            trainer = trainer if guard is None else guard.trainer  # a rollback replaces it
            _progress(count, len(x), f"epoch {epoch}/{args.epochs} loss {np.mean(losses):.4f}")
        line = f"epoch {epoch}: lr {trainer.learning_rate:.4g}, training loss {np.mean(losses):.4f} (mean over the epoch's steps)"
        if val_x is None:
            print(f"{line}, accuracy {trainer.accuracy(x, y):.1%} on the training samples")
            continue
        accuracy, mean_loss = trainer.evaluate(val_x, val_y)
        print(f"{line}; held-out accuracy {accuracy:.1%}, loss {mean_loss:.4f}")
        if args.keep == "best" and (best is None or (accuracy, -mean_loss) > best[:2]):
            best = (accuracy, -mean_loss, epoch, trainer.training_model().bytes)
    if guard is not None and guard.summary() is not None:
        print(guard.summary(), file=sys.stderr)
    if best is not None:
        _write_output(output, best[3], [args.model, args.data])
        print(f"wrote {output}: the training model at epoch {best[2]}, the best held-out accuracy ({best[0]:.1%})")
        return
    _write_output(output, trainer.training_model().bytes, [args.model, args.data])
    print(f"wrote {output} (the training model, starting from the trained weights)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def _layers(args: argparse.Namespace) -> None:
    print(layers_text(read.read_graph(_read_model(args.model)), args.gradient))


def _fleet(args: argparse.Namespace) -> None:
    try:
        from ..fleet import simulation
    except ImportError:
        raise TinyTrainError("fleet learning needs Flower: pip install 'tinytrain-tflm[fleet]'") from None
    model = _read_model(args.model)
    classes = Trainer(model).metadata["num_classes"]
    x, y = _load_data(args.data, classes)
    test_x, test_y = _load_data(args.test, classes)
    if not 1 <= args.clients <= len(x) or args.rounds < 1 or args.local_epochs < 1 or not args.alpha > 0:
        raise TinyTrainError(
            f"need 1 <= --clients <= {len(x)} samples, --rounds and --local-epochs >= 1, --alpha > 0; "
            f"got {args.clients}, {args.rounds}, {args.local_epochs}, {args.alpha}"
        )
    shards = simulation.class_skew_shards(y, args.clients, args.alpha, args.seed)
    print(f"{args.clients} clients, {len(x)} samples split by class skew (alpha {args.alpha}): {[len(s) for s in shards]}")
    print("round  global accuracy  bytes up/down per client  accepted  rejected  clipped")

    def show(r) -> None:
        print(
            f"{r.round:5}  {r.accuracy:15.1%}  {r.bytes_up_per_client:>10,} / {r.bytes_down_per_client:<11,}  "
            f"{r.accepted:8}  {r.rejected:8}  {r.clipped:7}",
            flush=True,
        )

    report = simulation.run_fleet(
        model, [(x[s], y[s]) for s in shards], test_x, test_y, args.rounds, args.local_epochs, args.clip_norm, args.seed, show
    )
    print(f"payload: {report.payload_bytes:,} bytes per update; device arena: {report.arena_bytes:,} bytes (x86-64, measured)")
    if args.output:
        _write_output(args.output, report.model, [args.model, args.data, args.test])
        print(f"wrote {args.output} (the training model with the fleet's global values)")


def _device_target(args: argparse.Namespace, graph) -> targets.Target:
    """--target / --kernels, else the target the model was compiled for."""
    if args.target is None:
        return targets.of_model(graph).with_kernels(args.kernels)
    return targets.target(args.target, args.kernels)


def _plan(args: argparse.Namespace) -> None:
    if args.plot:
        _check_plot(args.plot, [args.model])
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


# Memory sizes as microcontroller datasheets give them: KB = KiB = 1024 bytes, MB = MiB = 1024 KB.
SIZE_UNITS = {"kib": 1024, "mib": 1024 * 1024, "kb": 1024, "mb": 1024 * 1024, "k": 1024, "m": 1024 * 1024, "b": 1}


def parse_size(text: str, option: str = "--budget") -> int:
    """Bytes from "262144", "256KB", "256KiB", "256K" or "0.25MB" (KB = KiB = 1024 bytes)."""
    lowered = text.strip().lower()
    unit = next((u for u in SIZE_UNITS if lowered.endswith(u)), "b")
    try:
        value = float(lowered.removesuffix(unit).strip()) * SIZE_UNITS[unit]
    except ValueError:
        raise TinyTrainError(f"{option} takes bytes like 262144, 256KB, 256KiB or 0.25MB (KB = 1024 B), got {text!r}") from None
    if not np.isfinite(value) or value < 1:
        raise TinyTrainError(f"{option} must be a positive size, got {text!r}")
    return int(value)


def _search(args: argparse.Namespace) -> None:
    _check_output(args.output, [args.model, args.data])
    budget = parse_size(args.budget)
    device_target = targets.target(args.target or "host", args.kernels)
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
        budget,
        CompileOptions(optimizer=SGD(lr=args.lr), gradient=args.gradient, memory=memory_options),
        device_target,
        steps=args.steps,
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    result = search.run(generations=args.generations, seed=args.seed)
    _write_output(args.output, (result.to_json() + "\n").encode(), [args.model, args.data])
    scheme = json.dumps(result.scheme)
    arena = f"{result.arena_bytes:,} bytes ({arena_method(device_target)})"
    print(f"wrote {args.output}: {scheme}, {arena}, summed gain {result.gain:+.3f}")
    if device_target.emulated:  # the search judged the projection; the board's figure is the one that counts
        compiled = search.compile_scheme(result.scheme)
        _check_ram(compiled.bytes, device_target, budget)
    print(f"compile it with: tinytrain-tflm compile {args.model} --update @{args.output} -o TRAINING.tflite")


def _export(args: argparse.Namespace) -> None:
    if not args.output and not args.c_array:
        raise TinyTrainError("export needs -o TUNED.tflite (inference model), --c-array OUT.cc (training model), or both")
    inputs = [args.model, *([args.checkpoint] if args.checkpoint else [])]
    for output in (args.output, args.c_array):
        if output:
            _check_output(output, inputs)
    model = _read_model(args.model)
    if args.checkpoint:
        model = checkpoint.apply(model, _read_model(args.checkpoint)).bytes
    if args.c_array:
        source = Path(args.c_array)
        header = c_array.header_path(source)
        if args.output and Path(args.output).resolve() in (source.resolve(), header.resolve()):
            raise TinyTrainError(f"-o {args.output} and --c-array {args.c_array} would write the same file")
        for path in (source, header):
            _refuse_inputs(str(path), inputs)
        name = c_array.c_identifier(args.c_name or source.stem)
        origin = f"export {Path(args.model).name} --c-array {source.name}"
        graph = read.read_graph(model)
        training_metadata(graph)  # a model that is not a training model fails here, before the measuring
        arena = c_array.arena_size(model, args.arena, _device_target(args, graph), arduino=args.arduino_tflm)
        text, header_text = c_array.c_array_files(model, source, name, arena, origin)
        if arena.method == "measured" and not arena.method_32bit.startswith("measured"):
            print(f"note: kArenaBytes32 is {arena.method_32bit}", file=sys.stderr)
        _note_arduino_estimate(arena, args.arduino_tflm)
        _write_output(str(header), header_text.encode(), inputs)
        _write_output(str(source), text.encode(), inputs)
        print(f"wrote {source} and {header.name}: the training model ({len(model):,} bytes) as {name}::kData")
    if args.output:
        exported = Trainer(model).export()
        _write_output(args.output, exported, inputs)
        print(f"wrote {args.output}: {len(exported):,} bytes, an inference model for stock TFLM")


def _note_arduino_estimate(arena: c_array.ArenaSize, asked: bool) -> None:
    """Says on stderr when a measurement of the Arduino library's need was asked for and could not run."""
    if asked and arena.method == "measured" and arena.method_arduino.startswith("estimated"):
        print(f"note: kArduinoArenaBytes is {arena.method_arduino}", file=sys.stderr)


def _arduino_library(args: argparse.Namespace) -> None:
    from ..firmware import arduino

    output = Path(args.output)
    if args.force and Path(args.model).resolve().is_relative_to(output.resolve()):
        raise TinyTrainError(f"--force would delete {output}, which holds the input model {args.model}")
    arduino.check_destination(output, args.name, args.force)
    model = _read_model(args.model)
    origin = f"arduino-library {Path(args.model).name}"
    arena = c_array.arena_size(model, args.arena, arduino=True)
    files = arduino.assemble(model, output, arena, origin, args.name, args.force)
    _note_arduino_estimate(arena, True)
    print(f"wrote {args.output}: the {args.name} Arduino library, {len(files)} files (sketch: examples/{arduino.SKETCH})")


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
    installed = importlib.metadata.version("tinytrain-tflm")  # pyproject.toml's, as pip installed it
    version = f"tinytrain-tflm {installed} (tflite-micro {interpreter.PINNED_TFLM_VERSION})"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="check the TFLM runtime and the kernel library").set_defaults(run=_doctor)
    compile_ = commands.add_parser("compile", help="compile an int8 .tflite into a training model")
    compile_.add_argument("model", help="int8 .tflite classifier (full-integer quantized)")
    compile_.add_argument("-o", "--output", required=True, help="training model to write (never the input)")
    scheme_help = '"all", "last" or JSON like \'{"bias_last": 4, "weights": {"7": 0.5}}\''
    scheme_help += "; or @FILE (a path to a .json works too): a scheme file from `search`, with its options, target and budget"
    compile_.add_argument("--update", default="last", help=scheme_help)
    ram_help = "arena budget, e.g. 256KB: warn when the compiled model needs more (default: a scheme file's)"
    compile_.add_argument("--ram", help=ram_help)
    compile_.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    compile_.add_argument("--momentum", type=float, default=0.0)
    compile_.add_argument("--no-qas", action="store_true", help="naive int8 SGD instead of quantization-aware scaling")
    compile_.add_argument("--rounding", choices=sorted(ROUNDINGS), default="stochastic")
    compile_.add_argument("--seed", type=int, default=1, help="stochastic rounding seed")
    compile_.add_argument(
        "--accumulate",
        action="store_true",
        help="gradient accumulators for mini-batches (`train --batch N`): RAM for float32 gradients of every trained value",
    )
    gradient_help = f"gradient representation (default {DEFAULTS.gradient}; float32 is the reference, 4x the gradient memory)"
    compile_.add_argument("--gradient", choices=sorted(loss.GRADIENT_DTYPES), help=gradient_help)
    compile_.add_argument("--label-smoothing", type=float, default=0.0)
    compile_.add_argument("--loss", choices=sorted(loss.LOSSES), default="softmax_cross_entropy", help=LOSS_HELP)
    compile_.add_argument("--no-masks", action="store_true", help="keep int8 activations instead of 1-bit ReLU masks")
    compile_.add_argument("--tile", help=TILE_HELP)
    compile_.add_argument(
        "--no-overlap",
        action="store_true",
        help="let TFLM plan the arena: no output written over its input (for kernels that do not produce rows in order)",
    )
    compile_.add_argument("--flash-requantization", action=argparse.BooleanOptionalAction, help=FLASH_HELP)
    compile_.add_argument(
        "--stream-input",
        action="store_true",
        help="the sample is no arena tensor: the tiled first stage reads its rows from the firmware's "
        "tinytrain::SetStreamedInput (needs --tile; README, Memory)",
    )
    _add_target_arguments(
        compile_, "the device the model is for: its kernels decide which ops may overlap buffers (default host)"
    )
    compile_.set_defaults(run=_compile)
    train = commands.add_parser("train", help="train a training model on the TFLM runtime")
    train.add_argument("model", help="training model from `compile`")
    train.add_argument("--data", required=True, help=".npz with 'x' (samples) and 'y' (labels)")
    train.add_argument("--epochs", type=_positive_int, default=1)
    train.add_argument("--seed", type=int, default=0, help="shuffling seed (and the --validation-split draw)")
    train.add_argument("-o", "--output", help="trained training model (default: MODEL.trained.tflite)")
    train.add_argument(
        "--batch",
        type=_positive_int,
        default=1,
        help="update every N samples with their mean gradient (a model compiled with --accumulate); default 1",
    )
    rates = train.add_argument_group("learning rate, set at run time (the model keeps its compiled one)")
    rates.add_argument("--lr", type=_positive_float, help="learning rate of the first epoch (default: the compiled one)")
    rates.add_argument(
        "--schedule",
        choices=("constant", "step", "cosine"),
        default="constant",
        help="per epoch: step multiplies by --gamma every --step-epochs epochs; cosine falls from --lr toward 0",
    )
    rates.add_argument("--step-epochs", type=_positive_int, help="epochs between step decays (default: a third of --epochs)")
    rates.add_argument("--gamma", type=_fraction, default=0.1, help="step schedule's factor (default 0.1)")
    held_out = train.add_argument_group("held-out samples, evaluated after every epoch")
    held_out.add_argument("--validation-split", type=_fraction, help="hold out this fraction of --data, e.g. 0.1")
    held_out.add_argument("--val", help=".npz of held-out samples ('x', 'y')")
    held_out.add_argument(
        "--keep", choices=("last", "best"), default="last", help="write the last epoch's weights or the best held-out epoch's"
    )
    guard = train.add_argument_group("divergence guard (tinytrain_tflm.runtime.guard)")
    guard.add_argument(
        "--guard",
        choices=GUARD_MODES,
        default="warn",
        help="warn once when the loss explodes or the weights saturate; rollback: also restore the last good state",
    )
    guard.add_argument(
        "--guard-loss", type=float, help="mean loss over 50 steps that counts as diverging (default: 3 x ln(classes))"
    )
    train.set_defaults(run=_train)
    fleet = commands.add_parser("fleet", help="federated training on Flower: one TFLM Trainer per client, non-IID shards")
    fleet.add_argument("model", help="training model from `compile`")
    fleet.add_argument("--data", required=True, help=".npz with 'x' and 'y', split among the clients by class skew")
    fleet.add_argument("--test", required=True, help=".npz with 'x' and 'y' the server scores the global model on")
    fleet.add_argument("--clients", type=int, default=10)
    fleet.add_argument("--rounds", type=int, default=5)
    fleet.add_argument("--local-epochs", type=int, default=1, help="passes over its shard per client per round")
    fleet.add_argument("--alpha", type=float, default=0.5, help="Dirichlet class skew: smaller, fewer classes per client")
    fleet.add_argument("--clip-norm", type=float, help="bound on each update's L2 norm (default: the round's median)")
    fleet.add_argument("--seed", type=int, default=0)
    fleet.add_argument("-o", "--output", help="write the training model with the final global values")
    fleet.set_defaults(run=_fleet)
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
    search.add_argument("--tile", default=_tile_text(DEFAULTS.memory.tiles), help="every candidate's: " + TILE_HELP)
    search.add_argument(
        "--flash-requantization",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.memory.flash_requantization,
        help="every candidate's: " + FLASH_HELP,
    )
    search.add_argument("--seed", type=int, default=0)
    _add_target_arguments(search, "the device the scheme is for: the budget is judged on its arena (default host)")
    search.set_defaults(run=_search)
    export = commands.add_parser(
        "export", help="write the inference model with the training model's weights, or the training model as a C array"
    )
    export.add_argument("model", help="training model")
    export.add_argument("-o", "--output", help="inference .tflite to write (never the input)")
    export.add_argument("--c-array", help="write the training model as OUT.cc plus OUT.h (arena size, tensor positions)")
    export.add_argument("--c-name", help="C++ namespace of the array and constants (default: OUT's file name)")
    export.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="start from this device checkpoint's weights (one checkpoint, or the device's two-slot storage image)",
    )
    arena_help = "arena size in the header: measured in TFLM by bisection (default) or the planner's estimate"
    export.add_argument("--arena", choices=("measured", "estimated"), default="measured", help=arena_help)
    _add_target_arguments(export, "measure kArenaBytes32 on this target's emulated board (default: the model's target)")
    export.add_argument(
        "--arduino-tflm",
        action="store_true",
        help="also measure kArduinoArenaBytes, the Arduino_TensorFlowLite library's need, by building its TFLM on this "
        "host (ARDUINO_TFLM_SRC); without it that figure is an estimate. arduino-library always measures it",
    )
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
    library.add_argument("--name", default="TinyTrain", help="library name and header NAME.h (default TinyTrain)")
    library.add_argument("--force", action="store_true", help="replace OUTPUT if it is an Arduino library already")
    library.set_defaults(run=_arduino_library)
    layers = commands.add_parser("layers", help="list the conv-like layers an update scheme names by index")
    layers.add_argument("model", help="int8 .tflite classifier")
    layers.add_argument("--gradient", choices=sorted(loss.GRADIENT_DTYPES), default="float32", help="for the update RAM column")
    layers.set_defaults(run=_layers)
    arena = commands.add_parser("arena", help="measure a model's minimum TFLM arena by bisection")
    arena.add_argument("model", help=".tflite file")
    arena.set_defaults(run=_arena)
    attach = commands.add_parser("attach-loss", help="add the training loss and its gradient")
    attach.add_argument("model", help="int8 .tflite classifier")
    attach.add_argument("-o", "--output", required=True, help="output .tflite (never the input)")
    attach.add_argument("--label-smoothing", type=float, default=0.0)
    attach.add_argument("--gradient", choices=sorted(loss.GRADIENT_DTYPES), default="float32")
    attach.add_argument("--loss", choices=sorted(loss.LOSSES), default="softmax_cross_entropy", help=LOSS_HELP)
    attach.set_defaults(run=_attach_loss)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_options(args)
        args.run(args)
        sys.stdout.flush()
    except TinyTrainError as error:
        print(f"tinytrain-tflm: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader closed the pipe (`plan M | head -1`): nothing more to say. Python would report the
        # failed flush of stdout at exit, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

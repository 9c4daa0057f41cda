"""A user's workflow without traps (issue 15): each trap a user met is a one-line error or fixed behaviour."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import _classifier, _cli

import tinytrain_tflm as tt
from tinytrain_tflm.passes.scheme import layer_table
from tinytrain_tflm.tools.cli import parse_size


def _one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinytrain-tflm: error: ") and message in lines[0], result.stderr


@pytest.fixture
def workspace(tmp_path):
    """The one-op classifier, its training model and a data set labelled by a linear rule it can learn."""
    source = _classifier(tmp_path)
    training = tmp_path / "training.tflite"
    training.write_bytes(tt.compile(source.read_bytes(), update="all", optimizer=tt.SGD(lr=0.05)).bytes)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (120, 4)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(4, 3)), axis=1).astype(np.int32)
    np.savez(tmp_path / "data.npz", x=x[:90], y=y[:90])
    np.savez(tmp_path / "val.npz", x=x[90:], y=y[90:])
    return tmp_path, source, training


def test_bad_data_files_are_one_line_errors(workspace):
    tmp, _, training = workspace
    x = np.load(tmp / "data.npz")["x"]
    np.save(tmp / "x.npy", x)
    _one_line_error(_cli("train", str(training), "--data", str(tmp / "x.npy")), "holds one array; give an .npz")
    np.savez(tmp / "onehot.npz", x=x, y=np.eye(3, dtype=np.int32)[np.zeros(len(x), int)])
    _one_line_error(_cli("train", str(training), "--data", str(tmp / "onehot.npz")), "one integer label per sample")
    bad = x.copy()
    bad[7, 2] = np.nan
    np.savez(tmp / "nan.npz", x=bad, y=np.zeros(len(x), np.int32))
    _one_line_error(_cli("train", str(training), "--data", str(tmp / "nan.npz")), "NaN or infinite values (first in sample 7)")
    np.savez(tmp / "shape.npz", x=x[:, :3], y=np.zeros(len(x), np.int32))
    _one_line_error(_cli("train", str(training), "--data", str(tmp / "shape.npz")), "samples of shape (4,)")


def test_labels_as_a_column_train_as_a_vector(workspace):
    tmp, _, training = workspace
    with np.load(tmp / "data.npz") as data:
        np.savez(tmp / "column.npz", x=data["x"], y=data["y"][:, None])
    for name in ("data", "column"):
        result = _cli("train", str(training), "--data", str(tmp / f"{name}.npz"), "-o", str(tmp / f"{name}.tflite"))
        assert result.returncode == 0, result.stderr
    assert (tmp / "data.tflite").read_bytes() == (tmp / "column.tflite").read_bytes()


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ('{"weights": {"0": "1/4"}}', "channel ratio '1/4' of layer 0 must be a number"),
        ('{"weights": [0]}', "weights must map layer indices to channel ratios"),
        ('{"weights": {"-1": 1}}', "layers count from 0"),
        ("@missing.json", "cannot read the scheme file missing.json"),
    ],
)
def test_bad_update_schemes_are_one_line_errors(workspace, update, message):
    tmp, source, _ = workspace
    result = subprocess.run(
        [sys.executable, "-P", "-m", "tinytrain_tflm.cli", "compile", str(source), "-o", "out.tflite", "--update", update],
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=300,
    )
    _one_line_error(result, message)


def test_bad_plot_paths_are_refused_before_the_plan(workspace):
    tmp, _, training = workspace
    _one_line_error(_cli("plan", str(training), "--plot", str(tmp / "nodir" / "x.png")), "directory")
    _one_line_error(_cli("plan", str(training), "--plot", str(tmp / "x.tflite")), "--plot writes an image")
    _one_line_error(_cli("plan", str(tmp / "missing.tflite"), "--plot", str(tmp / "x.tflite")), "--plot writes an image")


def test_outputs_are_checked_before_any_work(workspace):
    """-o naming an input is refused first: before the (here missing) data would be read, let alone trained on."""
    tmp, source, training = workspace
    missing = str(tmp / "missing.npz")
    refusal = f"refusing to overwrite the input file {training}"
    _one_line_error(_cli("train", str(training), "--data", missing, "-o", str(training)), refusal)
    refusal = f"refusing to overwrite the input file {source}"
    _one_line_error(_cli("search", str(source), "--budget", "1MB", "--data", missing, "-o", str(source)), refusal)
    _one_line_error(_cli("compile", str(source), "-o", str(tmp / "nodir" / "t.tflite")), "directory")
    c_array = ("--c-array", str(tmp / "model.cc"))
    _one_line_error(_cli("export", str(training), *c_array, "-o", str(tmp / "nodir" / "t.tflite")), "directory")
    assert not (tmp / "model.cc").exists()
    _one_line_error(_cli("train", str(training), "--data", missing, "--keep", "best"), "--keep best needs held-out samples")


def test_option_values_are_checked_by_the_parser(workspace):
    tmp, _, training = workspace
    for args in (("--epochs", "0"), ("--epochs", "-1"), ("--validation-split", "1.5")):
        result = _cli("train", str(training), "--data", str(tmp / "data.npz"), *args)
        assert result.returncode == 2 and args[0] in result.stderr.strip().splitlines()[-1], result.stderr


def test_a_model_whose_shapes_need_too_much_memory_is_a_one_line_error(workspace):
    """Two damaged bytes in a shape made the host arena terabytes: std::bad_alloc escaped train and export."""
    tmp, _, training = workspace
    graph = tt.read_graph(training.read_bytes())
    activation = next(i for i, t in enumerate(graph.tensors) if t.data is None and len(t.shape) == 2 and not t.is_variable)
    graph.tensors[activation] = dataclasses.replace(graph.tensors[activation], shape=(1 << 15, 1 << 15))
    damaged = tmp / "damaged.tflite"
    damaged.write_bytes(tt.emit_model(graph))
    _one_line_error(_cli("train", str(damaged), "--data", str(tmp / "data.npz")), "over the 1,073,741,824-byte limit")
    _one_line_error(_cli("export", str(damaged), "-o", str(tmp / "o.tflite")), "over the 1,073,741,824-byte limit")


def test_a_closed_pipe_ends_quietly(workspace):
    """`plan M | head -1`: the reader is gone before the first line; no BrokenPipeError traceback."""
    _, _, training = workspace
    read_end, write_end = os.pipe()
    os.close(read_end)
    command = [sys.executable, "-P", "-m", "tinytrain_tflm.cli", "plan", str(training)]
    result = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write_end)
    assert result.returncode == 1 and result.stderr == ""


def test_trainer_takes_a_path_and_array_labels(workspace):
    _, _, training = workspace
    sample = np.array([0.5, -0.25, 0.75, 0.1], np.float32)
    by_path, by_bytes = tt.Trainer(str(training)), tt.Trainer(training.read_bytes())
    assert by_path.step(sample, np.array([2])) == by_bytes.step(sample, 2)
    assert np.array_equal(by_path.predict(sample), by_bytes.predict(sample))
    with pytest.raises(tt.TinyTrainError, match="^cannot read .*missing.tflite"):
        tt.Trainer(str(training.parent / "missing.tflite"))
    with pytest.raises(tt.TinyTrainError, match="one integer class index, got 1.5"):
        by_path.step(sample, 1.5)
    with pytest.raises(tt.TinyTrainError, match="one integer class index"):
        by_path.step(sample, np.array([1, 2]))
    with pytest.raises(tt.TinyTrainError, match="NaN or infinite"):
        by_path.step(np.full(4, np.inf, np.float32), 1)


def test_held_out_accuracy_and_loss_per_epoch_and_the_best_epoch_kept(workspace):
    tmp, _, training = workspace
    out = tmp / "best.tflite"
    args = ("train", str(training), "--data", str(tmp / "data.npz"), "--val", str(tmp / "val.npz"))
    result = _cli(*args, "--epochs", "4", "--keep", "best", "-o", str(out))
    assert result.returncode == 0, result.stderr
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    accuracies = [float(line.split("held-out accuracy ")[1].split("%")[0]) for line in epochs]
    losses = [float(line.split(", loss ")[1]) for line in epochs]
    assert len(accuracies) == 4
    # The kept model's held-out accuracy and loss, computed here from its logits with NumPy.
    with np.load(tmp / "val.npz") as val:
        x, y = val["x"], val["y"]
    logits = np.concatenate([tt.Trainer(out.read_bytes()).predict(sample) for sample in x])
    accuracy = 100 * np.mean(np.argmax(logits, axis=1) == y)
    shifted = logits - logits.max(axis=1, keepdims=True)
    loss = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y])
    best = max(range(4), key=lambda e: (accuracies[e], -losses[e]))
    assert accuracy == pytest.approx(accuracies[best], abs=0.05)
    assert loss == pytest.approx(losses[best], rel=1e-3, abs=1e-4)
    assert f"at epoch {best + 1}, the best held-out accuracy ({accuracies[best]:.1f}%)" in result.stdout


def test_validation_split_holds_out_that_fraction(workspace):
    tmp, _, training = workspace
    result = _cli(
        "train", str(training), "--data", str(tmp / "data.npz"), "--validation-split", "0.2", "-o", str(tmp / "o.tflite")
    )
    assert result.returncode == 0, result.stderr
    assert "(18 held-out samples)" in result.stdout and "[##############################] 72/72" in result.stderr


def test_sizes_accept_datasheet_units():
    assert parse_size("262144") == parse_size("256KB") == parse_size("256 KiB") == parse_size("256k") == 262144
    assert parse_size("0.25MB") == parse_size("0.25MiB") == 262144 and parse_size("100B") == 100
    for text in ("nan", "-1KB", "0", "abc", "inf"):
        with pytest.raises(tt.TinyTrainError, match="--budget"):
            parse_size(text)


def test_compile_with_memory_options_warns_over_its_ram_budget(workspace):
    tmp, source, _ = workspace
    out = str(tmp / "t.tflite")
    measured = tt.minimum_arena_size(tt.compile(source.read_bytes(), update="all", gradient="float32").bytes)
    chosen = ("compile", str(source), "--update", "all", "--gradient", "float32", "-o", out)
    over = _cli(*chosen, "--ram", f"{measured - 1}")
    assert over.returncode == 0 and f"warning: the arena needs {measured:,} bytes" in over.stderr
    within = _cli(*chosen, "--ram", f"{measured}B")
    assert within.returncode == 0 and f"arena: {measured:,} bytes" in within.stdout and "warning" not in within.stderr
    _one_line_error(_cli("compile", str(source), "-o", out, "--ram", "lots"), "--ram takes bytes")


def test_layers_lists_what_schemes_name(workspace):
    _, source, _ = workspace
    result = _cli("layers", str(source))
    assert result.returncode == 0, result.stderr
    row = result.stdout.splitlines()[1].split()
    # The classifier: FULLY_CONNECTED with 3x4 int8 weights and (added at compile) 3 int32 biases; a float32
    # update keeps int8 and int32 copies and float32 gradients of both: 12 * (1 + 4) + 3 * (4 + 4) bytes.
    assert row == ["0", "FULLY_CONNECTED", "3x4", "15", "84", "w"]


def test_version():
    result = _cli("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith(f"tinytrain-tflm {tt.__version__} (tflite-micro ")


def test_from_keras_prints_the_layers_and_no_tensorflow_log():
    """TensorFlow's C++ start-up log (absl's warning, the CUDA probe) reached the demo's terminal twice."""
    script = (
        "import numpy as np\n"
        "import tinytrain_tflm as tt\n"
        "from tinytrain_tflm.frontend.convert import tensorflow\n"
        "keras = tensorflow().keras\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])\n"
        "print(len(tt.from_keras(model, np.random.default_rng(0).uniform(-1, 1, (8, 4)))) > 0)\n"
    )
    result = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.endswith("True\n"), result.stderr
    assert result.stdout.splitlines()[1].split()[:5] == ["0", "FULLY_CONNECTED", "3x4", "15", "84"]
    assert result.stderr == ""


def test_compile_ram_picks_the_first_memory_options_that_fit(workspace):
    """--ram without memory options: the reference options (float32 gradients, requantization in the arena, no
    tiling) if they fit, else int8 gradients, then flash requantization, then tiling; nothing fitting is one
    line naming the smallest arena."""
    tmp, _, _ = workspace
    source = _classifier(tmp, inputs=64, classes=10)  # weights large enough that int8 gradients save
    model = source.read_bytes()
    untiled = {"tiles": None, "flash_requantization": False}
    reference = tt.minimum_arena_size(tt.compile(model, update="all", gradient="float32", **untiled).bytes)
    int8 = tt.minimum_arena_size(tt.compile(model, update="all", gradient="int8", **untiled).bytes)
    assert int8 < reference
    out = str(tmp / "t.tflite")
    result = _cli("compile", str(source), "--update", "all", "-o", out, "--ram", str(reference))
    chosen = "chose --gradient float32 --no-flash-requantization --tile none: the arena needs"
    assert result.returncode == 0 and result.stdout.startswith(f"{chosen} {reference:,}"), result.stdout
    result = _cli("compile", str(source), "--update", "all", "-o", out, "--ram", str(reference - 1))
    chosen = "chose --gradient int8 --no-flash-requantization --tile none: the arena needs"
    assert result.returncode == 0 and result.stdout.startswith(f"{chosen} {int8:,}"), result.stdout
    assert tt.minimum_arena_size((tmp / "t.tflite").read_bytes()) == int8
    smallest = min(
        int8,
        tt.minimum_arena_size(tt.compile(model, update="all", gradient="int8", tiles=None, flash_requantization=True).bytes),
        tt.minimum_arena_size(tt.compile(model, update="all", gradient="int8", flash_requantization=True, tiles="auto").bytes),
    )
    nothing = _cli("compile", str(source), "--update", "all", "-o", out, "--ram", str(smallest - 1))
    _one_line_error(nothing, f"nothing fits the {smallest - 1:,}-byte budget: the smallest arena is {smallest:,} bytes")


def test_a_cpp_keyword_is_refused_as_the_namespace(workspace):
    tmp, _, training = workspace
    _one_line_error(_cli("export", str(training), "--c-array", str(tmp / "class.cc")), "'class' is a C++ keyword")
    _one_line_error(_cli("export", str(training), "--c-array", str(tmp / "m.cc"), "--c-name", "namespace"), "C++ keyword")
    assert not any(tmp.glob("*.cc")) and not any(tmp.glob("*.h"))


def test_training_that_saturates_the_weights_is_flagged(workspace):
    tmp, source, training = workspace
    data = ("--data", str(tmp / "data.npz"), "--epochs", "2")
    calm = _cli("train", str(training), *data, "-o", str(tmp / "calm.tflite"))
    assert calm.returncode == 0 and "warning" not in calm.stderr, calm.stderr
    wild = tmp / "wild.tflite"
    wild.write_bytes(tt.compile(source.read_bytes(), update="all", optimizer=tt.SGD(lr=50.0)).bytes)
    result = _cli("train", str(wild), *data, "-o", str(tmp / "wild.trained.tflite"))
    assert result.returncode == 0 and "training may be diverging" in result.stderr, result.stderr
    weights = tt.Trainer(tmp / "wild.trained.tflite").weights()["w"]
    assert np.mean((weights == -128) | (weights == 127)) > 0.05


def test_the_readme_holds_the_generated_ops_table():
    from pathlib import Path

    from tinytrain_tflm.passes.autodiff.rules import GRAD_RULES
    from tinytrain_tflm.tools.ops_table import ops_table

    table = ops_table()
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert table in readme, "README.md's ops table is stale: python -m tinytrain_tflm.tools.ops_table"
    assert all(f"| `{kind}` |" in table for kind in GRAD_RULES)


def test_arduino_library_takes_a_name_and_force_and_sizes_the_sketch_from_the_model(workspace):
    tmp, _, training = workspace
    library = tmp / "KwsTrain"
    result = _cli("arduino-library", str(training), "-o", str(library), "--arena", "estimated", "--name", "KwsTrain")
    assert result.returncode == 0, result.stderr
    assert (library / "src/KwsTrain.h").is_file() and not (library / "src/TinyTrain.h").exists()
    properties = (library / "library.properties").read_text()
    assert "name=KwsTrain\n" in properties and "includes=KwsTrain.h" in properties and "TinyTrain" not in properties
    sketch = library / "examples/TrainOnDevice"
    assert "#include <KwsTrain.h>" in (sketch / "TrainOnDevice.ino").read_text()
    graph = tt.read_graph(training.read_bytes())
    values = int(np.prod(graph.tensors[graph.inputs[0]].shape))
    assert f"constexpr unsigned int kSampleValues = {values};" in (sketch / "train_model.h").read_text()
    again = ("arduino-library", str(training), "-o", str(library), "--arena", "estimated", "--name", "KwsTrain")
    _one_line_error(_cli(*again), "already exists; give arduino-library a new directory, or --force")
    (library / "stale.txt").write_text("from an older library")
    assert _cli(*again, "--force").returncode == 0 and not (library / "stale.txt").exists()
    (tmp / "notes").mkdir()
    _one_line_error(_cli("arduino-library", str(training), "-o", str(tmp / "notes"), "--force"), "not an Arduino library")
    _one_line_error(_cli("arduino-library", str(training), "-o", str(tmp / "x"), "--name", "my lib"), "library name 'my lib'")


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """TT_SGD's nearest rounding (roundf: ties away from zero)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _predicted_sgd(trainer: tt.Trainer, weights, gradients, lr: float) -> dict[str, np.ndarray]:
    """Each parameter after one QAS step with nearest rounding, in the kernel's float32 arithmetic:
    q + round(-(lr / s) * g), saturated (int8 weights to [-127, 127])."""
    predicted = {}
    for parameter in trainer.parameters:
        q, g = weights[parameter.name], gradients[parameter.name].astype(np.float32)
        quantization = trainer.graph.tensors[parameter.variable].quantization
        scales = quantization.scale.astype(np.float32).reshape([-1] + [1] * (q.ndim - 1) if quantization.scale.size > 1 else [])
        step = _round_half_away(-(np.float32(lr) / scales) * g).astype(np.int64)
        low, high = (-127, 127) if q.dtype == np.int8 else (np.iinfo(np.int32).min, np.iinfo(np.int32).max)
        predicted[parameter.name] = np.clip(q.astype(np.int64) + step, low, high).astype(q.dtype)
    return predicted


def test_learning_rate_set_at_run_time_moves_the_weights_as_numpy_predicts(workspace):
    tmp, source, _ = workspace
    # float32 gradients: the prediction applies the QAS step to the gradients Trainer.gradients reports, which
    # are the ones the kernel steps with only in the float32 reference mode (int8 ones are rescaled first).
    compiled = tt.compile(source.read_bytes(), update="all", optimizer=tt.SGD(lr=0.05, rounding="nearest"), gradient="float32")
    trainer = tt.Trainer(compiled)
    with np.load(tmp / "data.npz") as data:
        x, y = data["x"], data["y"]
    assert trainer.learning_rate == trainer.compiled_learning_rate == pytest.approx(0.05)
    for step, (lr, how) in enumerate([(0.05, "compiled"), (0.4, "property"), (0.01, "step"), (0.4, "property kept")]):
        weights, gradients = trainer.weights(), trainer.gradients(x[step], y[step])
        want = _predicted_sgd(trainer, weights, gradients, lr)
        if how == "property":
            trainer.learning_rate = lr
            assert trainer.learning_rate == lr
        trainer.step(x[step], y[step], lr=lr if how == "step" else None)
        for name, value in trainer.weights().items():
            np.testing.assert_array_equal(value, want[name], err_msg=f"step {step} ({how}): {name}")
        if lr != 0.05:  # another rate would have moved them otherwise: the rate reached the kernel
            other = _predicted_sgd(trainer, weights, gradients, 0.05)
            assert any(not np.array_equal(other[name], want[name]) for name in want), step
    assert trainer.learning_rate == 0.4  # step(lr=) changed one step only
    for bad in (0, -1.0, float("nan"), 1e3, "0.1"):
        with pytest.raises(tt.TinyTrainError, match="learning rate must be"):
            trainer.learning_rate = bad
    # Saved and reloaded, the model keeps its compiled rate: the run-time one is the trainer's.
    assert tt.Trainer(trainer.training_model()).learning_rate == pytest.approx(0.05)


def test_learning_rate_schedules_follow_their_formulas():
    cosine = [tt.scheduled_learning_rate("cosine", 0.2, epoch, 4) for epoch in range(1, 5)]
    assert cosine == pytest.approx([0.2, 0.1 * (1 + np.cos(np.pi / 4)), 0.1, 0.1 * (1 + np.cos(3 * np.pi / 4))])
    step = [tt.scheduled_learning_rate("step", 0.2, epoch, 5, step_epochs=2, gamma=0.5) for epoch in range(1, 6)]
    assert step == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05])
    assert tt.scheduled_learning_rate("constant", 0.2, 3, 4) == 0.2
    with pytest.raises(tt.TinyTrainError, match="schedule must be constant, step or cosine"):
        tt.scheduled_learning_rate("linear", 0.2, 1, 4)


def test_train_schedule_sets_each_epochs_rate(workspace):
    """The CLI's cosine schedule: the printed rates follow the formula, and the trained model is the one a
    Trainer gives stepping with those rates in the same order."""
    tmp, _, training = workspace
    out = tmp / "cosine.tflite"
    result = _cli(
        "train", str(training), "--data", str(tmp / "data.npz"), "--epochs", "3", "--lr", "0.2", "--schedule", "cosine",
        "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rates = [tt.scheduled_learning_rate("cosine", 0.2, epoch, 3) for epoch in (1, 2, 3)]
    printed = [float(line.split("lr ")[1].split(",")[0]) for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert printed == pytest.approx(rates, rel=1e-3)
    trainer = tt.Trainer(training.read_bytes())
    with np.load(tmp / "data.npz") as data:
        x, y = data["x"], data["y"]
    order = np.random.default_rng(0)  # train's default --seed
    for rate in rates:
        for i in order.permutation(len(x)):
            trainer.step(x[i], int(y[i]), lr=rate)
    assert trainer.training_model().bytes == out.read_bytes()


def test_gradients_and_weights_take_the_layer_indices_schemes_use():
    """On a tiled, partially updated model whose forward ops read requantization from flash: the indices of
    `tinytrain-tflm layers` on the source model reach the same tensors as the names."""
    source = (Path(__file__).parent / "data" / "mobilenet_v2_blocks.tflite").read_bytes()
    names = [row.name for _, row in layer_table(tt.read_graph(source), 4)]
    scheme = {"bias_last": 3, "weights": {"7": 0.5, "6": 0.25, "4": 0.5}}
    compiled = tt.compile(source, update=scheme, tiles=(2, 3), flash_requantization=True)
    trainer = tt.Trainer(compiled)
    gradients, weights = trainer.gradients(np.zeros(trainer.input.shape, np.float32), 1), trainer.weights()
    for index in (4, 6, 7):
        assert gradients[index] is gradients[names[index]] and weights[index] is weights[names[index]]
    assert [gradients[i].shape[0] for i in (4, 6, 7)] == [8, 2, 3]  # the updated channels only
    for index in (5, 6, 7):
        bias = trainer.layers[index][1]
        assert gradients[index, "bias"] is gradients[bias] and weights[index, "bias"].dtype == np.int32
    with pytest.raises(tt.TinyTrainError, match="layer 5's weights .* are not trained"):
        gradients[5]
    with pytest.raises(tt.TinyTrainError, match="layer 8 does not exist: the model's conv-like layers are 0 to 7"):
        weights[8]
    with pytest.raises(tt.TinyTrainError, match=r"give a tensor name, a layer index or \(index, \"bias\"\)"):
        weights[4, "scale"]


def test_evaluate_predicts_a_binary_classifier_from_its_one_logit(tmp_path):
    """Binary cross-entropy has one logit: class 1 when it is positive, as accuracy() says; argmax over one
    value would always say 0."""
    source = _classifier(tmp_path, classes=1)
    trainer = tt.Trainer(tt.compile(source.read_bytes(), update="all", loss="binary_cross_entropy"))
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (40, 4)).astype(np.float32)
    logits = np.array([trainer.predict(sample)[0, 0] for sample in x])
    y = np.where(rng.uniform(size=40) < 0.8, logits > 0, logits <= 0).astype(np.int32)  # right about 80% of the time
    want = np.mean((logits > 0) == y)
    accuracy, _ = trainer.evaluate(x, y)
    assert accuracy == pytest.approx(want) and trainer.accuracy(x, y) == pytest.approx(want)
    assert want != pytest.approx(np.mean(y == 0))  # what argmax gave


def test_mini_batches_apply_the_mean_gradient_once(workspace):
    """batch_size 3: the weights stay through two samples, then take one step with the mean of the three
    per-sample gradients. Those gradients are the float gradients of the int8 forward pass, checked here
    against NumPy: d loss / d W = (softmax(z) - onehot(y)) x^T, with bias gradient softmax(z) - onehot(y)."""
    tmp, source, training = workspace
    # float32 gradients: the reference mode, whose gradients and accumulated mean NumPy predicts exactly.
    optimizer = tt.SGD(lr=0.2, rounding="nearest", accumulate=True)
    compiled = tt.compile(source.read_bytes(), update="all", optimizer=optimizer, gradient="float32")
    trainer = tt.Trainer(compiled)
    with np.load(tmp / "data.npz") as data:
        x, y = data["x"][:6], data["y"][:6]
    weight, bias = trainer.layers[0]
    sample_quantization = trainer.input.quantization
    trainer.batch_size = 3
    for first in (0, 3):
        start = trainer.weights()
        per_sample = [trainer.gradients(x[i], y[i]) for i in range(first, first + 3)]
        for i, gradients in zip(range(first, first + 3), per_sample, strict=True):
            z = trainer.predict(x[i])[0].astype(np.float64)
            error = np.exp(z - z.max()) / np.exp(z - z.max()).sum() - np.eye(3)[y[i]]
            real_x = sample_quantization.dequantize(sample_quantization.quantize(x[i][None], np.int8))[0]
            np.testing.assert_allclose(gradients[weight], np.outer(error, real_x), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(gradients[bias], error, rtol=1e-4, atol=1e-6)
        mean = {
            name: (per_sample[0][name].astype(np.float32) + per_sample[1][name] + per_sample[2][name]) / np.float32(3)
            for name in start
        }
        for i in range(first, first + 2):
            trainer.step(x[i], y[i])
            assert all(np.array_equal(trainer.weights()[name], start[name]) for name in start), i
        trainer.step(x[first + 2], y[first + 2])
        want = _predicted_sgd(trainer, start, mean, 0.2)
        for name, value in trainer.weights().items():
            np.testing.assert_array_equal(value, want[name], err_msg=f"batch from {first}: {name}")
        assert any(not np.array_equal(want[name], start[name]) for name in start)
    # Batch size 1 on the accumulating model trains as the model without accumulators does, bit for bit.
    plain, single = (
        tt.Trainer(training.read_bytes()),
        tt.Trainer(tt.compile(source.read_bytes(), update="all", optimizer=tt.SGD(lr=0.05, accumulate=True))),
    )
    for i in range(6):
        assert plain.step(x[i], y[i]) == single.step(x[i], y[i])
    assert all(np.array_equal(value, single.weights()[name]) for name, value in plain.weights().items())
    with pytest.raises(tt.TinyTrainError, match=r"mini-batches need gradient accumulators: compile with SGD\(accumulate=True\)"):
        plain.batch_size = 2
    _one_line_error(_cli("train", str(training), "--data", str(tmp / "data.npz"), "--batch", "4"), "compile --accumulate")


def test_train_batch_runs_mini_batches(workspace):
    tmp, source, _ = workspace
    accumulating = tmp / "accumulating.tflite"
    result = _cli("compile", str(source), "--update", "all", "--accumulate", "--lr", "0.05", "-o", str(accumulating))
    assert result.returncode == 0, result.stderr
    out = tmp / "batched.tflite"
    result = _cli("train", str(accumulating), "--data", str(tmp / "data.npz"), "--batch", "4", "-o", str(out))
    assert result.returncode == 0, result.stderr
    trainer = tt.Trainer(accumulating.read_bytes())
    trainer.batch_size = 4
    with np.load(tmp / "data.npz") as data:
        x, y = data["x"], data["y"]
    for i in np.random.default_rng(0).permutation(len(x)):
        trainer.step(x[i], int(y[i]))
    assert trainer.training_model().bytes == out.read_bytes()

"""The compiled graph's structure: pruning, update placement, masks, schemes, and refused models."""

from __future__ import annotations

import numpy as np
import pytest
from models import int8_model

import tinytrain_tflm as tt
from tinytrain_tflm.backend import schema
from tinytrain_tflm.backend import schema_generated as names
from tinytrain_tflm.compiler import compile_with
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.options import Ablation, CompileOptions, MemoryOptions


def _ops(training: tt.TrainingModel) -> tuple[tt.Graph, list[tt.Op]]:
    graph = tt.read_graph(training.bytes)
    return graph, graph.ops


def _backward(ops: list[tt.Op]) -> list[tt.Op]:
    loss = next(i for i, op in enumerate(ops) if op.kind == names.SOFTMAX_CROSS_ENTROPY)
    return ops[loss + 1 :]


def test_last_layer_scheme_emits_only_the_classifier_gradients():
    _, ops = _ops(tt.compile(int8_model("mobilenet_v2_blocks"), update="last"))
    kinds = [op.kind for op in _backward(ops)]
    assert kinds == [names.FULLY_CONNECTED_FILTER_GRAD, names.SGD, names.BIAS_GRAD, names.SGD]


@pytest.mark.parametrize("model", ["mobilenet_v2_blocks", "ds_cnn", "small_cnn"])
@pytest.mark.parametrize("update", ["all", {"bias_last": 3, "weights": {"2": 0.5}}])
def test_each_update_follows_its_gradient_and_the_last_read_of_the_old_value(model, update):
    """In autodiff's order each update runs right after its gradient. The planner's schedule may move an update
    later where that lowers the head (it does with int8 gradients on mobilenet_v2_blocks), but in either order
    nothing reads the old value or the gradient after the update."""
    source = int8_model(model)
    unscheduled = compile_with(source, CompileOptions(update=update), ablation=Ablation(schedule_for_planner=False))
    for training, follows in ((unscheduled, True), (tt.compile(source, update=update), False)):
        graph, ops = _ops(training)
        for position, op in enumerate(ops):
            if op.kind != names.SGD:
                continue
            parameter, grad = op.inputs[0], op.inputs[1]
            producer = max(i for i, o in enumerate(ops) if grad in o.outputs)
            name = graph.tensors[parameter].name
            assert producer < position and (producer == position - 1 or not follows), (
                f"{name}: update is {position - producer} ops after its gradient"
            )
            assert not any(parameter in o.inputs or grad in o.inputs for o in ops[position + 1 :])


def test_pruning_stops_at_the_first_trained_layer():
    graph, ops = _ops(tt.compile(int8_model("mobilenet_v2_blocks"), update={"weights": {"4": 1}}))
    backward = _backward(ops)
    # Layers 0-3 train nothing and nothing before them does: no backward op reads their tensors.
    assert sum(op.kind == names.SGD for op in backward) == 1
    assert not any(op.kind == names.CONV_2D_INPUT_GRAD and graph.tensors[op.outputs[0]].shape[-1] == 3 for op in backward)
    assert [op.kind for op in backward][-2:] == [names.CONV_2D_FILTER_GRAD, names.SGD]


def test_partial_channel_update_computes_only_those_channels():
    graph, ops = _ops(tt.compile(int8_model("mobilenet_v2_blocks"), update={"weights": {"0": 0.25, "2": 0.5}}))
    shapes = {op.kind: graph.tensors[op.outputs[0]].shape for op in ops if op.kind.endswith("FILTER_GRAD")}
    assert shapes[names.CONV_2D_FILTER_GRAD] == (2, 3, 3, 3)  # 8 output channels / 4
    assert shapes[names.DEPTHWISE_CONV_2D_FILTER_GRAD] == (1, 3, 3, 8)  # 16 channels / 2


@pytest.mark.parametrize("masks", [True, False])
def test_masks_replace_activations_only_nothing_else_reads(masks):
    graph, ops = _ops(tt.compile(int8_model("ds_cnn"), update="all", activation_masks=masks))
    backward = _backward(ops)
    readers = [t for op in backward for t in op.inputs]
    for op in backward:
        if op.kind == names.ACTIVATION_GRAD and graph.tensors[op.inputs[2]].dtype == np.int8:
            assert not masks or readers.count(op.inputs[2]) > 1
    assert any(op.kind == names.ACTIVATION_MASK for op in ops) == masks


def test_gradient_tensors_follow_the_mode():
    for gradient, dtype in (("float32", np.float32), ("int8", np.int8)):
        graph, ops = _ops(tt.compile(int8_model("small_cnn"), update="all", gradient=gradient))
        grads = [graph.tensors[op.outputs[0]] for op in _backward(ops) if op.kind.endswith("_GRAD")]
        assert grads and all(t.dtype == dtype for t in grads)


def _keras_int8(build) -> bytes:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = build(tf.keras)
    return keras_to_int8(model, np.random.default_rng(0).uniform(-1, 1, (16, *model.input_shape[1:])).astype(np.float32))


def test_unsupported_op_on_the_gradient_path_is_named():
    def build(keras):
        inputs = keras.Input((6, 6, 1))
        x = keras.layers.Conv2D(4, 3)(inputs)
        x = keras.layers.Activation("elu")(x)
        return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))

    model = _keras_int8(build)
    with pytest.raises(tt.TinyTrainError, match=r"op \d+ \(ELU\) is on the path to a trainable parameter.*supported: ADD"):
        tt.compile(model, update="all")
    tt.compile(model, update="last")  # nothing needs a gradient through ELU


def _strided_crop(keras):
    inputs = keras.Input((8, 3))
    x = keras.layers.Conv1D(4, 3)(inputs)
    x = keras.layers.Lambda(lambda t: t[:, ::2, :])(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


def _channel_mean(keras):
    import tensorflow as tf

    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Lambda(lambda t: tf.reduce_mean(t, axis=-1))(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


@pytest.mark.parametrize(
    "build,message",
    [
        (_strided_crop, r"STRIDED_SLICE producing .* has strides \[1, 2, 1\]; only strides of 1 train"),
        (_channel_mean, r"MEAN producing .*: only the mean over height and width of a 4-D tensor or over time of a 3-D one"),
    ],
)
def test_layout_ops_outside_the_rules_are_named(build, message):
    with pytest.raises(tt.TinyTrainError, match=message):
        tt.compile(_keras_int8(build), update="all")


def test_float_model_is_refused():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(inputs))
    float_model = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with pytest.raises(tt.TinyTrainError, match=r"op 0 \(FULLY_CONNECTED\) has float32 weights .*full-integer"):
        tt.compile(float_model)


@pytest.mark.parametrize(
    "update,message",
    [
        ({"weights": {"8": 1}}, r"names layer 8, but the model has 8 conv-like layers \(0 to 7\)"),
        ({"weights": {"0": 0.3}}, "channel ratio 0.3 of layer 0 must be one of"),
        ({"bias_last": 9}, "bias_last is 9, but the model has only 8"),
        ({"biases": 1}, "unknown keys"),
        ("sometimes", 'not "all", "last" or JSON'),
        ({}, "trains nothing"),
    ],
)
def test_bad_schemes(update, message):
    with pytest.raises(tt.TinyTrainError, match=message):
        tt.compile(int8_model("mobilenet_v2_blocks"), update=update)


def test_json_scheme_equals_the_dict():
    model = int8_model("ds_cnn")
    as_json = tt.compile(model, update='{"bias_last": 2, "weights": {"1": 0.5}}')
    assert as_json.bytes == tt.compile(model, update={"bias_last": 2, "weights": {1: 0.5}}).bytes


def test_deferred_updates_all_follow_the_backward_pass():
    _, ops = _ops(compile_with(int8_model("ds_cnn"), CompileOptions(update="all"), ablation=Ablation(immediate_updates=False)))
    kinds = [op.kind for op in _backward(ops)]
    first_update = kinds.index(names.SGD)
    assert set(kinds[first_update:]) == {names.SGD} and kinds.count(names.SGD) == 12


def test_without_pruning_every_activation_gets_a_gradient_and_the_trained_ones_are_unchanged():
    # Untiled (the first conv's output is a tensor of the graph), float32 gradients, TFLM's builtin convs.
    model, scheme = int8_model("mobilenet_v2_blocks"), {"weights": {"4": 1}}
    untiled = MemoryOptions(tiles=None, flash_requantization=False)
    options = CompileOptions(update=scheme, gradient="float32", memory=untiled)
    pruned, full = compile_with(model, options), compile_with(model, options, ablation=Ablation(prune_backward=False))
    graph, ops = _ops(full)
    # Down to the first conv's output (the gradient of the 1x1 conv's input), although nothing trains there.
    first_output = graph.tensors[graph.ops[1].outputs[0]].shape  # ops[0] initializes variables
    assert first_output == (1, 14, 14, 8)
    input_grads = [graph.tensors[op.outputs[0]].shape for op in _backward(ops) if op.kind == names.CONV_2D_INPUT_GRAD]
    assert first_output in input_grads
    assert len(_backward(ops)) > len(_backward(_ops(pruned)[1]))
    x = np.random.default_rng(0).integers(-128, 128, (1, 16, 16, 3), dtype=np.int8)
    ours, theirs = tt.Trainer(pruned).gradients(x, 1), tt.Trainer(full).gradients(x, 1)
    assert set(ours) == set(theirs) and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    assert tt.minimum_arena_size(full.bytes) > tt.minimum_arena_size(pruned.bytes)


def test_backward_order_for_the_planner_lowers_the_arena_and_trains_identically():
    model, options = int8_model("mobilenet_v2_blocks"), CompileOptions(update="all", gradient="int8", optimizer=tt.SGD(lr=0.05))
    scheduled = compile_with(model, options)
    autodiff_order = compile_with(model, options, ablation=Ablation(schedule_for_planner=False))
    ours, theirs = _ops(scheduled)[1], _ops(autodiff_order)[1]
    kinds, autodiff_kinds = [op.kind for op in ours], [op.kind for op in theirs]
    assert kinds != autodiff_kinds and sorted(kinds) == sorted(autodiff_kinds)  # the same ops, reordered
    assert tt.minimum_arena_size(scheduled.bytes) < tt.minimum_arena_size(autodiff_order.bytes)
    a, b = tt.Trainer(scheduled), tt.Trainer(autodiff_order)
    for seed in range(3):
        x = np.random.default_rng(seed).integers(-128, 128, (1, 16, 16, 3), dtype=np.int8)
        assert a.step(x, seed) == b.step(x, seed)
    assert all(np.array_equal(a.weights()[k], b.weights()[k]) for k in b.weights())


def test_a_parameters_rounding_seed_is_its_own():
    """Each TT_SGD's stochastic-rounding seed follows its parameter, not the order updates are emitted in:
    a parameter trained under two schemes (other parameters training before it, or not) gets the same
    seed, and every parameter its own. Options: the default optimizer (stochastic rounding, seed 1)."""
    model = int8_model("ds_cnn")

    def seeds(update) -> dict[str, int]:
        graph, ops = _ops(tt.compile(model, update=update))
        sgd = [op for op in ops if op.kind == names.SGD]
        return {graph.tensors[op.inputs[0]].name: schema.decode_blob("SGD", op.custom_options)["seed"] for op in sgd}

    every, biases = seeds("all"), seeds({"bias_last": 3})
    assert len(set(every.values())) == len(every) == 12
    assert len(biases) == 3 and all(every[name] == seed for name, seed in biases.items())

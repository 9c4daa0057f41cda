"""TT_SGD in TFLM against NumPy: the update rule (exact for every rounding, in float32 or, for int8 weights
stepped by int8 gradients with stochastic rounding, in fixed point as the kernel computes), saturation,
partial channel updates, momentum, stochastic rounding statistics, QAS against float SGD, the control bit
and reset(). The parameter starts from a constant through
TT_INIT_VARIABLES, as in a training model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import CONTROL, control, grad_tensors, grad_values
from sgd_reference import sgd_step

from tinytrain_tflm import Interpreter, TFLMError, emit_model
from tinytrain_tflm.backend import schema, schema_generated
from tinytrain_tflm.frontend import ir

UPDATE = control(schema_generated.CONTROL_UPDATE)
TRUNCATE, NEAREST, STOCHASTIC = (
    schema_generated.ROUND_TRUNCATE,
    schema_generated.ROUND_NEAREST,
    schema_generated.ROUND_STOCHASTIC,
)
ARENA = 64 * 1024


@dataclasses.dataclass
class Case:
    """A parameter, its quantization and the shape of its gradient (c_update channels along the axis)."""

    initial: np.ndarray
    scales: np.ndarray
    axis: int
    grad_shape: tuple[int, ...]

    @property
    def quantization(self) -> ir.Quantization:
        return ir.Quantization(self.scales.astype(np.float32), np.zeros(self.scales.size, np.int64), self.axis)

    def channel_scales(self) -> np.ndarray:
        """The scale of every gradient element, float32, broadcast along the axis."""
        c_update = self.grad_shape[self.axis]
        scales = np.resize(self.scales.astype(np.float32), c_update) if self.scales.size == 1 else self.scales[:c_update]
        shape = [1] * len(self.grad_shape)
        shape[self.axis] = c_update
        return scales.astype(np.float32).reshape(shape)

    def rows(self, array: np.ndarray) -> np.ndarray:
        """The parameter or its gradient as [outer, channels, inner] along the quantized axis (tt_sgd_dims)."""
        shape = array.shape
        return array.reshape(int(np.prod(shape[: self.axis])), shape[self.axis], int(np.prod(shape[self.axis + 1 :])))

    def updated(self) -> tuple[slice, ...]:
        """Index of the updated channels in the parameter."""
        index = [slice(None)] * self.initial.ndim
        index[self.axis] = slice(0, self.grad_shape[self.axis])
        return tuple(index)


def int8_case(rng, shape, axis, c_update, per_channel=True) -> Case:
    scales = rng.uniform(0.005, 0.03, shape[axis] if per_channel else 1)
    grad_shape = tuple(c_update if i == axis else n for i, n in enumerate(shape))
    return Case(rng.integers(-127, 128, shape).astype(np.int8), scales, axis, grad_shape)


def bias_case(rng, channels, c_update) -> Case:
    return Case(rng.integers(-20000, 20000, channels).astype(np.int32), rng.uniform(1e-4, 4e-4, channels), 0, (c_update,))


def sgd_options(learning_rate, momentum=0.0, qas=1, rounding=NEAREST, seed=12345) -> bytes:
    return schema.encode_blob("SGD", learning_rate=learning_rate, momentum=momentum, qas=qas, rounding=rounding, seed=seed)


@dataclasses.dataclass
class SgdModel:
    model: bytes
    parameter: int  # tensor indices, for Interpreter.tensor()
    momentum: int | None
    accumulator: int | None = None


LEARNING_RATE = ir.Tensor("learning_rate", (1,), np.dtype(np.float32), is_variable=True)


def sgd_model(
    case: Case, mode: str, options: bytes, momentum: bool = False, accumulator: bool = False, grad_shape=None
) -> SgdModel:
    """TT_INIT_VARIABLES(source -> parameter), then TT_SGD(parameter, grad, momentum, control, learning rate).
    Graph inputs: the gradient (and its scale in int8 mode), control, then the learning rate. grad_shape: that
    of the grad input, if not case.grad_shape (a bias's layer output gradient)."""
    graph = ir.Graph()
    source = ir.Tensor("source", case.initial.shape, case.initial.dtype, case.quantization, case.initial)
    parameter = ir.Tensor("parameter", case.initial.shape, case.initial.dtype, case.quantization, is_variable=True)
    p_source, p = graph.add_tensor(source), graph.add_tensor(parameter)
    grad = [-1 if t is None else graph.add_tensor(t) for t in grad_tensors("grad", grad_shape or case.grad_shape, mode)]
    m = graph.add_tensor(ir.Tensor("momentum", case.grad_shape, np.dtype(np.float32), is_variable=True)) if momentum else -1
    a = graph.add_tensor(ir.Tensor("accumulator", case.grad_shape, np.dtype(np.float32), is_variable=True)) if accumulator else -1
    c, rate = graph.add_tensor(CONTROL), graph.add_tensor(LEARNING_RATE)
    init_options = schema.encode_blob("INIT_VARIABLES", num_pairs=1)
    graph.ops.append(ir.Op(schema_generated.INIT_VARIABLES, [p_source, p], [], custom=True, custom_options=init_options))
    graph.ops.append(ir.Op(schema_generated.SGD, [p, *grad, m, c, rate, a], [], custom=True, custom_options=options))
    graph.inputs = [i for i in grad if i >= 0] + [c, rate]
    return SgdModel(emit_model(graph), p, m if momentum else None, a if accumulator else None)


def round_half_away(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def reference_sgd(case: Case, grads: list[np.ndarray], learning_rate, momentum=0.0, qas=1, rounding=NEAREST) -> np.ndarray:
    """The parameter after one step per gradient, with the kernel's float32 arithmetic."""
    scales = case.channel_scales()
    lr = np.float32(learning_rate)
    factor = lr / scales if qas else lr * scales
    info = np.iinfo(case.initial.dtype)
    low = -127 if case.initial.dtype == np.int8 else info.min
    q = case.initial.astype(np.int64)
    m = np.zeros(case.grad_shape, np.float32)
    for g in grads:
        v = g
        if momentum:
            m = np.float32(momentum) * m + g
            v = m
        delta = -factor * v
        step = np.trunc(delta.astype(np.float64)) if rounding == TRUNCATE else round_half_away(delta)
        q[case.updated()] = np.clip(q[case.updated()] + step.astype(np.int64), low, info.max)
    return q.astype(case.initial.dtype)


def train(
    model: SgdModel, feeds: list[list[np.ndarray]], bits=UPDATE, interpreter: Interpreter | None = None, learning_rate=0.0
) -> Interpreter:
    """Runs one invoke per feed; learning_rate: the learning-rate input (0: the compiled one)."""
    interpreter = interpreter or Interpreter(model.model, ARENA, preserve_all_tensors=True)
    for feed in feeds:
        interpreter.run([*feed, bits, np.array([learning_rate], np.float32)])
    return interpreter


def gradient_steps(rng, case: Case, mode: str, steps: int) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """Feeds and real values of `steps` random gradients."""
    feeds, reals = zip(*(grad_values(rng, case.grad_shape, mode) for _ in range(steps)), strict=True)
    return list(feeds), list(reals)


# (case factory, learning rate with QAS, without QAS): with gradients of about 0.01, integer steps of
# a few to a few tens of quanta either way, so some int8 weights saturate.
LAYOUTS = {
    "conv_per_channel_axis0": (lambda rng: int8_case(rng, (4, 3, 3, 2), 0, 4), 10.0, 5e4),
    "conv_partial_axis0": (lambda rng: int8_case(rng, (4, 3, 3, 2), 0, 2), 10.0, 5e4),
    "depthwise_partial_axis3": (lambda rng: int8_case(rng, (1, 3, 3, 6), 3, 3), 10.0, 5e4),
    "fc_per_tensor": (lambda rng: int8_case(rng, (5, 4), 0, 5, per_channel=False), 10.0, 5e4),
    "fc_per_tensor_partial": (lambda rng: int8_case(rng, (5, 4), 0, 3, per_channel=False), 10.0, 5e4),
    "bias_partial": (lambda rng: bias_case(rng, 6, 4), 0.2, 5e10),
}


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("qas", [1, 0])
@pytest.mark.parametrize("rounding", [TRUNCATE, NEAREST])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_sgd_matches_numpy_exactly(rng, layout, rounding, qas, mode):
    make_case, lr_qas, lr_naive = LAYOUTS[layout]
    case = make_case(rng)
    lr = lr_qas if qas else lr_naive
    model = sgd_model(case, mode, sgd_options(lr, qas=qas, rounding=rounding))
    feeds, reals = gradient_steps(rng, case, mode, steps=2)
    parameter = train(model, feeds).tensor(model.parameter)
    want = reference_sgd(case, reals, lr, qas=qas, rounding=rounding)
    np.testing.assert_array_equal(parameter, want)
    updated = case.updated()
    assert np.count_nonzero(parameter[updated] != case.initial[updated]) > parameter[updated].size // 2  # steps of quanta
    untouched = [slice(None)] * case.initial.ndim
    untouched[case.axis] = slice(case.grad_shape[case.axis], None)
    np.testing.assert_array_equal(parameter[tuple(untouched)], case.initial[tuple(untouched)])


def channel_sums(real: np.ndarray, mode: str) -> np.ndarray:
    """A bias gradient from its layer's output gradient, as tt_bias_grad forms it: int8 levels summed exactly,
    then times the scale; float32 values summed row by row in float32."""
    rows = real.reshape(-1, real.shape[-1])
    if mode == "int8":
        scale = np.float32(np.abs(rows).max() / np.float32(127))  # grad_values' scale, recovered from its levels
        levels = np.round(rows / scale).astype(np.int64)
        return (levels.sum(axis=0).astype(np.float32) * scale).astype(np.float32)
    sums = np.zeros(rows.shape[1], np.float32)
    for row in rows:
        sums = sums + row
    return sums


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("output_grad_shape", [(1, 2, 3, 6), (2, 6)])
def test_a_bias_steps_with_the_channel_sums_of_its_layer_output_gradient(rng, output_grad_shape, mode):
    """The fused bias update (tinytrain_tflm.passes.fusion): the grad input is the layer's output gradient and
    TT_SGD sums it per channel as TT_BIAS_GRAD would, with momentum over two steps."""
    case = bias_case(rng, 6, 6)
    model = sgd_model(case, mode, sgd_options(0.2, momentum=0.5), momentum=True, grad_shape=output_grad_shape)
    feeds, reals = zip(*(grad_values(rng, output_grad_shape, mode) for _ in range(2)), strict=True)
    parameter = train(model, list(feeds)).tensor(model.parameter)
    want = reference_sgd(case, [channel_sums(r, mode) for r in reals], 0.2, momentum=0.5)
    np.testing.assert_array_equal(parameter, want)
    assert np.count_nonzero(parameter != case.initial) >= 4  # steps of quanta


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("rounding", [TRUNCATE, NEAREST, STOCHASTIC])
def test_sgd_saturates_int8_at_127(rounding, mode):
    case = Case(np.array([[120, -120, 0, 127]], np.int8), np.array([0.01]), 0, (1, 4))
    gradient = np.array([[-1.0, 1.0, -100.0, 0.0]], np.float32)  # with lr 0.1 and QAS: +10, -10, +1000, 0 quanta
    # As int8 levels at scale 1: 10 quanta per level, where +1000 passes the largest step (256) the kernel keeps.
    feed = [gradient] if mode == "float32" else [gradient.astype(np.int8), np.array([1.0], np.float32)]
    model = sgd_model(case, mode, sgd_options(0.1, rounding=rounding))
    parameter = train(model, [feed]).tensor(model.parameter)
    np.testing.assert_array_equal(parameter, [[127, -127, 127, 127]])


@pytest.mark.parametrize("qas", [1, 0])
def test_sgd_saturates_int32_at_its_limits(qas):
    limit = np.iinfo(np.int32)
    scale, lr = 1e-4, 0.5
    case = Case(np.array([limit.max - 5, limit.min + 5, 0, 0], np.int32), np.array([scale]), 0, (4,))
    # Steps of +-1e3 quanta at the limits, and of +-1e12 quanta (far beyond int32) from 0.
    steps = np.array([1e3, -1e3, 1e12, -1e12])
    gradient = (-steps * (scale / lr if qas else 1 / (lr * scale))).astype(np.float32)
    model = sgd_model(case, "float32", sgd_options(lr, qas=qas))
    parameter = train(model, [[gradient]]).tensor(model.parameter)
    np.testing.assert_array_equal(parameter, [limit.max, limit.min, limit.max, limit.min])


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_sgd_momentum_over_three_steps(rng, mode):
    case = int8_case(rng, (4, 3, 3, 2), 0, 3)
    model = sgd_model(case, mode, sgd_options(2.0, momentum=0.9), momentum=True)
    feeds, reals = gradient_steps(rng, case, mode, steps=3)
    interpreter = Interpreter(model.model, ARENA, preserve_all_tensors=True)
    for step in range(1, 4):
        train(model, feeds[step - 1 : step], interpreter=interpreter)
        want = reference_sgd(case, reals[:step], 2.0, momentum=0.9)
        np.testing.assert_array_equal(interpreter.tensor(model.parameter), want)
    m = np.zeros(case.grad_shape, np.float32)
    for g in reals:
        m = np.float32(0.9) * m + g
    np.testing.assert_array_equal(interpreter.tensor(model.momentum), m)


def constant_gradient_case(channels_delta: list[float], elements: int) -> tuple[Case, np.ndarray, float]:
    """An int8 [channels, elements] parameter at 0 and a gradient whose QAS step is channels_delta[c] quanta."""
    scales = np.full(len(channels_delta), 0.01)
    lr = 0.5
    gradient = (-np.array(channels_delta)[:, None] * scales[:, None] / lr * np.ones((1, elements))).astype(np.float32)
    case = Case(np.zeros((len(channels_delta), elements), np.int8), scales, 0, gradient.shape)
    return case, gradient, lr


def test_stochastic_rounding_moves_weights_by_a_fraction_of_a_quantum_on_average():
    deltas = [0.3, -1.7, 0.05]
    steps, elements = 20, 400
    case, gradient, lr = constant_gradient_case(deltas, elements)
    model = sgd_model(case, "float32", sgd_options(lr, rounding=STOCHASTIC))
    interpreter = Interpreter(model.model, ARENA, preserve_all_tensors=True)
    previous = case.initial.astype(np.int64)
    for _ in range(steps):
        train(model, [[gradient]], interpreter=interpreter)
        current = interpreter.tensor(model.parameter).astype(np.int64)
        change = current - previous
        for c, delta in enumerate(deltas):  # every change is one of the two integers around the step
            assert set(np.unique(change[c])) <= {np.floor(delta), np.floor(delta) + 1}
        previous = current
    mean_step = (previous / steps).mean(axis=1)
    # Each step is Bernoulli around its floor: the mean over steps * elements has std sqrt(p (1 - p) / n).
    n = steps * elements
    for c, delta in enumerate(deltas):
        p = delta - np.floor(delta)
        assert abs(mean_step[c] - delta) < 5 * np.sqrt(p * (1 - p) / n), (c, mean_step[c])


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_stochastic_sgd_matches_numpy_exactly(rng, layout, mode):
    """Two stochastic steps against tests/sgd_reference.py, the kernel's generator included: in fixed point for
    int8 weights with int8 gradients, in float32 otherwise. Four times the learning rates above: int8 weights
    take up to about 2 quanta per gradient level, so both fixed-point forms (level_scale 1 and above) run."""
    make_case, lr, _ = LAYOUTS[layout]
    case, lr, seed = make_case(rng), 4 * lr, 12345
    model = sgd_model(case, mode, sgd_options(lr, rounding=STOCHASTIC, seed=seed))
    feeds, _ = gradient_steps(rng, case, mode, steps=2)
    parameter = train(model, feeds).tensor(model.parameter)
    want, state = case.rows(case.initial), seed
    for feed in feeds:
        grad_scale = float(feed[1][0]) if mode == "int8" else None
        want, _, state = sgd_step(want, case.scales.astype(np.float32), case.rows(feed[0]), grad_scale, lr, 1, STOCHASTIC, state)
    np.testing.assert_array_equal(parameter, want.reshape(case.initial.shape))
    updated = case.updated()
    assert np.count_nonzero(parameter[updated] != case.initial[updated]) > parameter[updated].size // 2


def test_stochastic_rounding_of_int8_gradient_levels_is_unbiased():
    """The fixed-point update (int8 weights, int8 gradients): every change is one of the two integers around
    level * k quanta, k = -lr / s * grad scale, and their mean over 8,000 draws is level * k (exact, float64)
    within 5 standard deviations. Channel 3's smaller weight scale makes k 1.5 there, the level_scale > 1 form."""
    levels = np.array([127, -100, 1, 1], np.int8)
    scales = np.array([0.01, 0.01, 0.01, 0.01 / 123])
    lr, grad_scale, steps, elements = 0.5, 2.46e-4, 20, 400
    case = Case(np.zeros((4, elements), np.int8), scales, 0, (4, elements))
    feed = [np.repeat(levels[:, None], elements, axis=1), np.array([grad_scale], np.float32)]
    model = sgd_model(case, "int8", sgd_options(lr, rounding=STOCHASTIC))
    interpreter = Interpreter(model.model, ARENA, preserve_all_tensors=True)
    exact = -lr / scales.astype(np.float32).astype(np.float64) * np.float64(np.float32(grad_scale)) * levels
    assert np.all(np.abs(exact) < 2)  # 20 steps stay within int8 from 0
    previous = case.initial.astype(np.int64)
    for _ in range(steps):
        train(model, [feed], interpreter=interpreter)
        current = interpreter.tensor(model.parameter).astype(np.int64)
        for c, delta in enumerate(exact):
            assert set(np.unique(current[c] - previous[c])) <= {np.floor(delta), np.floor(delta) + 1}, c
        previous = current
    mean_step = (previous / steps).mean(axis=1)
    n = steps * elements
    for c, delta in enumerate(exact):
        p = delta - np.floor(delta)
        assert abs(mean_step[c] - delta) < 5 * np.sqrt(p * (1 - p) / n), (c, mean_step[c], delta)


@pytest.mark.parametrize("rounding,moved", [(STOCHASTIC, True), (TRUNCATE, False), (NEAREST, False)])
def test_a_step_of_a_third_of_a_quantum_moves_weights_only_under_stochastic_rounding(rounding, moved):
    case, gradient, lr = constant_gradient_case([0.3], 2000)
    model = sgd_model(case, "float32", sgd_options(lr, rounding=rounding))
    parameter = train(model, [[gradient]]).tensor(model.parameter)
    fraction_moved = np.count_nonzero(parameter) / parameter.size
    if moved:
        assert abs(fraction_moved - 0.3) < 5 * np.sqrt(0.3 * 0.7 / parameter.size)
    else:
        assert fraction_moved == 0


def test_reset_restores_the_parameter_and_restarts_the_random_sequence(rng):
    case = int8_case(rng, (4, 3, 3, 2), 0, 4)
    model = sgd_model(case, "float32", sgd_options(0.2, momentum=0.5, rounding=STOCHASTIC), momentum=True)
    feeds, _ = gradient_steps(rng, case, "float32", steps=3)
    interpreter = train(model, feeds)
    first_run = interpreter.tensor(model.parameter)
    assert np.count_nonzero(first_run != case.initial) > 0
    interpreter.reset()
    train(model, [feeds[0]], bits=control(0), interpreter=interpreter)  # no update: only the copy runs
    np.testing.assert_array_equal(interpreter.tensor(model.parameter), case.initial)
    np.testing.assert_array_equal(interpreter.tensor(model.momentum), 0)
    train(model, feeds, interpreter=interpreter)
    np.testing.assert_array_equal(interpreter.tensor(model.parameter), first_run)


@pytest.mark.parametrize("qas", [1, 0])
def test_one_step_moves_real_weights_like_float_sgd_with_qas_only(rng, qas):
    """QAS: the dequantized weight moves by -lr * g, float SGD's step; without it by -lr * s^2 * g."""
    case = int8_case(rng, (4, 3, 3, 2), 0, 4)
    case.initial[:] = 0  # room for steps of ~20 quanta without saturating
    lr = 0.3
    gradient = (rng.normal(0, 1, case.grad_shape) * case.channel_scales() * 20 / lr).astype(np.float32)
    if not qas:  # the same integer steps need a gradient 1/s^2 larger
        gradient = gradient / case.channel_scales() ** 2
    model = sgd_model(case, "float32", sgd_options(lr, qas=qas, rounding=NEAREST))
    parameter = train(model, [[gradient]]).tensor(model.parameter)
    assert np.abs(parameter).max() < 127
    s = case.channel_scales().astype(np.float64)
    real_change = s * parameter.astype(np.float64)
    float_step = -lr * gradient.astype(np.float64) * (1 if qas else s**2)
    assert np.all(np.abs(real_change - float_step) <= s / 2 * (1 + 1e-5))


@pytest.mark.parametrize("bits", [0, schema_generated.CONTROL_BACKWARD])
def test_sgd_changes_nothing_without_the_update_bit(rng, bits):
    case = int8_case(rng, (4, 3, 3, 2), 0, 4)
    model = sgd_model(case, "float32", sgd_options(2.0, momentum=0.9), momentum=True)
    feeds, _ = gradient_steps(rng, case, "float32", steps=2)
    interpreter = train(model, feeds, bits=control(bits))
    np.testing.assert_array_equal(interpreter.tensor(model.parameter), case.initial)
    np.testing.assert_array_equal(interpreter.tensor(model.momentum), 0)


def per_channel(scales: list[float], axis: int = 0) -> ir.Quantization:
    return ir.Quantization(np.array(scales, np.float32), np.zeros(len(scales), np.int64), axis)


FILTER = ir.Tensor("w", (4, 3), np.dtype(np.int8), per_channel([0.01] * 4), is_variable=True)
BIAS = ir.Tensor("b", (4,), np.dtype(np.int32), per_channel([1e-4] * 4), is_variable=True)


def sgd_only_model(
    parameter=FILTER,
    grad_shape=(4, 3),
    momentum_input: ir.Tensor | None = None,
    learning_rate_input=LEARNING_RATE,
    accumulator_input: ir.Tensor | None = None,
    **options,
) -> bytes:
    """TT_SGD alone, on a float32 gradient: the Prepare checks."""
    graph = ir.Graph()
    p = graph.add_tensor(parameter)
    g = graph.add_tensor(ir.Tensor("grad", grad_shape, np.dtype(np.float32)))
    m = -1 if momentum_input is None else graph.add_tensor(momentum_input)
    c, rate = graph.add_tensor(CONTROL), graph.add_tensor(learning_rate_input)
    a = -1 if accumulator_input is None else graph.add_tensor(accumulator_input)
    blob = sgd_options(**{"learning_rate": 0.1, **options})
    graph.ops.append(ir.Op(schema_generated.SGD, [p, g, -1, m, c, rate, a], [], custom=True, custom_options=blob))
    graph.inputs = [g, c, rate]
    return emit_model(graph)


def momentum_tensor(shape=(4, 3), is_variable=True) -> ir.Tensor:
    return ir.Tensor("m", shape, np.dtype(np.float32), is_variable=is_variable)


@pytest.mark.parametrize(
    "model,message",
    [
        (
            sgd_only_model(dataclasses.replace(FILTER, data=np.zeros((4, 3), np.int8), is_variable=False)),
            "parameter must be a variable tensor",
        ),
        (sgd_only_model(dataclasses.replace(FILTER, dtype=np.dtype(np.float32))), "parameter must be int8 or int32, got float32"),
        (sgd_only_model(dataclasses.replace(FILTER, quantization=None)), "parameter must be affine quantized"),
        (
            sgd_only_model(dataclasses.replace(FILTER, quantization=per_channel([0.01] * 3))),
            r"parameter has 3 scales; it needs 1 or 4 \(its size along quantized_dimension 0\)",
        ),
        (
            sgd_only_model(dataclasses.replace(FILTER, quantization=per_channel([0.01] * 3, axis=1)), grad_shape=(3, 3)),
            "grad must have the parameter's shape except along quantized_dimension 1, where it needs 1 to 3 entries",
        ),
        (
            sgd_only_model(dataclasses.replace(FILTER, quantization=per_channel([0.01], axis=2))),
            "quantized_dimension 2 is outside the parameter's 2 dimensions",
        ),
        (sgd_only_model(grad_shape=(5, 3)), "grad must have the parameter's shape except along quantized_dimension 0, where"),
        (sgd_only_model(grad_shape=(4, 2)), "grad must have the parameter's shape except along quantized_dimension 0, where"),
        (
            sgd_only_model(dataclasses.replace(FILTER, quantization=per_channel([0.01, 0.0, 0.01, 0.01]))),
            "parameter scales must be > 0",
        ),
        (sgd_only_model(learning_rate=0.0), "learning_rate must be > 0, got 0"),
        (sgd_only_model(momentum=1.0), r"momentum must be in \[0, 1\), got 1"),
        (sgd_only_model(momentum=0.5), "momentum 0.5 needs a float32 variable momentum input of grad's shape"),
        (sgd_only_model(momentum_input=momentum_tensor()), "the momentum input must be -1 when momentum is 0"),
        (sgd_only_model(momentum_input=momentum_tensor((4, 2)), momentum=0.5), "momentum 0.5 needs a float32 variable"),
        (sgd_only_model(momentum_input=momentum_tensor(is_variable=False), momentum=0.5), "momentum 0.5 needs a float32"),
        (sgd_only_model(qas=2), "qas must be 0 or 1, got 2"),
        (
            sgd_only_model(rounding=3),
            r"rounding must be ROUND_TRUNCATE \(0\), ROUND_NEAREST \(1\) or ROUND_STOCHASTIC \(2\), got 3",
        ),
        (sgd_only_model(seed=0), r"seed must be nonzero \(xorshift32 stays at 0\)"),
        (
            sgd_only_model(learning_rate_input=dataclasses.replace(LEARNING_RATE, is_variable=False)),
            r"the learning-rate input must be a float32 \[1\] variable tensor",
        ),
        (
            sgd_only_model(learning_rate_input=dataclasses.replace(LEARNING_RATE, shape=(2,))),
            r"the learning-rate input must be a float32 \[1\] variable tensor",
        ),
        (
            sgd_only_model(accumulator_input=momentum_tensor((4, 2))),
            "the accumulator input must be -1 or a float32 variable of grad's shape",
        ),
        (
            sgd_only_model(accumulator_input=momentum_tensor(is_variable=False)),
            "the accumulator input must be -1 or a float32 variable of grad's shape",
        ),
        (
            sgd_only_model(BIAS, grad_shape=(1, 2, 5)),
            "a bias's grad of rank 3 must be its layer's output gradient: rank 2 to 4, last dimension 4",
        ),
        (
            sgd_only_model(BIAS, grad_shape=(1, 4), accumulator_input=momentum_tensor((4,))),
            "a bias updated from its layer's output gradient takes no accumulator",
        ),
    ],
)
def test_sgd_prepare_rejects(model, message):
    with pytest.raises(TFLMError, match=f"TT_SGD: {message}"):
        Interpreter(model, 16 * 1024, check_model=False)


@pytest.mark.parametrize("qas", [1, 0])
def test_learning_rate_input_replaces_the_compiled_one_until_set_to_zero(rng, qas):
    """Step 1 at the input's rate, step 2 at 0 (the compiled rate again), each as NumPy predicts."""
    make_case, lr_qas, lr_naive = LAYOUTS["conv_per_channel_axis0"]
    case = make_case(rng)
    compiled = lr_qas if qas else lr_naive
    model = sgd_model(case, "float32", sgd_options(compiled, qas=qas))
    feeds, reals = gradient_steps(rng, case, "float32", steps=2)
    interpreter = train(model, feeds[:1], learning_rate=compiled / 4)
    after_first = reference_sgd(case, reals[:1], compiled / 4, qas=qas)
    np.testing.assert_array_equal(interpreter.tensor(model.parameter), after_first)
    assert not np.array_equal(after_first, reference_sgd(case, reals[:1], compiled, qas=qas))  # the rate mattered
    train(model, feeds[1:], interpreter=interpreter, learning_rate=0.0)
    want = reference_sgd(dataclasses.replace(case, initial=after_first), reals[1:], compiled, qas=qas)
    np.testing.assert_array_equal(interpreter.tensor(model.parameter), want)


@pytest.mark.parametrize("rate", [-0.5, float("nan"), float("inf")])
def test_learning_rate_input_out_of_range_fails_the_invoke(rng, rate):
    case = int8_case(rng, (4, 3, 3, 2), 0, 4)
    model = sgd_model(case, "float32", sgd_options(0.5))
    feeds, _ = gradient_steps(rng, case, "float32", steps=1)
    with pytest.raises(TFLMError, match=r"TT_SGD: the learning-rate input must be > 0, or 0 for the compiled 0.5; got"):
        train(model, feeds, learning_rate=rate)


ACCUMULATE = control(schema_generated.CONTROL_ACCUMULATE)


@pytest.mark.parametrize("mode", ["float32", "int8"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_accumulated_gradients_update_once_with_their_mean(rng, mode, momentum):
    """Two mini-batches of 3: two accumulating invokes leave the parameter alone, the third steps with the
    float32 mean ((g1 + g2) + g3) / 3, clears the accumulator, and the next mini-batch starts afresh."""
    make_case, lr, _ = LAYOUTS["conv_partial_axis0"]
    case = make_case(rng)
    model = sgd_model(case, mode, sgd_options(lr, momentum=momentum), momentum=momentum > 0, accumulator=True)
    feeds, reals = gradient_steps(rng, case, mode, steps=6)
    interpreter = Interpreter(model.model, ARENA, preserve_all_tensors=True)
    means = []
    for batch in (0, 1):
        first = 3 * batch
        for i in (first, first + 1):
            train(model, feeds[i : i + 1], bits=ACCUMULATE, interpreter=interpreter)
            want = reference_sgd(case, means, lr, momentum=momentum)
            np.testing.assert_array_equal(interpreter.tensor(model.parameter), want)
        np.testing.assert_array_equal(interpreter.tensor(model.accumulator), reals[first] + reals[first + 1])
        train(model, feeds[first + 2 : first + 3], interpreter=interpreter)
        means.append((reals[first] + reals[first + 1] + reals[first + 2]) / np.float32(3))
        np.testing.assert_array_equal(interpreter.tensor(model.parameter), reference_sgd(case, means, lr, momentum=momentum))
        np.testing.assert_array_equal(interpreter.tensor(model.accumulator), 0)


def test_accumulating_without_an_accumulator_fails_the_invoke(rng):
    case = int8_case(rng, (4, 3, 3, 2), 0, 4)
    model = sgd_model(case, "float32", sgd_options(0.5))
    feeds, _ = gradient_steps(rng, case, "float32", steps=1)
    with pytest.raises(TFLMError, match=r"TT_SGD: CONTROL_ACCUMULATE needs an accumulator"):
        train(model, feeds, bits=ACCUMULATE)

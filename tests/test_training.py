"""Learning on device against float fine-tuning in TensorFlow on the digits task, the float edges of a converted
model, and how often int8 gradients need a second pass (the optimizer step itself: tests/test_optimizer.py)."""

from __future__ import annotations

import numpy as np
import pytest

import tinytrain_tflm as tt
from tinytrain_tflm.frontend.convert import keras_to_int8
from tinytrain_tflm.tools import tasks


@pytest.fixture(scope="module")
def transfer():
    task = tasks.digits_new_classes()
    float_model = tasks.pretrained_cnn(task)
    int8 = keras_to_int8(float_model, task.pretrain_x[:200])
    return task, float_model, int8


def _accuracy(trainer: tt.Trainer, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([np.argmax(trainer.predict(sample)) == label for sample, label in zip(x, y, strict=True)]))


def test_on_device_training_learns_new_classes_like_float_finetuning(transfer):
    task, float_model, int8 = transfer
    # The last two layers (conv 2 and the classifier), weights and biases. Int8 weights keep the
    # converter's scales, so their range is fixed: a modest learning rate keeps them off the limits.
    epochs, lr = 3, 0.005
    order = np.concatenate([np.random.default_rng(epoch).permutation(len(task.train_x)) for epoch in range(epochs)])
    # float32 gradients, the reference mode the float fine-tuning is compared with; untiled, TFLM's builtin convs.
    update = {"bias_last": 2, "weights": {"1": 1, "2": 1}}
    options = {"gradient": "float32", "tiles": None, "flash_requantization": False}
    trainer = tt.Trainer(tt.compile(int8, update=update, optimizer=tt.SGD(lr=lr), **options))
    before = _accuracy(trainer, task.test_x, task.test_y)
    for i in order:
        trainer.step(task.train_x[i], int(task.train_y[i]))
    after = _accuracy(trainer, task.test_x, task.test_y)
    assert trainer.accuracy(task.test_x, task.test_y) == after
    float_after = tasks.float_finetune_accuracy(float_model, task, trainable_layers=2, lr=lr, order=order)
    print(f"int8 on device: {before:.1%} -> {after:.1%}; float fine-tuning of the same layers: {float_after:.1%}")
    assert after >= before + 0.2
    assert after >= float_after - 0.02


def _convert(keras_model, samples, input_type, output_type) -> bytes:
    import tensorflow as tf

    def representative_dataset():
        for x in samples:
            yield [x[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type, converter.inference_output_type = input_type, output_type
    return converter.convert()


@pytest.mark.parametrize(("input_type", "output_type"), [("float32", "int8"), ("int8", "float32"), ("float32", "float32")])
def test_float_edges_are_stripped_for_training_and_restored_on_export(transfer, input_type, output_type):
    """The converter's float input (QUANTIZE) and output (DEQUANTIZE): training runs between them exactly as on the
    all-int8 conversion of the same Keras model, and the export takes and returns what the user's model did."""
    import tensorflow as tf

    task, float_model, _ = transfer
    samples = task.pretrain_x[:100]
    model = _convert(float_model, samples, getattr(tf, input_type), getattr(tf, output_type))
    int8 = _convert(float_model, samples, tf.int8, tf.int8)
    trainers = [tt.Trainer(tt.compile(m, update="last", optimizer=tt.SGD(lr=0.005))) for m in (model, int8)]
    assert trainers[0].input.dtype == np.int8  # the sample is quantized on the host, 1 byte per value in the arena
    for i in range(20):
        assert trainers[0].step(task.train_x[i], int(task.train_y[i])) == trainers[1].step(task.train_x[i], int(task.train_y[i]))
    assert all(np.array_equal(trainers[0].weights()[k], v) for k, v in trainers[1].weights().items())
    exported, exported_int8 = (tt.read_graph(t.export()) for t in trainers)
    assert [exported.tensors[t].dtype.name for t in exported.inputs + exported.outputs] == [input_type, output_type]
    # The exported model in TFLM: its float output is the int8 model's output dequantized.
    run = [tt.Interpreter(tt.emit_model(g), 1 << 16) for g in (exported, exported_int8)]
    int8_in = exported_int8.tensors[exported_int8.inputs[0]].quantization
    int8_out = exported_int8.tensors[exported_int8.outputs[0]].quantization
    for x in task.test_x[:10]:
        quantized = int8_in.quantize(x[None], np.int8)
        expected = run[1].run([quantized])[0]
        got = run[0].run([x[None].astype(np.float32) if input_type == "float32" else quantized])[0]
        assert np.allclose(got, int8_out.dequantize(expected) if output_type == "float32" else expected)


def test_uint8_output_gets_a_hint(transfer):
    import tensorflow as tf

    task, float_model, _ = transfer
    model = _convert(float_model, task.pretrain_x[:100], tf.int8, tf.uint8)
    with pytest.raises(tt.TinyTrainError, match="output is uint8.*inference_output_type=tf.int8"):
        tt.compile(model)


def test_int8_gradients_mostly_take_one_pass(transfer):
    """Delayed scaling (kernels/core/common/grad_io.h) on the digits task: the first step writes every int8
    gradient in two passes (no history yet) but the classifier's filter gradient, whose max|g| is known before
    its one pass at batch 1 (an outer product: Conv2dFilterGradMaxAbs in kernels/core/common/layer_grad_kernels.h);
    over the next 100 steps the smoothed gain predicts the scale well enough that fewer than 15% of the writes
    take a second pass (2% measured with gains against the exact incoming scale; 7% against its written scale
    and 28% with the last step's gain alone and a one-bit window, both measured with six histories, before the
    bias fusion).
    Trainer.second_passes() counts them, and reset() zeroes the count. The four int8 gradients with a history:
    the classifier's input and filter gradients, conv 2's output and filter gradients (the biases' gradients are
    summed in their update, so they have none)."""
    task, _, int8 = transfer
    update = {"bias_last": 2, "weights": {"1": 1, "2": 1}}
    options = {"gradient": "int8", "tiles": None, "flash_requantization": False}
    trainer = tt.Trainer(tt.compile(int8, update=update, optimizer=tt.SGD(lr=0.005), **options))
    assert trainer.second_passes() == (0, 4)
    trainer.step(task.train_x[0], int(task.train_y[0]))
    first_step = 3
    assert trainer.second_passes() == (first_step, 4)
    for i in range(1, 101):
        trainer.step(task.train_x[i], int(task.train_y[i]))
    second, histories = trainer.second_passes()
    assert (second - first_step) / (100 * histories) < 0.15
    trainer.reset()
    assert trainer.second_passes() == (0, 4)

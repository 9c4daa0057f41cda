"""Keras -> int8 .tflite with the TensorFlow converter (full-integer quantization).

What users run before tinytrain: kept here so the demo, tests and benchmarks
convert exactly as a user's script would.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

import numpy as np

from ..capture import capture_fds
from ..errors import TinyTrainError


def tensorflow():
    """The tensorflow module. Its C++ start-up logs to stderr whatever TF_CPP_MIN_LOG_LEVEL says (absl's
    "before InitializeLog" warning and the CUDA probe, twice): the import runs with stderr captured, and the
    capture is shown only if the import fails."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with capture_fds(2) as log:
        try:
            import tensorflow as tf
        except ImportError as error:
            failure = error
        else:
            return tf
    raise TinyTrainError(f"cannot import TensorFlow ({failure}); pip install tensorflow; its log: {log.text[-300:]!r}")


def keras_to_int8(model, representative_inputs: Iterable[np.ndarray]) -> bytes:
    """Converts a float Keras model to an int8 TFLite model with int8 input and output."""
    tf = tensorflow()

    samples = [np.asarray(x, np.float32) for x in representative_inputs]

    def representative_dataset():
        for x in samples:
            yield [x[None, ...]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # The converter prints pages of progress to stdout and stderr: keep them
    # out of the user's way unless the conversion fails.
    with capture_fds(1, 2) as log:
        try:
            return converter.convert()
        except Exception as error:  # the converter raises many types; all mean "could not convert"
            failure = error
    raise TinyTrainError(f"TensorFlow could not convert the model to int8: {failure}; converter log: {log.text[-500:]!r}")

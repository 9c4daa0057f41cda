"""tinytrain-tflm: on-device training of int8 models inside TensorFlow Lite Micro.

Pipeline, one module per stage: read (.tflite -> IR) -> ir -> loss/autodiff ->
emit (IR -> .tflite) -> runtime (TFLM x86 reference runtime).
"""

from .emit import emit_model
from .errors import TFLMError, TinyTrainError
from .ir import Graph, Op, Quantization, Tensor
from .loss import attach_loss
from .read import read_graph
from .runtime import ArenaReport, Interpreter, minimum_arena_size

__version__ = "0.1.0"

__all__ = [
    "ArenaReport",
    "Graph",
    "Interpreter",
    "Op",
    "Quantization",
    "TFLMError",
    "Tensor",
    "TinyTrainError",
    "attach_loss",
    "emit_model",
    "minimum_arena_size",
    "read_graph",
]

"""tinytrain-tflm: on-device training of int8 models inside TensorFlow Lite Micro.

Pipeline, one module per stage: read (.tflite -> IR) -> ir -> scheme (what
trains) -> loss -> autodiff (backward, 1-bit masks) -> optimizer -> compiler
(assembles the training model) -> schedule and memory (op order, the arena plan
with overlapping buffers) -> emit (IR -> .tflite) -> runtime / trainer (TFLM
x86 reference runtime, export).
"""

from .compiler import TrainingModel, compile
from .emit import emit_model
from .errors import TFLMError, TinyTrainError
from .ir import Graph, Op, Quantization, Tensor
from .loss import attach_loss
from .optimizer import SGD
from .read import read_graph
from .runtime import ArenaReport, Interpreter, minimum_arena_size
from .scheme import UpdateScheme
from .trainer import Trainer

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "ArenaReport",
    "Graph",
    "Interpreter",
    "Op",
    "Quantization",
    "TFLMError",
    "Tensor",
    "TinyTrainError",
    "Trainer",
    "TrainingModel",
    "UpdateScheme",
    "attach_loss",
    "compile",
    "emit_model",
    "minimum_arena_size",
    "read_graph",
]

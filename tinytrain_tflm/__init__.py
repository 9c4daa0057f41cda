"""tinytrain-tflm: on-device training of int8 models inside TensorFlow Lite Micro.

Pipeline, one subpackage per stage (ARCHITECTURE.md): frontend (.tflite -> IR) -> passes (what
trains, tiling, loss, autodiff, optimizer, schedule, overlaps), assembled by compiler with the
user's options (options) for a device (target) -> plan (the arena) -> backend (IR -> .tflite) ->
runtime (TFLM on the host, trainer) and firmware (C array, Arduino, emulated Cortex-M); tools
(search, tasks, cli) sit on top.
"""

from .backend.emit import emit_model
from .compiler import TrainingModel, compile
from .errors import TFLMError, TinyTrainError
from .frontend.ir import Graph, Op, Quantization, Tensor
from .frontend.read import read_graph
from .passes.loss import attach_loss
from .passes.optimizer import SGD
from .passes.scheme import UpdateScheme
from .runtime import checkpoint
from .runtime.interpreter import ArenaReport, Interpreter, minimum_arena_size
from .runtime.trainer import Trainer, scheduled_learning_rate
from .tools.layers import from_keras

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
    "checkpoint",
    "compile",
    "emit_model",
    "from_keras",
    "minimum_arena_size",
    "read_graph",
    "scheduled_learning_rate",
]

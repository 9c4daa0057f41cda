"""The one error type users see: a single line naming the problem."""


class TinyTrainError(Exception):
    """A bad model, option, input or environment, described in one line."""


class TFLMError(TinyTrainError):
    """The TFLM runtime refused or failed; the message carries TFLM's own log."""

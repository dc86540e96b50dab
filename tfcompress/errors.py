"""The one error family tfcompress raises for problems the user can fix.

Every `TfcompressError` carries a one-line message (what is wrong, naming the
file / layer / op) and a hint (what to do). The CLI prints both and exits with
code 2, without a traceback; anything else is a bug in tfcompress.
"""

from __future__ import annotations


class TfcompressError(Exception):
    """A problem with the user's input or environment, with a fix to suggest."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ModelLoadError(TfcompressError):
    """The model file is missing, unreadable, not a model, or unsafe to load."""


class BridgeError(ModelLoadError):
    """A Keras 3 layer that cannot be rebuilt in tf_keras (names layer and class)."""

    def __init__(self, layer_name: str, class_name: str, reason: str, hint: str = "") -> None:
        super().__init__(
            f"cannot bridge layer '{layer_name}' ({class_name}) from Keras 3 to tf_keras: {reason}",
            hint or "replace the layer with a built-in Keras layer, or pass custom_objects for it",
        )
        self.layer_name = layer_name
        self.class_name = class_name


class DataError(TfcompressError):
    """Calibration / verification data that cannot be used with the model."""


class ConversionError(TfcompressError):
    """The TFLite converter failed, or the result breaks what the mode promises."""


class OutputError(TfcompressError):
    """The output path cannot be written."""


class RecipeError(TfcompressError):
    """A recipe file that does not validate (message carries file:line)."""

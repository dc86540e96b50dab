"""The ONLY module that knows about tf_keras (Keras 2) vs Keras 3.

TF-MOT works only with Keras 2 (`tf_keras`) and wants `TF_USE_LEGACY_KERAS=1`
set before TensorFlow is first imported; Keras 3 is what most users' models
are written in. This module sets the flag, imports TensorFlow, `tf_keras` and
`keras` (3), and every other module reaches Keras through it:

    from tfcompress.keras_compat import tf, tf_keras, keras3

If the user imported TensorFlow before tfcompress (so `tf.keras` is Keras 3),
everything here still works: we never go through `tf.keras`, we import
`tf_keras` directly, and TF-MOT does the same. `LEGACY_FLAG_WAS_LATE` records
that case so diagnostics can mention it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

LEGACY_FLAG_WAS_LATE: bool = "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"

from tfcompress.quiet import captured_output  # noqa: E402

with captured_output() as _import_log:  # absl / oneDNN / CUDA-probe chatter at import
    try:
        import tensorflow as tf  # noqa: E402
        import tf_keras  # noqa: E402
        import keras as keras3  # noqa: E402

        tf.config.list_physical_devices()  # device probing (cuInit errors on CPU machines) happens here, quietly
    except ImportError as _e:
        _import_error: ImportError | None = _e
    else:
        _import_error = None
if _import_error is not None:
    sys.stderr.write(_import_log.text)
    raise _import_error

tf.get_logger().setLevel("ERROR")

__all__ = [
    "tf",
    "tf_keras",
    "keras3",
    "LEGACY_FLAG_WAS_LATE",
    "is_keras3_model",
    "is_tf_keras_model",
    "keras_flavor",
]


def is_keras3_model(obj: Any) -> bool:
    """True for a Keras 3 `keras.Model` (or layer)."""
    return isinstance(obj, keras3.layers.Layer)


def is_tf_keras_model(obj: Any) -> bool:
    """True for a tf_keras (Keras 2) model or layer."""
    return isinstance(obj, tf_keras.layers.Layer)


def keras_flavor(obj: Any) -> str:
    """'keras3', 'tf_keras' or 'other' for an in-memory object."""
    if is_keras3_model(obj):
        return "keras3"
    if is_tf_keras_model(obj):
        return "tf_keras"
    return "other"


def versions() -> dict[str, str]:
    """Versions of the stack, for sidecars and reports."""
    return {
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "keras": keras3.__version__,
    }


def tflite_quantizer() -> Any:
    """TensorFlow Lite's quantize step on a calibrated model (`mlir_quantize`), for calibrate-once / quantize-many.

    Not in `tf.lite`'s public API; TensorFlow's own QuantizationDebugger is built on it.
    """
    from tensorflow.lite.python import convert

    return convert.mlir_quantize


def parse_keras_metadata(data: bytes) -> list[tuple[str, str]]:
    """(node path, metadata JSON) per node of a tf_keras SavedModel's `keras_metadata.pb` (a `SavedMetadata`
    protobuf), parsed by the protobuf class tf_keras' own loader uses. Raises protobuf's DecodeError if damaged."""
    from tf_keras.protobuf import saved_metadata_pb2

    proto = saved_metadata_pb2.SavedMetadata()
    proto.ParseFromString(data)
    return [(node.node_path, node.metadata) for node in proto.nodes]


def tf_keras_safe_mode(safe_mode: bool) -> Any:
    """tf_keras' safe-mode switch (a context manager) for its loaders that take no `safe_mode` (.h5, SavedModel):
    inside it, a tf_keras Lambda refuses to load Python bytecode."""
    from tf_keras.src.saving import serialization_lib

    return serialization_lib.SafeModeScope(safe_mode)

"""Keras 3 activations that tf_keras lacks or defines differently, as TensorFlow functions.

They are registered as "tfcompress>keras3_<name>", so a bridged model saved with
them reloads in tf_keras once this module is imported.
"""

from __future__ import annotations

from typing import Any, Callable

from tfcompress.keras_compat import tf, tf_keras

__all__ = ["KERAS3_ACTIVATIONS"]


def _hard_sigmoid(x: Any) -> Any:
    return tf.nn.relu6(x + 3.0) / 6.0


def _hard_silu(x: Any) -> Any:
    return x * tf.nn.relu6(x + 3.0) / 6.0


def _celu(x: Any) -> Any:
    return tf.nn.relu(x) + tf.minimum(0.0, tf.math.expm1(x))


def _glu(x: Any) -> Any:
    a, b = tf.split(x, 2, axis=-1)
    return a * tf.sigmoid(b)


def _hard_shrink(x: Any) -> Any:
    return tf.where(tf.abs(x) > 0.5, x, tf.zeros_like(x))


def _hard_tanh(x: Any) -> Any:
    return tf.clip_by_value(x, -1.0, 1.0)


def _soft_shrink(x: Any) -> Any:
    return tf.where(x > 0.5, x - 0.5, tf.where(x < -0.5, x + 0.5, tf.zeros_like(x)))


def _sparse_plus(x: Any) -> Any:
    return tf.where(x <= -1.0, tf.zeros_like(x), tf.where(x >= 1.0, x, 0.25 * tf.square(x + 1.0)))


def _sparse_sigmoid(x: Any) -> Any:
    return tf.where(x <= -1.0, tf.zeros_like(x), tf.where(x >= 1.0, tf.ones_like(x), 0.5 * (x + 1.0)))


def _squareplus(x: Any) -> Any:
    return 0.5 * (x + tf.sqrt(tf.square(x) + 4.0))


def _tanh_shrink(x: Any) -> Any:
    return x - tf.tanh(x)


def _register_activations(table: dict[str, Callable[[Any], Any]]) -> dict[str, Callable[[Any], Any]]:
    """Name each function keras3_<name> and register it for tf_keras (de)serialization."""
    registered = {}
    for name, fn in table.items():
        fn.__name__ = fn.__qualname__ = f"keras3_{name}"
        registered[name] = tf_keras.saving.register_keras_serializable(package="tfcompress")(fn)
    return registered


# Keras 3 activation name -> TF implementation of the Keras 3 definition
# (default parameters, as used when the activation is given by name).
KERAS3_ACTIVATIONS: dict[str, Callable[[Any], Any]] = _register_activations(
    {
        "hard_sigmoid": _hard_sigmoid,  # tf_keras: clip(0.2x + 0.5); Keras 3: relu6(x + 3) / 6
        "hard_silu": _hard_silu,
        "celu": _celu,
        "glu": _glu,
        "hard_shrink": _hard_shrink,
        "hard_tanh": _hard_tanh,
        "log_sigmoid": tf.math.log_sigmoid,
        "soft_shrink": _soft_shrink,
        "sparse_plus": _sparse_plus,
        "sparse_sigmoid": _sparse_sigmoid,
        "squareplus": _squareplus,
        "tanh_shrink": _tanh_shrink,
    }
)
# "hard_swish" is an alias: keep one function object with one registered name.
KERAS3_ACTIVATIONS["hard_swish"] = KERAS3_ACTIVATIONS["hard_silu"]

"""Keras 3 op nodes (`keras.ops` calls, tensor operators) replayed as TensorFlow ops on tf_keras tensors.

Keras 3 records `x * 0.5`, `keras.ops.mean(x, axis=1)` or `x[:, 0]` applied to
symbolic tensors as graph nodes whose operation is a `keras.src.ops` Operation,
not a Layer (MobileNetV3's `ReLU(6.0)(x + 3.0) * (1.0 / 6.0)` is two of them).
`replay_op` applies the TensorFlow op with the Keras 3 definition to the tf_keras
tensors instead. tf_keras holds each as a TFOpLambda layer (SlicingOpLambda for
`x[...]`), the same layer it makes for `tf.math.add(x, 1.0)` in a tf_keras model:
TF-MOT pruning / clustering pass it through, QAT leaves it float, the converter
lowers it like any TF op, and a tf_keras reload rebuilds it from its config.

Each layer is named after the Keras 3 op ("multiply_8"); a composite op (e.g.
`hard_silu` = x * relu6(x + 3) / 6) names its inner steps "<op>.<step>".
Operands follow Keras 3 type promotion: a tensor of another dtype is cast to the
node's output dtype, a constant (Python number, NumPy array, Keras 3 tensor or
variable) becomes a NumPy array of that dtype, stored in the layer's config.

`OP_RULES` maps the Keras 3 op class name to its rule; a rule takes the same
arguments as that op's `call`. An op without a rule raises BridgeError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tfcompress.errors import BridgeError
from tfcompress.keras_compat import keras3, tf_keras

__all__ = ["OP_RULES", "is_keras3_op", "replay_op"]

_UNMAPPED_HINT = (
    "express it with built-in layers (Add, Multiply, Activation, Reshape, ...), or as a custom layer class "
    "passed in custom_objects; the bridge maps these keras.ops (tensor operators and x[...] included): {ops}"
)


class _Unsupported(Exception):
    """A mapped op called with an argument its TensorFlow twin cannot take (the reason)."""


def is_keras3_op(operation: Any) -> bool:
    """True for a Keras 3 graph operation that is not a layer (a `keras.ops` call or tensor operator)."""
    return isinstance(operation, keras3.Operation) and not isinstance(operation, keras3.layers.Layer)


def _is_tensor(value: Any) -> bool:
    """A tf_keras symbolic tensor (anything else is a constant operand)."""
    try:
        return bool(tf_keras.backend.is_keras_tensor(value))
    except ValueError:  # not a tensor type at all
        return False


@dataclass
class _Emitter:
    """Creates the TFOpLambda layers of one Keras 3 op node, with the names and dtypes it needs."""

    op: Any
    dtype: str  # the Keras 3 node's output dtype
    names: set[str]  # layer names taken in the tf_keras model being built

    def _name(self, step: str | None) -> str:
        base = self.op.name if step is None else f"{self.op.name}.{step}"
        name, i = base, 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def emit(self, symbol: str, *args: Any, step: str | None = None, slicing: bool = False, **kwargs: Any) -> Any:
        """Apply TF symbol `symbol` ("math.add") as a named tf_keras op layer; `step` names an inner step."""
        layer = tf_keras.layers.deserialize(
            {
                "class_name": "SlicingOpLambda" if slicing else "TFOpLambda",
                "config": {"name": self._name(step), "function": symbol},
            }
        )
        return layer(*args, **kwargs)

    def operand(self, value: Any, dtype: str | None = None) -> Any:
        """A tensor in `dtype` (default: the output dtype; cast where Keras 3 promotes), or a constant of it."""
        dtype = dtype or self.dtype
        if _is_tensor(value):
            if value.dtype.name == dtype:
                return value
            return self.emit("cast", value, dtype=dtype, step="cast")
        try:
            return np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise _Unsupported(f"constant operand of type {type(value).__name__} is not a number or array") from exc


# ------------------------------------------------------------------ rules


def _elementwise(symbol: str) -> Callable[..., Any]:
    """An element-wise op of any arity (operands broadcast as in NumPy / TF)."""

    def rule(e: _Emitter, *operands: Any) -> Any:
        return e.emit(symbol, *(e.operand(x) for x in operands))

    return rule


def _comparison(symbol: str) -> Callable[..., Any]:
    """An element-wise comparison: operands promoted to their common Keras 3 dtype, bool result."""

    def rule(e: _Emitter, x1: Any, x2: Any) -> Any:
        dtype = keras3.backend.result_type(*(x.dtype.name if _is_tensor(x) else _constant_type(x) for x in (x1, x2)))
        return e.emit(symbol, e.operand(x1, dtype), e.operand(x2, dtype))

    return rule


def _constant_type(value: Any) -> Any:
    """What Keras 3 type promotion sees for a constant: Python scalars stay weak types."""
    if isinstance(value, (bool, int, float)):
        return type(value)
    return keras3.backend.standardize_dtype(np.asarray(value).dtype)


def _where(e: _Emitter, condition: Any, x1: Any = None, x2: Any = None) -> Any:
    if x1 is None or x2 is None:
        raise _Unsupported("where(condition) without x1 / x2 (the indices form) has a data-dependent shape")
    return e.emit("where", e.operand(condition, "bool"), e.operand(x1), e.operand(x2))


def _reduction(symbol: str) -> Callable[..., Any]:
    """mean / sum / max / min over `op.axis` (None: all axes) with `op.keepdims`."""

    def rule(e: _Emitter, x: Any) -> Any:
        if getattr(e.op, "initial", None) is not None:
            raise _Unsupported("initial= has no TensorFlow reduction equivalent")
        axis = e.op.axis
        axis = list(axis) if isinstance(axis, (list, tuple)) else axis
        return e.emit(symbol, e.operand(x), axis=axis, keepdims=bool(e.op.keepdims))

    return rule


def _along_axis(symbol: str) -> Callable[..., Any]:
    """softmax / log_softmax along one axis."""

    def rule(e: _Emitter, x: Any) -> Any:
        if not isinstance(e.op.axis, int):
            raise _Unsupported(f"axis={e.op.axis!r}: only a single integer axis is mapped")
        return e.emit(symbol, e.operand(x), axis=e.op.axis)

    return rule


def _hard_sigmoid(e: _Emitter, x: Any, step: str | None = None) -> Any:
    """Keras 3's definition: relu6(x + 3) / 6 (tf_keras's own hard_sigmoid differs)."""
    prefix = f"{step}." if step else ""
    shifted = e.emit("math.add", e.operand(x), e.operand(3.0), step=f"{prefix}add")
    return e.emit("math.divide", e.emit("nn.relu6", shifted, step=f"{prefix}relu6"), e.operand(6.0), step=step)


def _hard_silu(e: _Emitter, x: Any) -> Any:
    x = e.operand(x)
    return e.emit("math.multiply", x, _hard_sigmoid(e, x, step="hard_sigmoid"))


def _leaky_relu(e: _Emitter, x: Any) -> Any:
    return e.emit("nn.leaky_relu", e.operand(x), alpha=float(e.op.negative_slope))


def _elu(e: _Emitter, x: Any) -> Any:
    if float(e.op.alpha) != 1.0:
        raise _Unsupported(f"alpha={e.op.alpha} (tf.nn.elu has alpha 1 only)")
    return e.emit("nn.elu", e.operand(x))


def _gelu(e: _Emitter, x: Any) -> Any:
    return e.emit("nn.gelu", e.operand(x), approximate=bool(e.op.approximate))


def _clip(e: _Emitter, x: Any) -> Any:
    return e.emit("clip_by_value", e.operand(x), e.operand(e.op.x_min), e.operand(e.op.x_max))


def _cast(e: _Emitter, x: Any) -> Any:
    return e.emit("cast", x, dtype=keras3.backend.standardize_dtype(e.op.dtype))


def _matmul(e: _Emitter, x1: Any, x2: Any) -> Any:
    a, b = e.operand(x1), e.operand(x2)
    if min(len(a.shape), len(b.shape)) < 2:
        raise _Unsupported("a 1-D operand (NumPy vector semantics); tf.linalg.matmul needs rank >= 2")
    return e.emit("linalg.matmul", a, b)


def _reshape(e: _Emitter, x: Any) -> Any:
    shape = e.op.newshape if isinstance(e.op.newshape, (list, tuple)) else [e.op.newshape]
    return e.emit("reshape", x, shape=[-1 if d is None else int(d) for d in shape])


def _transpose(e: _Emitter, x: Any) -> Any:
    axes = e.op.axes
    return e.emit("transpose", x, perm=None if axes is None else [int(a) for a in axes])


def _concatenate(e: _Emitter, xs: Any) -> Any:
    return e.emit("concat", [e.operand(x) for x in xs], axis=int(e.op.axis))


def _stack(e: _Emitter, x: Any) -> Any:
    return e.emit("stack", [e.operand(t) for t in x], axis=int(e.op.axis))


def _expand_dims(e: _Emitter, x: Any) -> Any:
    axes = e.op.axis if isinstance(e.op.axis, (list, tuple)) else [e.op.axis]
    rank = len(x.shape) + len(axes)
    ordered = sorted(a % rank for a in axes)  # inserting in increasing order keeps each axis where NumPy puts it
    for i, axis in enumerate(ordered):
        last = i == len(ordered) - 1
        x = e.emit("expand_dims", x, axis=axis, step=None if last else f"expand_dims_{i}")
    return x


def _squeeze(e: _Emitter, x: Any) -> Any:
    axis = e.op.axis
    axis = None if axis is None else [int(a) for a in (axis if isinstance(axis, (list, tuple)) else [axis])]
    return e.emit("squeeze", x, axis=axis)


def _slice_key(x: Any, key: Any) -> list[Any]:
    """A NumPy-style index as the JSON-serializable key SlicingOpLambda stores (Ellipsis spelled out)."""
    items = list(key) if isinstance(key, (list, tuple)) else [key]
    out: list[Any] = []
    for item in items:
        if item is None or item is Ellipsis:
            out.append(item)
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            out.append(int(item))
        elif isinstance(item, slice) and all(
            v is None or isinstance(v, (int, np.integer)) for v in (item.start, item.stop, item.step)
        ):
            out.append({k: None if v is None else int(v) for k, v in
                        (("start", item.start), ("stop", item.stop), ("step", item.step))})
        else:
            raise _Unsupported(f"index {item!r}: only integers, constant slices, None and ... are mapped")
    if Ellipsis in out:  # the .keras format cannot store Ellipsis: replace it by the full slices it stands for
        at = out.index(Ellipsis)
        consumed = sum(1 for item in out if item is not None and item is not Ellipsis)
        full = {"start": None, "stop": None, "step": None}
        out[at:at + 1] = [dict(full) for _ in range(len(x.shape) - consumed)]
    return out


def _get_item(e: _Emitter, x: Any, key: Any) -> Any:
    return e.emit("__operators__.getitem", x, _slice_key(x, key), slicing=True)


# Keras 3 op class name (keras.src.ops.*) -> rule taking the arguments of that op's call().
OP_RULES: dict[str, Callable[..., Any]] = {
    # arithmetic (tensor operators included: + - * / @ ** unary -)
    "Add": _elementwise("math.add"),
    "Subtract": _elementwise("math.subtract"),
    "Multiply": _elementwise("math.multiply"),
    "Divide": _elementwise("math.divide"),
    "TrueDivide": _elementwise("math.divide"),
    "Power": _elementwise("math.pow"),
    "Maximum": _elementwise("math.maximum"),
    "Minimum": _elementwise("math.minimum"),
    "Negative": _elementwise("math.negative"),
    "Absolute": _elementwise("math.abs"),
    "Abs": _elementwise("math.abs"),
    "Matmul": _matmul,
    "Clip": _clip,
    "Greater": _comparison("math.greater"),
    "GreaterEqual": _comparison("math.greater_equal"),
    "Less": _comparison("math.less"),
    "LessEqual": _comparison("math.less_equal"),
    "Equal": _comparison("math.equal"),
    "NotEqual": _comparison("math.not_equal"),
    "Where": _where,
    # element-wise math
    "Sqrt": _elementwise("math.sqrt"),
    "Square": _elementwise("math.square"),
    "Rsqrt": _elementwise("math.rsqrt"),
    "Exp": _elementwise("math.exp"),
    "Log": _elementwise("math.log"),
    "Erf": _elementwise("math.erf"),
    "Tanh": _elementwise("math.tanh"),
    # activations as ops
    "Relu": _elementwise("nn.relu"),
    "Relu6": _elementwise("nn.relu6"),
    "Sigmoid": _elementwise("math.sigmoid"),
    "Softplus": _elementwise("math.softplus"),
    "Silu": _elementwise("nn.silu"),
    "HardSigmoid": _hard_sigmoid,
    "HardSilu": _hard_silu,
    "LeakyRelu": _leaky_relu,
    "Elu": _elu,
    "Gelu": _gelu,
    "Softmax": _along_axis("nn.softmax"),
    "LogSoftmax": _along_axis("nn.log_softmax"),
    # reductions
    "Mean": _reduction("math.reduce_mean"),
    "Sum": _reduction("math.reduce_sum"),
    "Max": _reduction("math.reduce_max"),
    "Min": _reduction("math.reduce_min"),
    # shapes and types
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Concatenate": _concatenate,
    "Stack": _stack,
    "ExpandDims": _expand_dims,
    "Squeeze": _squeeze,
    "GetItem": _get_item,
    "Cast": _cast,
}


# ------------------------------------------------------------------ replay


def _snake(class_name: str) -> str:
    """'HardSilu' -> 'hard_silu', the keras.ops spelling of an op class."""
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(class_name))


def _op_error(op: Any, reason: str, hint: str = "") -> BridgeError:
    return BridgeError(op.name, f"keras op {type(op).__name__}", reason, hint=hint)


def _check_output(op: Any, expected: Any, actual: Any) -> None:
    """The TF op must produce what Keras 3 recorded: same rank, dtype and known dimensions."""
    want, got = tuple(expected.shape), tuple(actual.shape)
    same_dims = len(want) == len(got) and all(w is None or g is None or w == g for w, g in zip(want, got))
    dtype = keras3.backend.standardize_dtype(expected.dtype)
    if not same_dims or actual.dtype.name != dtype:
        raise _op_error(op, f"the TensorFlow op gives {got} {actual.dtype.name}, Keras 3 recorded {want} {dtype}")


def replay_op(node: Any, args: tuple[Any, ...], kwargs: dict[str, Any], names: set[str]) -> Any:
    """Apply a Keras 3 op node's TensorFlow twin to tf_keras tensors.

    Args:
        node: the Keras 3 node (its operation is a `keras.src.ops` Operation).
        args, kwargs: the node's call arguments with tf_keras tensors filled in.
        names: layer names already taken in the tf_keras model (updated).

    Returns:
        The tf_keras output tensor.

    Raises:
        BridgeError: the op has no mapping, takes an argument its TF twin cannot,
            or the TF op disagrees with the shape / dtype Keras 3 recorded.
    """
    op = node.operation
    cls = type(op).__name__
    rule = OP_RULES.get(cls) if type(op).__module__.startswith("keras.src.ops.") else None
    if rule is None:
        where = "a custom Keras 3 Operation" if not type(op).__module__.startswith("keras.") else "Keras 3 op"
        raise _op_error(
            op, f"{where} '{cls}' applied to symbolic tensors has no TensorFlow mapping in the bridge",
            hint=_UNMAPPED_HINT.format(ops=", ".join(sorted({_snake(name) for name in OP_RULES}))),
        )
    if len(node.outputs) != 1:
        raise _op_error(op, f"{len(node.outputs)} outputs; only single-output ops are mapped")
    emitter = _Emitter(op, keras3.backend.standardize_dtype(node.outputs[0].dtype), names)
    try:
        output = rule(emitter, *args, **kwargs)
    except _Unsupported as exc:
        raise _op_error(op, f"{exc}", hint="rewrite this op with supported arguments or built-in layers") from None
    except BridgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - TF / tf_keras reject bad shapes and dtypes with many types
        raise _op_error(op, f"TensorFlow rejected the mapped op: {exc}") from exc
    _check_output(op, node.outputs[0], output)
    return output

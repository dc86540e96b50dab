"""The loaded model as the user gave it: `SourceModel` (shapes, layer names, inference) and `LayerRef`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from tfcompress.errors import ModelLoadError


@dataclass(frozen=True)
class LayerRef:
    """A layer found while scanning a model config or object."""

    name: str
    class_name: str
    module: str | None = None


@dataclass(frozen=True)
class SourceModel:
    """A loaded model as the user gave it, plus what reports need to know about it.

    Attributes:
        model: the Keras 3 or tf_keras model object; None for a plain SavedModel.
        flavor: "keras3", "tf_keras" or "saved_model".
        format: human description of where it came from (".keras (Keras 3)", "in-memory tf_keras", ...).
        path: file or directory it was loaded from; None when in memory.
        sha256: of the file / directory, or of config + weights for in-memory models.
        name: the model's name.
        saved_model: the `tf.saved_model.load` object for plain SavedModels.
    """

    model: Any
    flavor: str
    format: str
    path: str | None
    sha256: str
    name: str
    saved_model: Any = field(default=None, repr=False)

    # ------------------------------------------------------------------ shapes
    def input_specs(self) -> list:
        """One `tfcompress.data.InputSpec` per model input."""
        from tfcompress.data import InputSpec

        if self.model is not None:
            specs = []
            for i, t in enumerate(self.model.inputs):
                name = getattr(t, "name", f"input_{i}").split(":")[0]
                specs.append(InputSpec(name=name, shape=tuple(_dim(d) for d in t.shape), dtype=_dtype_name(t.dtype)))
            return specs
        sig = self._signature()
        _, kwargs = sig.structured_input_signature
        return [
            InputSpec(name=k, shape=tuple(_dim(d) for d in v.shape), dtype=v.dtype.name) for k, v in sorted(kwargs.items())
        ]

    def layer_names(self) -> list[str]:
        """Names of all layers, nested models included (for mapping .tflite ops back)."""
        if self.model is None:
            return []
        return [ref.name for ref in walk_layers(self.model)]

    # -------------------------------------------------------------- inference
    def predict(self, xs: tuple[np.ndarray, ...], batch_size: int = 64) -> list[np.ndarray]:
        """Run the source model in inference mode; returns one array per output."""
        n = len(xs[0])
        chunks: list[list[np.ndarray]] = []
        for start in range(0, n, batch_size):
            batch = [x[start : start + batch_size] for x in xs]
            chunks.append(self._call(batch))
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]

    def _call(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        if self.model is not None:
            out = self.model(batch[0] if len(batch) == 1 else batch, training=False)
            outs = out if isinstance(out, (list, tuple)) else [out]
            if isinstance(out, dict):
                outs = [out[k] for k in sorted(out)]
            return [np.asarray(o) for o in outs]
        from tfcompress.keras_compat import tf

        sig = self._signature()
        names = [s.name for s in self.input_specs()]
        out = sig(**{k: tf.constant(v) for k, v in zip(names, batch)})
        return [np.asarray(out[k]) for k in sorted(out)]

    def _signature(self) -> Any:
        sigs = self.saved_model.signatures
        if "serving_default" in sigs:
            return sigs["serving_default"]
        if len(sigs) == 1:
            return next(iter(sigs.values()))
        raise ModelLoadError(
            f"SavedModel {self.path} has signatures {sorted(sigs)} but no 'serving_default'",
            "export it with a single serving signature",
        )


def _dim(d: Any) -> int | None:
    return None if d is None else int(d)


def _dtype_name(dtype: Any) -> str:
    return getattr(dtype, "name", None) or str(dtype)


def walk_layers(model: Any) -> Iterator[LayerRef]:
    """Every layer of a model, depth first, nested models included."""
    for layer in getattr(model, "layers", []):
        yield LayerRef(layer.name, type(layer).__name__, type(layer).__module__)
        if hasattr(layer, "layers"):
            yield from walk_layers(layer)

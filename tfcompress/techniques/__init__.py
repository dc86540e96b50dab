"""Compression techniques, one module each, found through one registry.

A technique module is importable without TensorFlow (it imports Keras through
`tfcompress.keras_compat` inside its functions) and provides:

    Params                          frozen dataclass: the stage's `params:` in a recipe,
                                    every field with a default and a type hint
    apply(model, params, rules)     tf_keras model -> tf_keras model ready to fine-tune
                                    (wrapped by TF-MOT, or rebuilt smaller by surgery)
    strip(model)                    remove training-time wrappers (identity if none)
    callbacks(params)               Keras callbacks the stage's fine-tuning needs

The recipe parser validates `params:` against `Params` (unknown keys and wrong
types are errors with file:line) without importing TensorFlow.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Technique:
    """A registry entry.

    Attributes:
        name: the `technique:` value in recipes.
        module: the module implementing it.
        summary: one line for `--help` and docs.
        trains: whether the stage usually fine-tunes.
    """

    name: str
    module: str
    summary: str
    trains: bool = True

    def load(self) -> ModuleType:
        """Import the implementing module."""
        return importlib.import_module(self.module)

    @property
    def params_type(self) -> type:
        """The frozen dataclass of this technique's parameters."""
        return self.load().Params


TECHNIQUES: dict[str, Technique] = {
    t.name: t
    for t in (
        Technique("prune", "tfcompress.techniques.pruning", "magnitude pruning with a schedule (TF-MOT)"),
        Technique("cluster", "tfcompress.techniques.clustering", "weight clustering / sharing (TF-MOT)"),
        Technique("qat", "tfcompress.techniques.qat", "quantization-aware training (TF-MOT), incl. PQAT/CQAT/PCQAT"),
        Technique("structured_prune", "tfcompress.techniques.structured", "remove whole channels (graph surgery)"),
        Technique("low_rank", "tfcompress.techniques.lowrank", "SVD / Tucker-2 factorization (graph surgery)"),
        Technique("share_weights", "tfcompress.techniques.sharing", "tie kernels across repeated blocks"),
        Technique("distill", "tfcompress.techniques.distill", "fine-tune on the original model's soft outputs"),
        Technique("convert", "tfcompress.techniques.export", "convert to .tflite (last stage)", trains=False),
    )
}


def load_tfmot() -> ModuleType:
    """TF-MOT, imported after the Keras seam has set TF_USE_LEGACY_KERAS (the one TF-MOT import)."""
    from tfcompress.keras_compat import tf  # noqa: F401  (sets the Keras flag before TF-MOT loads)
    import tensorflow_model_optimization

    return tensorflow_model_optimization


def get_technique(name: str) -> Technique:
    """The registry entry for `name` (KeyError if unknown)."""
    return TECHNIQUES[name]

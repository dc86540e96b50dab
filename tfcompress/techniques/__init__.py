"""Compression techniques, one module each, found through one registry.

A technique module is importable without TensorFlow (it imports Keras through
`tfcompress.keras_compat` inside its functions) and ends with a `TECHNIQUE`
declaration (`tfcompress.techniques.base.Technique`): its name, its pydantic
`Params`, `apply`, and what else it does and needs. Adding a technique is one
module plus one line in `_MODULES` below; `register_technique` adds one at run time
(plugins, tests).

The recipe parser validates `params:` against the entry's `params_type`
without importing TensorFlow.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from tfcompress.techniques.base import Capability, StageContext, Technique

__all__ = ["TECHNIQUES", "Capability", "StageContext", "Technique", "get_technique", "load_tfmot", "register_technique", "strip_training_wrappers", "unregister_technique"]

# name -> module whose TECHNIQUE declares it (imported on first use).
_MODULES: dict[str, str] = {
    "prune": "tfcompress.techniques.pruning",
    "cluster": "tfcompress.techniques.clustering",
    "qat": "tfcompress.techniques.qat",
    "structured_prune": "tfcompress.techniques.structured",
    "low_rank": "tfcompress.techniques.lowrank",
    "share_weights": "tfcompress.techniques.sharing",
    "distill": "tfcompress.techniques.distill",
    "swap": "tfcompress.techniques.swap",
    "scale": "tfcompress.techniques.scale",
}


class Registry(Mapping[str, Technique]):
    """name -> `Technique`, each module imported when its entry is first asked for."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)
        self._entries: dict[str, Technique] = {}

    def __getitem__(self, name: str) -> Technique:
        if name not in self._entries:
            module = importlib.import_module(self._modules[name])  # KeyError for unknown names
            entry = module.TECHNIQUE
            if entry.name != name:
                raise RuntimeError(f"{module.__name__}.TECHNIQUE is named '{entry.name}', registered as '{name}'")
            self._entries[name] = entry
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._modules, *(n for n in self._entries if n not in self._modules)])

    def __len__(self) -> int:
        return len(set(self._modules) | set(self._entries))

    def add(self, technique: Technique) -> None:
        if technique.name in self:
            raise ValueError(f"technique '{technique.name}' is already registered")
        self._entries[technique.name] = technique

    def remove(self, name: str) -> None:
        if name in self._modules:
            raise ValueError(f"'{name}' is a built-in technique")
        self._entries.pop(name, None)


TECHNIQUES = Registry(_MODULES)


def register_technique(technique: Technique) -> None:
    """Make `technique` usable in recipes, `compress` and the callbacks (ValueError if the name is taken)."""
    TECHNIQUES.add(technique)


def unregister_technique(name: str) -> None:
    """Remove a technique added with `register_technique`."""
    TECHNIQUES.remove(name)


def get_technique(name: str) -> Technique:
    """The registry entry for `name` (KeyError if unknown)."""
    return TECHNIQUES[name]


def strip_training_wrappers(model: Any) -> Any:
    """`model` with every registered technique's training-time wrappers removed (the model that ships).

    A Keras 3 model holds none (the techniques wrap tf_keras models): it is returned as it is."""
    from tfcompress.keras_compat import is_tf_keras_model

    if not is_tf_keras_model(model):
        return model
    for capability in (Capability.TRAINING_WRAPPER, Capability.WRAPS_LAYERS):  # outer wrappers first
        for entry in TECHNIQUES.values():
            if entry.can(capability):
                model = entry.strip(model)
    return model


def load_tfmot() -> ModuleType:
    """TF-MOT, imported after the Keras seam has set TF_USE_LEGACY_KERAS (the one TF-MOT import)."""
    from tfcompress.keras_compat import tf  # noqa: F401  (sets the Keras flag before TF-MOT loads)
    import tensorflow_model_optimization

    return tensorflow_model_optimization

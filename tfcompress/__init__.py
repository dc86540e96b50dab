"""tfcompress: hardware-aware compression of Keras models into verified LiteRT (.tflite) files.

The public API (imported lazily, so `import tfcompress` and `tfcompress --help`
stay fast; TensorFlow loads on first use):

    tfcompress.convert(model, data, output="m.tflite", mode="int8") -> ConvertResult
    tfcompress.load_model(path_or_model) -> tf_keras.Model   # Keras 3 bridged
    tfcompress.load_samples(source, specs) -> Samples
    tfcompress.inspect_tflite(path) / tfcompress.inspect_keras(model)
    tfcompress.compress(model, "pcqat", data, output="m.tflite") -> CompressResult
    tfcompress.prepare / callbacks / finalize / training_stages   # in your own fit()
    tfcompress.register_technique(Technique(...))                # a technique of your own
    tfcompress.load_recipe(name_or_path) -> Recipe
    from tfcompress.search import search   # a subpackage: search(model, data, device=..., latency_ms=...)
    tfcompress.ConvertOptions, Mode, IOType, ImageSpec, TfcompressError
"""

from __future__ import annotations

import importlib
from typing import Any

from tfcompress._version import __version__

_EXPORTS: dict[str, str] = {
    "convert": "tfcompress.conversion",
    "ConvertOptions": "tfcompress.conversion",
    "ConvertResult": "tfcompress.conversion",
    "load_model": "tfcompress.loading",
    "load_source": "tfcompress.loading",
    "load_samples": "tfcompress.data",
    "ImageSpec": "tfcompress.data",
    "InputSpec": "tfcompress.data",
    "Samples": "tfcompress.data",
    "inspect_tflite": "tfcompress.inspect",
    "inspect_keras": "tfcompress.inspect",
    "read_tflite": "tfcompress.export.tflite_file",
    "to_tf_keras": "tfcompress.bridge",
    "fmnist_cnn": "tfcompress.models",
    "load_fashion_mnist": "tfcompress.datasets",
    "compress": "tfcompress.compression",
    "prepare": "tfcompress.stages",
    "callbacks": "tfcompress.stages",
    "finalize": "tfcompress.stages",
    "CompressionLogger": "tfcompress.monitoring",
    "LatencyLogger": "tfcompress.monitoring",
    "training_stages": "tfcompress.stages",
    "CompressResult": "tfcompress.compression",
    "CompressReport": "tfcompress.report",
    "ConvertReport": "tfcompress.export.report",
    "Technique": "tfcompress.techniques",
    "StageContext": "tfcompress.techniques",
    "Capability": "tfcompress.techniques",
    "register_technique": "tfcompress.techniques",
    "load_recipe": "tfcompress.recipe",
    "Recipe": "tfcompress.types",
    "Stage": "tfcompress.types",
    "LayerRule": "tfcompress.types",
    "LayerMatch": "tfcompress.types",
    "prune_channels": "tfcompress.techniques.structured",
    "factorize": "tfcompress.techniques.lowrank",
    "share_weights": "tfcompress.techniques.sharing",
    "count_flops": "tfcompress.surgery",
    "SearchSettings": "tfcompress.search.settings",
    "SearchResult": "tfcompress.search.runner",
    "Mode": "tfcompress.types",
    "IOType": "tfcompress.types",
    "TfcompressError": "tfcompress.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfcompress' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__

"""Graph surgery: rebuild tf_keras models with changed layers (docs/surgery.md).

    trace(model) -> LayerGraph                    flat view: nodes, tensors, shapes (nested models inlined)
    rebuild(model, replace) -> tf_keras.Model     replay the graph, layer -> None | layer | Replacement
    analyze_channels(model) -> ChannelAnalysis    channel dependency groups (residuals, SE, concat, ...)
    remove_channels(analysis, removed)            the model without those channels, weights sliced
    count_flops(model) -> FlopTable               params / MACs / FLOPs per layer and in total
    change_resolution(model, r) -> model, change  rebuilt for inputs of side x r, weights carried
    scale_depth(model, d) -> model, DepthPlan     ceil(d x k) residual blocks per stage of k (removed / copied)

Importing this package does not import TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "GraphNode": "tfcompress.surgery.graph",
    "LayerGraph": "tfcompress.surgery.graph",
    "Replacement": "tfcompress.surgery.graph",
    "as_tf_keras": "tfcompress.surgery.graph",
    "clone_layer": "tfcompress.surgery.graph",
    "rebuild": "tfcompress.surgery.graph",
    "run_graph": "tfcompress.surgery.graph",
    "trace": "tfcompress.surgery.graph",
    "ChannelAnalysis": "tfcompress.surgery.channels",
    "ChannelGroup": "tfcompress.surgery.channels",
    "analyze_channels": "tfcompress.surgery.channels",
    "channel_statistics": "tfcompress.surgery.channel_removal",
    "remove_channels": "tfcompress.surgery.channel_removal",
    "FlopTable": "tfcompress.surgery.flops",
    "count_flops": "tfcompress.surgery.flops",
    "cost_change": "tfcompress.surgery.flops",
    "ResolutionChange": "tfcompress.surgery.resolution",
    "change_resolution": "tfcompress.surgery.resolution",
    "DepthPlan": "tfcompress.surgery.depth",
    "find_stages": "tfcompress.surgery.depth",
    "scale_depth": "tfcompress.surgery.depth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tfcompress.surgery' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__

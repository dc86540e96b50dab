"""Weight clustering (weight sharing), over TF-MOT (`technique: cluster`).

Each clustered weight tensor ends up with at most `clusters` unique values,
which gzip (and the .tflite's sparse/palettized storage downstream) exploits.
Layers TF-MOT cannot cluster, or that hold nothing to cluster (depthwise
kernels, BatchNormalization), are skipped, not fatal.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from tfcompress.errors import TfcompressError
from tfcompress.techniques import load_tfmot
from tfcompress.techniques.base import Capability, StageContext, Technique
from tfcompress.types import LayerRule

_INITS: dict[str, str] = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


class Params(BaseModel):
    """Recipe `params:` of a cluster stage (field descriptions are the docs and the JSON Schema)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clusters: StrictInt = Field(
        16, ge=2, le=65536, description="unique values per weight tensor (per channel with `per_channel`)")
    init: Literal["kmeans++", "linear", "density", "random"] = Field("kmeans++", description="centroid initialisation")
    preserve_sparsity: StrictBool = Field(
        False, description="keep zeros from an earlier prune stage at zero (PCQAT's first half)")
    per_channel: StrictBool = Field(False, description="cluster each output channel of Conv2D separately")
    min_weights: StrictInt = Field(
        256, ge=0, le=10**9, description="leave tensors with fewer weights than this alone")


def clusterable_weights(layer: Any) -> list[Any]:
    """The weights TF-MOT would cluster in `layer` (empty if none / unsupported)."""
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry

    registry = clustering_registry.ClusteringRegistry
    if not registry.supports(layer):
        return []
    try:
        names = registry._weight_names(layer)
    except KeyError:  # supported as a whole (MultiHeadAttention, RNN layers): TF-MOT clusters their kernels
        names = ["kernel", "recurrent_kernel"]
    return [w for w in layer.trainable_weights if any(w.name.split("/")[-1].startswith(n) for n in names)]


def is_clusterable(layer: Any, min_weights: int = 0) -> bool:
    """A layer with at least one clusterable weight tensor of `min_weights` elements."""
    weights = clusterable_weights(layer)
    return bool(weights) and max(int(w.shape.num_elements()) for w in weights) >= max(min_weights, 1)


def apply(model: Any, params: Params, rules: tuple[LayerRule, ...] = (), ctx: StageContext = StageContext()) -> Any:
    """Wrap the clusterable layers chosen by `rules` in TF-MOT clustering wrappers.

    Raises:
        TfcompressError: no layer of the model can be clustered.
    """
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.pruning import _all_layers
    from tfcompress.techniques.rules import fresh_copy, plan_layers

    tfmot = load_tfmot()
    model = fresh_copy(model)  # TF-MOT wrappers mutate the layers they wrap: never the caller's
    plan = plan_layers(
        _all_layers(model),
        rules,
        params,
        lambda layer: is_clusterable(layer, params.min_weights),
        where=f"cluster stage of '{model.name}'",
    )
    if not plan.params:
        raise TfcompressError(
            f"no clusterable layer in model '{model.name}' (Conv/Dense kernels of >= {params.min_weights} weights)",
            "check the rules, or lower min_weights",
        )
    init = getattr(tfmot.clustering.keras.CentroidInitialization, _INITS[params.init])

    def wrap(layer: Any) -> Any:
        if isinstance(layer, tf_keras.Model):
            return tf_keras.models.clone_model(layer, clone_function=wrap)
        p = plan.params.get(layer.name)
        if p is None:
            return layer
        kwargs: dict[str, Any] = {"preserve_sparsity": p.preserve_sparsity}
        if p.per_channel and isinstance(layer, tf_keras.layers.Conv2D):
            kwargs["cluster_per_channel"] = True
        return tfmot.clustering.keras.cluster_weights(layer, number_of_clusters=p.clusters, cluster_centroids_init=init, **kwargs)

    return tf_keras.models.clone_model(model, clone_function=wrap)


def strip(model: Any) -> Any:
    """Remove clustering wrappers; kernels keep their clustered values."""
    return load_tfmot().clustering.keras.strip_clustering(model)


# No callbacks: TF-MOT updates the centroids inside the wrapper.
TECHNIQUE = Technique(
    name="cluster",
    summary="weight clustering / sharing (TF-MOT)",
    params_type=Params,
    apply=apply,
    strip=strip,
    capabilities=frozenset({Capability.WRAPS_LAYERS}),
    size_advice="clustering's shared values show in the gzip bytes (stage table), not the .tflite",
)

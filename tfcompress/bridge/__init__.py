"""Rebuild Keras 3 models as tf_keras (Keras 2) models with identical weights.

TF-MOT (QAT, pruning, clustering) only understands tf_keras, while most user
models are Keras 3. `to_tf_keras` rebuilds a Keras 3 Sequential or Functional
model (nested models, shared layers and multi-input/output graphs included)
layer by layer:

1. every Keras 3 layer's `get_config()` is translated to the tf_keras format
   (`translate_layer_config`) and the tf_keras layer is created from it;
2. the Keras 3 graph is walked node by node (the same walk Keras 3 uses to run
   a Functional model) and each node is replayed on tf_keras symbolic tensors,
   so shared layers stay shared and layer / model names are kept; a node that
   is a `keras.ops` call or tensor operator (`x + 3.0`, `ops.mean(x, axis=1)`,
   `x[:, 0]`, as in MobileNetV3) becomes the TensorFlow op with the Keras 3
   definition, held by tf_keras as a TFOpLambda layer named after the op
   (`replay_op`, table `OP_RULES`);
3. weights are copied per layer, matched by variable name and shape
   (`copy_weights`), never by position alone.

What cannot be bridged raises `BridgeError` naming the layer and its class:
Lambda layers (their function is Keras 3 Python code, usually `keras.ops`, that
cannot run on tf_keras tensors), `keras.ops` without a rule in `OP_RULES` (or
called with an argument the TF op lacks), custom layer classes not given in `custom_objects`, layers tf_keras does not
have, Keras 3 options tf_keras lacks when they are switched on (e.g.
`rms_scaling=True`, LoRA, quantized dtype policies) and subclassed models.
`custom_objects` maps a Keras 3 class name (or registered name
"package>Name") to the tf_keras class to build instead; it wins over every
built-in rule, Lambda included, and is also used for custom initializers,
regularizers, constraints and activation functions.

Keras 3 activations that tf_keras lacks or defines differently (e.g.
`hard_sigmoid`, `hard_silu`) are replaced by TensorFlow implementations of the
Keras 3 definition, registered as "tfcompress>keras3_<name>" so a saved
bridged model reloads once `tfcompress.bridge` is imported.

Modules, one step each:

    activations.py  KERAS3_ACTIVATIONS: TF versions of Keras 3 activations tf_keras lacks
    configs.py      translate_layer_config: Keras 3 config -> tf_keras config
    layers.py       bridge_layer (one layer's tf_keras twin), copy_weights
    ops.py          replay_op: a keras.ops / tensor-operator node as TF op layers (OP_RULES)
    models.py       to_tf_keras: replay a Sequential / Functional graph on tf_keras tensors
"""

from __future__ import annotations

from tfcompress.bridge.activations import KERAS3_ACTIVATIONS
from tfcompress.bridge.configs import translate_layer_config
from tfcompress.bridge.layers import bridge_layer, copy_weights
from tfcompress.bridge.models import to_tf_keras
from tfcompress.bridge.ops import OP_RULES, replay_op

__all__ = [
    "KERAS3_ACTIVATIONS",
    "OP_RULES",
    "bridge_layer",
    "copy_weights",
    "replay_op",
    "to_tf_keras",
    "translate_layer_config",
]

"""Depth scaling: fewer or more repeats of a model's residual blocks (EfficientNet's depth coefficient d).

A *residual block* is `x -> branch(x) -> Add([x, branch(x)])` [-> activation], where the branch is a
self-contained subgraph (every tensor inside it comes from x or from the branch itself and is read only inside
it; no layer in it is shared) and the block's output has x's shape: the unit ResNet, MobileNetV2 and
EfficientNet repeat. A *stage* is a chain of such blocks, each reading the previous one's output.

`scale_depth(model, d)` gives each stage of k blocks ceil(d x k) blocks (EfficientNet's `round_repeats`; a stage
never drops below one block; the first, shape-changing block of a network stage is not a residual block and
always stays):

    d < 1   the last blocks of each stage are removed (the stage's output is the last kept block's output);
            a removed block's activation after the Add stays unless its input is already >= 0 (ReLU-like)
    d > 1   copies of each stage's last block are appended to it, weights copied, with the branch's last
            weighted layer zeroed (a BatchNormalization: gamma = beta = 0), so a copy adds 0 to its input:
            with a linear Add or a ReLU after the Add on a >= 0 input it starts as the identity, and the
            model computes what it did before (`DepthPlan.max_abs_diff` says how close, measured)

Which blocks were removed or added, and from what, is in the returned `DepthPlan`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfcompress.errors import TfcompressError
from tfcompress.surgery.blocks import input_is_nonnegative
from tfcompress.surgery.graph import LayerGraph, TensorRef, as_tf_keras, clone_layer, trace

__all__ = ["DepthPlan", "ResidualBlock", "StageChange", "find_stages", "scale_depth"]

_POST_ACTIVATIONS = {"ReLU", "Activation", "LeakyReLU", "ELU", "PReLU"}
MAX_NODES = 20_000  # graphs larger than this are refused (the search per Add is linear in the graph)


@dataclass(frozen=True)
class ResidualBlock:
    """One residual block: node indices of the branch, the Add and the activation after it (if any)."""

    input: int  # tensor key of x (the skip and the branch's input)
    output: int  # tensor key the block hands on (the Add's, or the activation's after it)
    branch: tuple[int, ...]
    add: int
    post: int | None

    @property
    def nodes(self) -> tuple[int, ...]:
        return (*self.branch, self.add, *(() if self.post is None else (self.post,)))


@dataclass(frozen=True)
class StageChange:
    """What depth scaling did to one stage (blocks named by their Add layer)."""

    blocks: tuple[str, ...]
    before: int
    after: int
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    copied_from: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"stage": f"{self.blocks[0]}..{self.blocks[-1]}", "before": self.before, "after": self.after,
                "removed": list(self.removed), "added": list(self.added), "copied_from": self.copied_from,
                "blocks": list(self.blocks)}


@dataclass(frozen=True)
class DepthPlan:
    """Depth scaling's record: the multiplier, each stage's change, and how close the new model starts."""

    depth: float
    stages: tuple[StageChange, ...]
    max_abs_diff: float | None = None  # |new - old| on random inputs (None: not measurable, e.g. open shapes)

    @property
    def changed(self) -> bool:
        return any(s.before != s.after for s in self.stages)

    def describe(self) -> str:
        lines = [f"depth x{self.depth:g}: {len(self.stages)} stage(s) of residual blocks"]
        for s in self.stages:
            what = (f"removed {', '.join(s.removed)}" if s.removed else
                    f"added {', '.join(s.added)} (copies of {s.copied_from}, branch end zeroed)" if s.added else
                    "unchanged (ceil(d x blocks))")
            lines.append(f"  {s.blocks[0]}..{s.blocks[-1]}: {s.before} -> {s.after} blocks; {what}")
        if self.max_abs_diff is not None:
            lines.append(f"  new model vs old on random inputs: max |diff| {self.max_abs_diff:.3g}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "stages": [s.to_dict() for s in self.stages], "max_abs_diff": self.max_abs_diff}


# ------------------------------------------------------------------ finding blocks


def _shared(graph: LayerGraph) -> set[int]:
    counts: dict[int, int] = {}
    for n in graph.nodes:
        counts[id(n.layer)] = counts.get(id(n.layer), 0) + 1
    return {k for k, v in counts.items() if v > 1}


def _branch(graph: LayerGraph, skip: int, end: int, producers: dict[int, int]) -> list[int] | None:
    """Node indices computing `end` from `skip` alone (a self-contained subgraph), or None."""
    nodes: set[int] = set()
    stack = [end]
    while stack:
        key = stack.pop()
        if key == skip:
            continue
        if key not in producers:
            return None  # reaches a model input without passing through `skip`
        i = producers[key]
        if i not in nodes:
            nodes.add(i)
            stack.extend(graph.nodes[i].inputs)
    return sorted(nodes) or None


def _block_at(graph: LayerGraph, add: int, producers: dict[int, int], consumers: dict[int, list[int]],
              shared: set[int], outputs: set[int]) -> ResidualBlock | None:
    node = graph.nodes[add]
    if node.class_name != "Add" or len(node.inputs) != 2 or len(node.outputs) != 1 or id(node.layer) in shared:
        return None
    out = node.outputs[0]
    for skip, end in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
        if graph.shapes.get(skip) != graph.shapes.get(out):
            continue
        branch = _branch(graph, skip, end, producers)
        if branch is None or any(id(graph.nodes[i].layer) in shared for i in branch):
            continue
        inside = {k for i in branch for k in graph.nodes[i].outputs}
        readers_ok = all(set(consumers.get(k, [])) <= {*branch, add} and k not in outputs for k in inside)
        if not readers_ok:
            continue
        post = None
        readers = consumers.get(out, [])
        if len(readers) == 1 and out not in outputs:
            nxt = graph.nodes[readers[0]]
            if (nxt.class_name in _POST_ACTIVATIONS and nxt.inputs == (out,) and len(nxt.outputs) == 1
                    and id(nxt.layer) not in shared):
                post = readers[0]
        final = out if post is None else graph.nodes[post].outputs[0]
        return ResidualBlock(skip, final, tuple(branch), add, post)
    return None


def find_stages(graph: LayerGraph) -> list[list[ResidualBlock]]:
    """Chains of residual blocks (each reading the previous one's output), in execution order."""
    if len(graph.nodes) > MAX_NODES:
        raise TfcompressError(f"the model has {len(graph.nodes):,} layer calls; depth scaling handles at most "
                              f"{MAX_NODES:,}", "scale depth on a smaller model, or leave depth at 1")
    producers, consumers, shared = graph.producer(), graph.consumers(), _shared(graph)
    outputs = set(graph.outputs)
    blocks = [b for i in range(len(graph.nodes))
              if (b := _block_at(graph, i, producers, consumers, shared, outputs)) is not None]
    by_input = {b.input: b for b in blocks}
    followers = {b.output for b in blocks}
    stages = []
    for b in blocks:
        if b.input in followers:
            continue  # not the first block of its chain
        chain = [b]
        while chain[-1].output in by_input and len(chain) <= len(blocks):
            chain.append(by_input[chain[-1].output])
        stages.append(chain)
    return stages


# ------------------------------------------------------------------ rebuilding


def _zero_branch_end(layer: Any, weights: list[np.ndarray]) -> list[np.ndarray]:
    """The weights that make `layer` output 0 (BatchNormalization: gamma = beta = 0; else all zero)."""
    if type(layer).__name__ == "BatchNormalization":
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        return [np.zeros_like(w) if n in ("gamma", "beta") else w for n, w in zip(names, weights)]
    return [np.zeros_like(w) for w in weights]


def _post_is_identity(graph: LayerGraph, block: ResidualBlock) -> bool:
    if block.post is None:
        return True
    node = graph.nodes[block.post]
    config = node.layer.get_config()
    relu = (node.class_name == "ReLU" and not config.get("negative_slope") and not config.get("threshold")
            and config.get("max_value") is None) or config.get("activation") == "relu"
    return relu and input_is_nonnegative(graph, block.input)


class _Replayer:
    """Replays a graph node by node with new layers (fresh names), tensors keyed as in the graph."""

    def __init__(self, graph: LayerGraph) -> None:
        from tfcompress.keras_compat import tf_keras

        self.graph = graph
        self.names = {n.name for n in graph.nodes} | set(graph.input_names)
        self.tensors: dict[int, Any] = {}
        self.inputs = []
        for key, name in zip(graph.inputs, graph.input_names):
            self.tensors[key] = tf_keras.Input(batch_shape=graph.shapes[key], dtype=graph.dtypes[key], name=name)
            self.inputs.append(self.tensors[key])

    def fresh_name(self, base: str) -> str:
        i = 1
        while f"{base}_d{i}" in self.names:
            i += 1
        self.names.add(f"{base}_d{i}")
        return f"{base}_d{i}"

    def call(self, i: int, tensors: dict[int, Any], *, name: str | None = None, weights: Any = None) -> list[Any]:
        """Node `i` with a new layer (its own name unless `name`), reading `tensors`; returns its outputs."""
        from tfcompress.keras_compat import tf

        node = self.graph.nodes[i]
        layer = clone_layer(node.layer, name=name or node.name)

        def fill(x: Any) -> Any:
            return tensors[x.key] if isinstance(x, TensorRef) else x

        args = tuple(tf.nest.map_structure(fill, list(node.args)))
        kwargs = {k: tf.nest.map_structure(fill, v) for k, v in node.kwargs.items()}
        outs = tf.nest.flatten(layer(*args, **kwargs))
        layer.set_weights(node.layer.get_weights() if weights is None else weights)
        return outs


def scale_depth(model: Any, depth: float) -> tuple[Any, DepthPlan]:
    """`model` with ceil(depth x k) blocks in each stage of k residual blocks, and the record of it."""
    from tfcompress.keras_compat import tf, tf_keras

    if not 0.0 < depth <= 8.0:
        raise TfcompressError(f"depth multiplier {depth} is out of range", "use a value in (0, 8]; 1 leaves it")
    model = as_tf_keras(model)
    graph = trace(model)
    stages = find_stages(graph)
    if not stages:
        raise TfcompressError(
            f"model '{model.name}' has no residual blocks (x + f(x) with the shape of x) for depth scaling to "
            "repeat or remove", "leave depth at 1 for plain stacks (swap to inverted_residual first to get blocks)")
    drop: dict[int, ResidualBlock] = {}  # first node index of a removed block -> the block
    dropped_nodes: set[int] = set()
    extra: dict[int, tuple[ResidualBlock, int]] = {}  # last node of a stage -> (block to copy, copies)
    changes = []
    for chain in stages:
        k, new_k = len(chain), max(1, math.ceil(depth * len(chain) - 1e-9))
        names = tuple(graph.nodes[b.add].name for b in chain)
        if new_k < k:
            for b in chain[new_k:]:
                drop[min(b.nodes)] = b
                dropped_nodes.update(b.nodes)
            changes.append(StageChange(names, k, new_k, removed=names[new_k:]))
        elif new_k > k:
            extra[max(chain[-1].nodes)] = (chain[-1], new_k - k)
            changes.append(StageChange(names, k, new_k, copied_from=names[-1]))
        else:
            changes.append(StageChange(names, k, k))
    rp = _Replayer(graph)
    t = rp.tensors
    added: dict[str, list[str]] = {}
    for i, node in enumerate(graph.nodes):
        if i in drop:
            b = drop[i]
            keep_post = b.post is not None and not _post_is_identity(graph, b)
            t[b.output] = rp.call(b.post, {graph.nodes[b.post].inputs[0]: t[b.input]})[0] if keep_post \
                else t[b.input]
        if i in dropped_nodes:
            continue
        t.update(zip(node.outputs, rp.call(i, t)))
        if i in extra:
            block, copies = extra[i]
            end = max((j for j in block.branch if graph.nodes[j].layer.weights), default=None)
            for _ in range(copies):
                local = {block.input: t[block.output]}
                for j in block.nodes:
                    w = graph.nodes[j].layer.get_weights()
                    w = _zero_branch_end(graph.nodes[j].layer, w) if j == end else w
                    name = rp.fresh_name(graph.nodes[j].name)
                    local.update(zip(graph.nodes[j].outputs, rp.call(j, local, name=name, weights=w)))
                    if j == block.add:
                        added.setdefault(graph.nodes[block.add].name, []).append(name)
                t[block.output] = local[block.output]
    new = tf_keras.Model(tf.nest.map_structure(lambda k: t[k], graph.nested_inputs),
                         tf.nest.map_structure(lambda k: t[k], graph.nested_outputs), name=model.name)
    changes = [StageChange(c.blocks, c.before, c.after, c.removed, tuple(added.get(c.copied_from, ())),
                           c.copied_from) if c.copied_from else c for c in changes]
    return new, DepthPlan(depth, tuple(changes), _max_abs_diff(model, new))


def _max_abs_diff(old: Any, new: Any, samples: int = 4) -> float | None:
    """max |new(x) - old(x)| on random inputs in [0, 1); None when an input is not a fixed-shape float tensor."""
    xs = []
    rng = np.random.default_rng(0)
    for inp in old.inputs:
        shape = tuple(inp.shape[1:])
        if None in shape or not inp.dtype.is_floating:
            return None
        xs.append(rng.random((samples, *shape), dtype=np.float32))
    a = old(xs if len(xs) > 1 else xs[0], training=False)
    b = new(xs if len(xs) > 1 else xs[0], training=False)
    from tfcompress.keras_compat import tf

    return float(max(np.max(np.abs(np.asarray(x) - np.asarray(y))) for x, y in zip(tf.nest.flatten(a),
                                                                                       tf.nest.flatten(b))))

"""TFLite sparse tensors (SparsityParameters): read their metadata, decode them to dense.

`densify` is the runtime's format converter, vectorised, on plain numpy
arrays; `read_sparsity` reads the metadata of one flatbuffer tensor into
`SparseDim`s for it. `weight_stats` uses both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from tfcompress.export.tflite_file import schema

__all__ = ["SparseDim", "densify", "read_sparsity", "stored_count"]

_DENSE = schema.DimensionType.DENSE
_SPARSE_CSR = schema.DimensionType.SPARSE_CSR
_INDEX_VECTORS: dict[int, Any] = {
    schema.SparseIndexVector.Int32Vector: schema.Int32Vector,
    schema.SparseIndexVector.Uint16Vector: schema.Uint16Vector,
    schema.SparseIndexVector.Uint8Vector: schema.Uint8Vector,
}


class SparseDim(NamedTuple):
    """One dimension of a sparse tensor's `dim_metadata`, in traversal order.

    A DENSE dimension (`sparse` False) has `dense_size` entries; a SPARSE_CSR
    one lists, for each position of the dimensions before it, the range
    `segments[p]:segments[p + 1]` of `indices` that are stored.
    """

    sparse: bool
    dense_size: int = 0
    segments: np.ndarray | None = None
    indices: np.ndarray | None = None


def densify(
    values: np.ndarray,
    shape: Sequence[int],
    traversal_order: Sequence[int],
    block_map: Sequence[int],
    dims: Sequence[SparseDim],
    fill: Any = 0,
) -> np.ndarray:
    """Decode a TFLite sparse tensor to its dense array.

    The runtime's format converter, vectorised: walk `dims` in traversal
    order (the first `len(shape)` entries of `traversal_order` are the
    original dimensions, or block-row / block-column dimensions when the
    tensor is blocked; the rest are the inner block dimensions, whose
    original dimension is `block_map[traversal_order[i] - len(shape)]` and
    size their `dense_size`), listing every stored position in order; the
    k-th stored position receives `values[k]`, the rest `fill`.

    Raises:
        ValueError: the metadata is inconsistent or does not match `values`.
    """
    shape = tuple(int(d) for d in shape)
    rank = len(shape)
    order = [int(t) for t in traversal_order]
    block_map = [int(b) for b in block_map]
    levels = len(order)
    if len(dims) != levels:
        raise ValueError(f"{len(dims)} dim_metadata entries for a traversal order of {levels}")
    if levels != rank + len(block_map):
        raise ValueError(f"traversal order of {levels} for rank {rank} with {len(block_map)} block dimensions")
    if sorted(order) != list(range(levels)) or sorted(order[:rank]) != list(range(rank)):
        raise ValueError(f"traversal order {order} is not a permutation that visits the {rank} outer dims first")
    if any(not 0 <= b < rank for b in block_map) or len(set(block_map)) != len(block_map):
        raise ValueError(f"block map {block_map} does not name distinct dimensions of rank {rank}")
    block_size = [int(dims[order.index(rank + b)].dense_size) for b in range(len(block_map))]
    expected = list(shape)
    for b, dim in enumerate(block_map):
        if block_size[b] <= 0 or shape[dim] % block_size[b]:
            raise ValueError(f"block size {block_size[b]} does not divide dimension {dim} of {shape}")
        expected[dim] = shape[dim] // block_size[b]
    for level in range(levels):
        want = expected[order[level]] if level < rank else block_size[order[level] - rank]
        if not dims[level].sparse and dims[level].dense_size != want:
            raise ValueError(f"dense dimension {level} has size {dims[level].dense_size}, expected {want}")

    prev = np.zeros(1, dtype=np.int64)  # per stored path: its position in the last level
    coords: list[np.ndarray] = []  # per level: the coordinate of each path
    for level, dim in enumerate(dims):
        if not dim.sparse:
            n = int(dim.dense_size)
            step = np.arange(n, dtype=np.int64)
            coords = [c.repeat(n) for c in coords] + [np.tile(step, prev.size)]
            prev = (prev[:, None] * n + step).ravel()
            continue
        segments = np.asarray(dim.segments if dim.segments is not None else (), dtype=np.int64)
        indices = np.asarray(dim.indices if dim.indices is not None else (), dtype=np.int64)
        if prev.size and prev.max() + 1 >= segments.size:
            raise ValueError(f"sparse dimension {level} has {segments.size} segments, needs {prev.max() + 2}")
        starts, ends = segments[prev], segments[prev + 1]
        counts = ends - starts
        if (counts < 0).any() or (starts < 0).any() or (ends > indices.size).any():
            raise ValueError(f"sparse dimension {level} has segments outside its {indices.size} indices")
        total = int(counts.sum())
        # positions starts[p] .. ends[p] - 1 of each path p, in order
        offsets = np.cumsum(counts) - counts
        pos = np.repeat(starts - offsets, counts) + np.arange(total, dtype=np.int64)
        coords = [c.repeat(counts) for c in coords] + [indices[pos]]
        prev = pos
    if prev.size != values.size:
        raise ValueError(f"the sparsity metadata lists {prev.size} stored values, the buffer holds {values.size}")

    orig: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * rank
    for level in range(rank):
        orig[order[level]] = coords[level]
    for level in range(rank, levels):
        b = order[level] - rank
        orig[block_map[b]] = orig[block_map[b]] * block_size[b] + coords[level]
    dense = np.full(shape, fill, dtype=values.dtype)
    if values.size:
        for dim, idx in enumerate(orig):
            if idx.min() < 0 or idx.max() >= shape[dim]:
                raise ValueError(f"a stored index along dimension {dim} lies outside the shape {shape}")
        dense[tuple(orig)] = values.ravel()
    return dense


def stored_count(dims: Sequence[SparseDim]) -> int:
    """How many values a sparse tensor's metadata lists (the last level's path count)."""
    prev = np.zeros(1, dtype=np.int64)
    for dim in dims:
        if not dim.sparse:
            prev = (prev[:, None] * dim.dense_size + np.arange(dim.dense_size)).ravel()
        else:
            seg = np.asarray(dim.segments, dtype=np.int64)
            if prev.size and prev.max() + 1 >= seg.size:
                return -1
            counts = seg[prev + 1] - seg[prev]
            prev = np.repeat(seg[prev] - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
    return int(prev.size)


def _index_vector(kind: int, table: Any) -> np.ndarray:
    cls = _INDEX_VECTORS.get(int(kind))
    if cls is None or table is None:
        return np.zeros(0, dtype=np.int32)
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy() if vec.ValuesLength() else np.zeros(0, dtype=np.int32)


def read_sparsity(fb_tensor: Any) -> tuple[list[int], list[int], list[SparseDim], int]:
    """(traversal order, block map, dims, index bytes) of a flatbuffer tensor's SparsityParameters."""
    sp = fb_tensor.Sparsity()
    order = [int(v) for v in sp.TraversalOrderAsNumpy()] if sp.TraversalOrderLength() else []
    block_map = [int(v) for v in sp.BlockMapAsNumpy()] if sp.BlockMapLength() else []
    dims: list[SparseDim] = []
    index_bytes = 0
    for k in range(sp.DimMetadataLength()):
        dm = sp.DimMetadata(k)
        fmt = int(dm.Format())
        if fmt == _DENSE:
            dims.append(SparseDim(False, int(dm.DenseSize())))
        elif fmt == _SPARSE_CSR:
            segments = _index_vector(dm.ArraySegmentsType(), dm.ArraySegments())
            indices = _index_vector(dm.ArrayIndicesType(), dm.ArrayIndices())
            index_bytes += segments.nbytes + indices.nbytes
            dims.append(SparseDim(True, int(dm.DenseSize()), segments, indices))
        else:
            raise ValueError(f"dimension {k} has unknown format {fmt}")
    return order, block_map, dims, index_bytes

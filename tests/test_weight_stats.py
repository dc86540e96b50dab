"""Per-weight sparsity / unique values read back from .tflite files, checked against real converter output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tfcompress.errors import ModelLoadError
from tfcompress.export.weight_stats import (
    SparseDim,
    WeightStat,
    densify,
    summary,
    weight_stats,
    weight_values,
)
from tfcompress.keras_compat import tf, tf_keras

SPARSITY = 0.8
LEVELS = 8
WEIGHT_SHAPES = [(16, 3, 3, 3), (32, 1, 1, 16), (10, 32)]  # TFLite layouts: OHWI, OHWI, (out, in)
WEIGHT_OPS = ["CONV_2D", "CONV_2D", "FULLY_CONNECTED"]


def small_cnn(seed: int = 0) -> Any:
    """Conv2D 3x3x16 on 16x16x3, Conv2D 1x1x32, GAP, Dense 10 (tf_keras)."""
    tf_keras.utils.set_random_seed(seed)
    K = tf_keras
    inp = K.Input((16, 16, 3), name="image")
    x = K.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3x3")(inp)
    x = K.layers.Conv2D(32, 1, activation="relu", name="conv1x1")(x)
    x = K.layers.GlobalAveragePooling2D(name="gap")(x)
    out = K.layers.Dense(10, name="logits")(x)
    return K.Model(inp, out, name="small_cnn")


def kernels(model: Any) -> list[Any]:
    return [layer for layer in model.layers if hasattr(layer, "kernel")]


def tflite_layout(kernel: np.ndarray) -> np.ndarray:
    """A Keras kernel in TFLite's layout: Conv2D HWIO -> OHWI, Dense (in, out) -> (out, in)."""
    return np.transpose(kernel, (3, 0, 1, 2)) if kernel.ndim == 4 else kernel.T


def prune_exactly(model: Any, fraction: float, seed: int) -> None:
    """Set exactly round(fraction * size) randomly chosen entries of each kernel to 0."""
    rng = np.random.default_rng(seed)
    for layer in kernels(model):
        k = layer.kernel.numpy()
        flat = k.ravel()
        flat[rng.permutation(flat.size)[: round(fraction * flat.size)]] = 0.0
        layer.kernel.assign(flat.reshape(k.shape))


def cluster(model: Any, levels: int) -> None:
    """Round each kernel to `levels` evenly spaced values between its min and max (per tensor)."""
    for layer in kernels(model):
        k = layer.kernel.numpy()
        centers = np.linspace(k.min(), k.max(), levels, dtype=np.float32)
        layer.kernel.assign(centers[np.abs(k[..., None] - centers).argmin(-1)])


def _representative(shape: tuple[int, ...]) -> Any:
    def gen() -> Iterator[list[np.ndarray]]:
        rng = np.random.default_rng(1)
        for _ in range(8):
            yield [rng.random((1, *shape), dtype=np.float32)]

    return gen


def convert(model: Any, mode: str, sparse: bool = False) -> bytes:
    """'int8' (full int8, int8 I/O) or 'float'; `sparse` adds EXPERIMENTAL_SPARSITY."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    optimizations = [tf.lite.Optimize.DEFAULT] if mode == "int8" else []
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    conv.optimizations = optimizations
    if mode == "int8":
        conv.representative_dataset = _representative(tuple(model.input_shape[1:]))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="module")
def pruned() -> dict[str, Any]:
    model = small_cnn(0)
    prune_exactly(model, SPARSITY, seed=0)
    blobs = {
        (mode, sparse): convert(model, mode, sparse) for mode in ("int8", "float") for sparse in (False, True)
    }
    return {"model": model, "blobs": blobs}


@pytest.fixture(scope="module")
def clustered() -> dict[str, Any]:
    model = small_cnn(1)
    cluster(model, LEVELS)
    return {"model": model, "blobs": {mode: convert(model, mode) for mode in ("int8", "float")}}


# ------------------------------------------------------------------ pruned models


@pytest.mark.parametrize("mode", ["int8", "float"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_pruned_weights_found_with_zero_fraction(pruned, mode, sparse):
    stats = weight_stats(pruned["blobs"][(mode, sparse)])
    assert [s.shape for s in stats] == WEIGHT_SHAPES  # biases (int32 / float32) are not weights
    assert [s.op_type for s in stats] == WEIGHT_OPS
    want_dtype = "int8" if mode == "int8" else "float32"
    for s in stats:
        assert s.dtype == want_dtype
        assert s.elements == int(np.prod(s.shape))
        assert s.zeros == pytest.approx(SPARSITY, abs=0.05), s
        assert s.encoding == ("sparse" if sparse else "dense")
        assert (s.index_bytes > 0) == sparse
        assert s.op_index >= 0
    # the converter's sparse encoding of every weight (CONV_2D and FULLY_CONNECTED, int8 and float)
    assert summary(stats)["sparse_tensors"] == (3 if sparse else 0)


@pytest.mark.parametrize("mode", ["int8", "float"])
def test_sparse_encoding_decodes_to_the_dense_files_values(pruned, mode):
    dense = weight_values(pruned["blobs"][(mode, False)])
    sparse = weight_values(pruned["blobs"][(mode, True)])
    assert len(dense) == len(sparse) == 3
    for (d_stat, d_val), (s_stat, s_val) in zip(dense, sparse):
        assert s_stat.encoding == "sparse" and d_stat.encoding == "dense"
        assert s_val.shape == d_val.shape == d_stat.shape
        assert s_val.dtype == d_val.dtype
        np.testing.assert_array_equal(s_val, d_val)
        assert s_stat.zeros == d_stat.zeros
        assert s_stat.unique_values == d_stat.unique_values
        assert s_stat.unique_per_channel == d_stat.unique_per_channel
        assert s_stat.stored_bytes < d_stat.stored_bytes == d_stat.dense_bytes
        if mode == "int8":
            assert s_stat.stored_bytes < s_stat.elements  # one byte a value, only the nonzeros stored


def test_float_weights_equal_the_keras_kernels(pruned):
    """Dense and sparse float files hold exactly the pruned Keras kernels."""
    expected = [tflite_layout(layer.kernel.numpy()) for layer in kernels(pruned["model"])]
    for sparse in (False, True):
        for (stat, values), want in zip(weight_values(pruned["blobs"][("float", sparse)]), expected):
            np.testing.assert_array_equal(values, want)
            assert stat.zeros == pytest.approx(float(np.mean(want == 0)))
            assert stat.unique_values == np.unique(want).size


def test_int8_zero_fraction_counts_quantized_zeros(pruned):
    """int8 rounds the tiniest weights to 0 too: never fewer zeros than the float kernel."""
    floats = weight_stats(pruned["blobs"][("float", False)])
    ints = weight_stats(pruned["blobs"][("int8", False)])
    for f, q in zip(floats, ints):
        assert f.zeros <= q.zeros <= f.zeros + 0.02
        assert q.channels == q.shape[0]  # per-channel along output channels


def test_summary(pruned):
    dense = weight_stats(pruned["blobs"][("int8", False)])
    sparse = weight_stats(pruned["blobs"][("int8", True)])
    total = sum(s.elements for s in dense)
    d, s = summary(dense), summary(sparse)
    assert d["elements"] == s["elements"] == total == 16 * 27 + 32 * 16 + 10 * 32
    weighted = sum(st.zeros * st.elements for st in dense) / total
    assert d["zeros"] == pytest.approx(weighted, abs=1e-3)
    assert d["zeros"] == pytest.approx(SPARSITY, abs=0.05)
    assert s["zero_elements"] == d["zero_elements"]
    assert d["dense_bytes"] == d["stored_bytes"] == total and d["index_bytes"] == 0
    assert d["compression"] == 1.0
    assert s["stored_bytes"] < s["dense_bytes"] and s["index_bytes"] > 0
    assert s["compression"] == pytest.approx(s["dense_bytes"] / (s["stored_bytes"] + s["index_bytes"]))
    assert (s["tensors"], s["sparse_tensors"], d["sparse_tensors"]) == (3, 3, 0)
    assert d["max_unique_values"] == max(st.unique_values for st in dense)

    st = sparse[0]
    assert (st.op_type, st.shape, st.dtype, st.encoding, st.elements) == ("CONV_2D", (16, 3, 3, 3), "int8", "sparse", 432)
    assert summary([])["zeros"] == 0.0


def test_path_and_bytes_agree(pruned, tmp_path):
    blob = pruned["blobs"][("int8", True)]
    path = tmp_path / "m.tflite"
    path.write_bytes(blob)
    assert weight_stats(path) == weight_stats(str(path)) == weight_stats(blob)


def test_not_a_model_raises():
    with pytest.raises(ModelLoadError):
        weight_stats(b"definitely not a flatbuffer")


# ------------------------------------------------------------------ clustered models


def test_clustered_int8_has_at_most_8_values_per_channel(clustered):
    stats = weight_stats(clustered["blobs"]["int8"])
    assert [s.shape for s in stats] == WEIGHT_SHAPES
    for s in stats:
        assert s.channels == s.shape[0] > 1
        assert s.unique_per_channel <= LEVELS, s
        assert s.unique_values >= s.unique_per_channel
    # each channel scales the 8 levels differently: across channels there are more codes
    assert any(s.unique_values > LEVELS for s in stats)
    assert summary(stats)["max_unique_per_channel"] <= LEVELS


def test_clustered_float_has_at_most_8_values_per_tensor(clustered):
    stats = weight_values(clustered["blobs"]["float"])
    expected = [tflite_layout(layer.kernel.numpy()) for layer in kernels(clustered["model"])]
    for (s, values), want in zip(stats, expected):
        np.testing.assert_array_equal(values, want)
        assert s.channels == 1
        assert s.unique_values == s.unique_per_channel == np.unique(want).size <= LEVELS
        assert s.unique_values > 1


# ------------------------------------------------------------------ block sparsity, other constants


def test_block_sparse_fully_connected_decodes():
    """A float Dense whose zeros come in 1x4 blocks is stored block-sparse (block_map set)."""
    K = tf_keras
    tf_keras.utils.set_random_seed(2)
    inp = K.Input((64,))
    model = K.Model(inp, K.layers.Dense(16, name="fc")(inp))
    layer = model.layers[-1]
    k = layer.kernel.numpy()  # (64 in, 16 out); TFLite's (16 out, 64 in) in blocks of 1x4
    blocks = np.zeros(16 * 16, dtype=bool)
    blocks[np.random.default_rng(3).permutation(blocks.size)[: round(SPARSITY * blocks.size)]] = True
    k[np.repeat(blocks.reshape(16, 16), 4, axis=0)] = 0.0
    layer.kernel.assign(k)
    blob = convert(model, "float", sparse=True)

    [(stat, values)] = weight_values(blob)
    assert (stat.op_type, stat.encoding, stat.shape) == ("FULLY_CONNECTED", "sparse", (16, 64))
    np.testing.assert_array_equal(values, k.T)
    assert stat.zeros == pytest.approx(SPARSITY, abs=0.01)
    assert stat.stored_bytes < stat.dense_bytes


def test_other_constants_need_min_elements():
    """A big constant outside a weight slot counts from min_elements on; weight slots always; biases never."""
    K = tf_keras
    tf_keras.utils.set_random_seed(4)
    scale = np.ones((8, 8), dtype=np.float32)
    scale[:, ::2] = 0.0
    inp = K.Input((8, 8))
    x = K.layers.Lambda(lambda t: t * tf.constant(scale), name="scale")(inp)
    x = K.layers.GlobalAveragePooling1D(name="gap")(x)
    model = K.Model(inp, K.layers.Dense(3, name="fc")(x))  # 8x3 kernel: 24 elements
    blob = convert(model, "float")

    stats = {s.op_type: s for s in weight_stats(blob, min_elements=64)}
    assert set(stats) == {"MUL", "FULLY_CONNECTED"}  # no bias, no int32 axis constant
    assert stats["MUL"].shape == (8, 8) and stats["MUL"].zeros == 0.5 and stats["MUL"].unique_values == 2
    assert stats["FULLY_CONNECTED"].elements == 24
    assert [s.op_type for s in weight_stats(blob, min_elements=65)] == ["FULLY_CONNECTED"]


# ------------------------------------------------------------------ the decoder itself

# The examples of TFLite's sparsity format converter tests.
DENSE_3x4 = np.array([[6, 0, 9, 8], [0, 0, 0, 0], [5, 0, 0, 7]], dtype=np.int8)
DENSE_4x4 = np.array([[1, 0, 2, 3], [0, 4, 0, 0], [0, 0, 5, 0], [0, 0, 0, 6]], dtype=np.float32)


def _csr(segments: list[int], indices: list[int]) -> SparseDim:
    return SparseDim(True, 0, np.array(segments, dtype=np.uint8), np.array(indices, dtype=np.uint16))


def test_densify_csr_rows():
    values = np.array([6, 9, 8, 5, 7], dtype=np.int8)
    dims = [SparseDim(False, 3), _csr([0, 3, 3, 5], [0, 2, 3, 0, 3])]
    out = densify(values, (3, 4), [0, 1], [], dims)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, DENSE_3x4)


def test_densify_sparse_rows_then_dense_columns():
    values = np.array([6, 0, 9, 8, 5, 0, 0, 7], dtype=np.int8)
    dims = [_csr([0, 2], [0, 2]), SparseDim(False, 4)]
    np.testing.assert_array_equal(densify(values, (3, 4), [0, 1], [], dims), DENSE_3x4)


def test_densify_column_major_traversal():
    values = np.array([6, 5, 9, 8, 7], dtype=np.int8)
    dims = [SparseDim(False, 4), _csr([0, 2, 2, 3, 5], [0, 2, 0, 0, 2])]
    np.testing.assert_array_equal(densify(values, (3, 4), [1, 0], [], dims), DENSE_3x4)


@pytest.mark.parametrize(
    "order, values",
    [
        ([0, 1, 2, 3], [1, 0, 0, 4, 2, 3, 0, 0, 5, 0, 0, 6]),  # inside a block: row by row
        ([0, 1, 3, 2], [1, 0, 0, 4, 2, 0, 3, 0, 5, 0, 0, 6]),  # inside a block: column by column
    ],
)
def test_densify_2x2_blocks(order, values):
    dims = [SparseDim(False, 2), _csr([0, 2, 3], [0, 1, 1]), SparseDim(False, 2), SparseDim(False, 2)]
    out = densify(np.array(values, dtype=np.float32), (4, 4), order, [0, 1], dims)
    np.testing.assert_array_equal(out, DENSE_4x4)


def test_densify_rejects_inconsistent_metadata():
    dims = [SparseDim(False, 3), _csr([0, 3, 3, 5], [0, 2, 3, 0, 3])]
    with pytest.raises(ValueError, match="stored values"):
        densify(np.arange(4, dtype=np.int8), (3, 4), [0, 1], [], dims)
    with pytest.raises(ValueError, match="outside the shape"):
        densify(np.arange(5, dtype=np.int8), (3, 4), [0, 1], [], [dims[0], _csr([0, 3, 3, 5], [0, 2, 9, 0, 3])])
    with pytest.raises(ValueError, match="segments"):
        densify(np.arange(5, dtype=np.int8), (3, 4), [0, 1], [], [dims[0], _csr([0, 3, 5], [0, 2, 3, 0, 3])])
    with pytest.raises(ValueError, match="size"):
        densify(np.arange(5, dtype=np.int8), (3, 4), [0, 1], [], [SparseDim(False, 2), dims[1]])


def test_weight_stat_properties():
    s = WeightStat("w", "CONV_2D", (4, 4), "int4", 16, 8, "dense", 0.25, 3)
    assert (s.dense_bytes, s.zero_count, s.unique_per_channel, s.channels) == (8, 4, 3, 1)


def test_module_does_not_import_tensorflow():
    code = (
        "import sys; import tfcompress.export.weight_stats; "
        "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

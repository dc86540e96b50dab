"""Tests for tfcompress.data: loading, validating and splitting calibration data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from tfcompress.data import (
    UINT8_WARNING,
    ImageSpec,
    InputSpec,
    Samples,
    load_samples,
    parse_scaling,
    representative_dataset,
    split,
)
from tfcompress.errors import DataError

IMG = [InputSpec("image", (None, 28, 28, 1), "float32")]
VEC = [InputSpec("features", (None, 4), "float32")]
TWO = [InputSpec("image", (None, 8, 8, 1), "float32"), InputSpec("tokens", (None, 5), "int32")]


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def raises(match: str, fn, *args, **kwargs) -> DataError:  # noqa: ANN001 - small test helper
    """Assert a DataError whose message contains `match` (plain text) and has a hint."""
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    assert match in info.value.message, info.value.message
    assert info.value.hint
    assert "\n" not in info.value.message
    return info.value


def write_png(path: Path, color: int | tuple[int, int, int], size: tuple[int, int] = (6, 6), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes (cat: 3, dog: 2, empty: 0), solid-colour images of 6x6."""
    root = tmp_path / "imgs"
    for i in range(3):
        write_png(root / "cat" / f"c{i}.png", (255, 0, 0))
    write_png(root / "dog" / "d0.bmp", (0, 0, 255))
    write_png(root / "dog" / "d1.jpg", (0, 0, 255))  # lossy; sample index 3
    (root / "empty").mkdir()
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


# --------------------------------------------------------------------------- arrays, npy, npz


def test_npy_with_channel_expansion(tmp_path: Path) -> None:
    x = rng().random((5, 28, 28), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    s = load_samples(tmp_path / "x.npy", IMG)
    assert len(s) == 5 and s.y is None and s.labels is None
    assert s.x[0].shape == (5, 28, 28, 1) and s.x[0].dtype == np.float32
    np.testing.assert_array_equal(s.x[0][..., 0], x)
    assert s.preprocessing["expand_channel_axis"] is True
    assert s.preprocessing["kind"] == "npy"
    assert s.source.endswith("x.npy")
    assert s.x[0].flags.writeable
    json.dumps(s.preprocessing)


def test_npz_with_labels(tmp_path: Path) -> None:
    x = rng().random((6, 4), dtype=np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(6) % 3)
    s = load_samples(tmp_path / "data.npz", VEC)
    assert s.source.endswith("data.npz[x]")
    assert s.y.dtype == np.int64 and s.y.tolist() == [0, 1, 2, 0, 1, 2]
    assert "expand_channel_axis" not in s.preprocessing
    assert s.preprocessing["x_keys"] == ["x"] and s.preprocessing["y_key"] == "y"


def test_npz_custom_keys_and_savez_default_key(tmp_path: Path) -> None:
    x = rng().random((3, 4), dtype=np.float32)
    np.savez(tmp_path / "a.npz", feats=x, lab=np.array([2, 0, 1]))
    s = load_samples(tmp_path / "a.npz", VEC, x_key="feats", y_key="lab")
    assert s.y.tolist() == [2, 0, 1]
    np.savez(tmp_path / "b.npz", x)  # stored as arr_0
    assert load_samples(tmp_path / "b.npz", VEC).preprocessing["x_keys"] == ["arr_0"]


def test_multi_input_npz(tmp_path: Path) -> None:
    img = rng().random((4, 8, 8), dtype=np.float32)
    tok = np.arange(20).reshape(4, 5)
    np.savez(tmp_path / "m.npz", a=img, b=tok, y=np.arange(4))
    s = load_samples(tmp_path / "m.npz", TWO, x_key="a, b")
    assert [a.shape for a in s.x] == [(4, 8, 8, 1), (4, 5)]
    assert [a.dtype for a in s.x] == [np.float32, np.int32]
    assert s.source.endswith("m.npz[a,b]")
    assert s.preprocessing["inputs"]["image"]["expand_channel_axis"] is True
    assert "expand_channel_axis" not in s.preprocessing["inputs"]["tokens"]
    # default x_key falls back to the model's input names
    np.savez(tmp_path / "n.npz", image=img, tokens=tok)
    assert load_samples(tmp_path / "n.npz", TWO).preprocessing["x_keys"] == ["image", "tokens"]


def test_direct_arrays_and_tuples() -> None:
    x = rng().random((3, 4), dtype=np.float32)
    assert len(load_samples(x, VEC)) == 3
    s = load_samples((x, np.array([1, 0, 1])), VEC)
    assert s.y.tolist() == [1, 0, 1] and s.source == "arrays"
    s = load_samples([x], VEC)
    assert s.y is None
    two = (rng().random((2, 8, 8, 1)), np.ones((2, 5), np.int64))
    assert [a.dtype for a in load_samples(two, TWO).x] == [np.float32, np.int32]
    s = load_samples((two, np.array([0, 1])), TWO)
    assert s.y.tolist() == [0, 1]
    s = load_samples({"image": two[0], "tokens": two[1], "y": np.array([1, 1])}, TWO)
    assert s.y.tolist() == [1, 1]
    assert load_samples(x[0], VEC).x[0].shape == (1, 4)  # a single sample gets a batch axis


def test_take_slices_consistently() -> None:
    s = load_samples((np.arange(40, dtype=np.float32).reshape(10, 4), np.arange(10)), VEC)
    part = s.take(2, 5)
    assert len(part) == 3 and part.y.tolist() == [2, 3, 4]
    assert part.x[0][0, 0] == 8 and part.source == s.source


def test_max_samples() -> None:
    s = load_samples((np.zeros((10, 4)), np.arange(10)), VEC, max_samples=4)
    assert len(s) == 4 and s.y.tolist() == [0, 1, 2, 3]
    raises("max_samples must be >= 1", load_samples, np.zeros((2, 4)), VEC, max_samples=0)


def test_uint8_for_float_model_warns_but_works() -> None:
    x = np.full((2, 28, 28, 1), 200, np.uint8)
    s = load_samples(x, IMG)
    assert s.x[0].dtype == np.float32 and s.x[0].max() == 200.0
    assert s.preprocessing["warning"] == UINT8_WARNING
    assert s.preprocessing["inputs"]["image"]["cast"] == "uint8->float32"
    assert "warning" not in load_samples(np.ones((2, 28, 28, 1), np.uint8), IMG).preprocessing


def test_uint8_arrays_scaled_when_image_spec_given() -> None:
    x = np.full((2, 28, 28), 255, np.uint8)
    s = load_samples(x, IMG, image=ImageSpec("-1,1"))
    np.testing.assert_allclose(s.x[0], 1.0)
    assert "warning" not in s.preprocessing
    assert s.preprocessing["inputs"]["image"]["scaling"]["spec"] == "-1,1"
    # float data is taken as already scaled
    f = load_samples(x.astype(np.float32) / 255, IMG, image=ImageSpec("-1,1"))
    np.testing.assert_allclose(f.x[0], 1.0)


def test_labels_one_hot_strings_and_regression() -> None:
    x = np.zeros((3, 4), np.float32)
    assert load_samples((x, np.eye(3)[[2, 0, 1]]), VEC).y.tolist() == [2, 0, 1]
    s = load_samples((x, np.array(["dog", "cat", "dog"])), VEC)
    assert s.y.tolist() == [1, 0, 1] and s.labels == ("cat", "dog")
    s = load_samples((x, np.array([[0.5], [1.5], [2.25]])), VEC)
    assert s.y is None and "labels_dropped" in s.preprocessing


def test_integer_valued_floats_for_int_input() -> None:
    spec = [InputSpec("tokens", (None, 3), "int32")]
    s = load_samples(np.array([[1.0, 2.0, 3.0]]), spec)
    assert s.x[0].dtype == np.int32 and s.x[0].tolist() == [[1, 2, 3]]


# --------------------------------------------------------------------------- errors


def test_missing_path(tmp_path: Path) -> None:
    raises("nope.npz", load_samples, tmp_path / "nope.npz", VEC)


def test_unsupported_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("1,2,3,4\n")
    raises("d.csv", load_samples, tmp_path / "d.csv", VEC)


@pytest.mark.parametrize("name", ["bad.npy", "bad.npz"])
def test_corrupt_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"\x93NUMPY garbage that is not an array")
    raises(name, load_samples, tmp_path / name, VEC)


def test_truncated_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.zeros((100, 4), np.float32))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) // 2])
    raises("t.npy", load_samples, tmp_path / "t.npy", VEC)


def test_npz_with_corrupt_member(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", x=np.arange(4000, dtype=np.float32).reshape(1000, 4))
    data = bytearray((tmp_path / "c.npz").read_bytes())
    data[2000:2010] = b"\xff" * 10  # inside the member's bytes: CRC check fails on read
    (tmp_path / "c.npz").write_bytes(bytes(data))
    raises("cannot read", load_samples, tmp_path / "c.npz", VEC)


def test_file_kind_is_read_from_content(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 4)))
    (tmp_path / "a.npy").rename(tmp_path / "really-npy.npz")
    assert load_samples(tmp_path / "really-npy.npz", VEC).preprocessing["kind"] == "npy"


def test_object_arrays_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    raises("o.npy", load_samples, tmp_path / "o.npy", VEC)


def test_npz_missing_key_lists_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "k.npz", images=np.zeros((2, 4)), labels=np.zeros(2))
    err = raises("no key 'x'", load_samples, tmp_path / "k.npz", VEC)
    assert "k.npz" in err.message and "images, labels" in err.message
    err = raises("no label key 'lbl'", load_samples, tmp_path / "k.npz", VEC, x_key="images", y_key="lbl")
    assert "images, labels" in err.message


@pytest.mark.parametrize(
    ("data", "specs", "kwargs", "match"),
    [
        (np.zeros((2, 4)), TWO, {}, "got 1 array for a model with 2 inputs (image, tokens)"),
        ((np.zeros((2, 4)),) * 3, VEC, {}, "tuple of 3 item(s) for a model with 1 input(s)"),
        ({"a": np.zeros((2, 8, 8)), "b": np.zeros((2, 5))}, TWO, {"x_key": "a"}, "names 1 key(s)"),
    ],
)
def test_wrong_number_of_inputs(data: object, specs: list[InputSpec], kwargs: dict, match: str) -> None:
    raises(match, load_samples, data, specs, **kwargs)


def test_npy_for_multi_input_model(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.zeros((2, 8, 8, 1)))
    raises("2 inputs (image, tokens)", load_samples, tmp_path / "one.npy", TWO)


def test_shape_mismatch_says_expected_and_got() -> None:
    err = raises("expects shape (N, 28, 28, 1)", load_samples, np.zeros((3, 28, 27, 1)), IMG)
    assert "got (3, 28, 27, 1)" in err.message and "'image'" in err.message
    raises("got (3, 28, 28, 3)", load_samples, np.zeros((3, 28, 28, 3)), IMG)


@pytest.mark.parametrize(
    ("data", "spec", "match"),
    [
        (np.array([[0.5, 1.0, 2.0]]), InputSpec("tokens", (None, 3), "int32"), "non-integer value(s) for the int32 input"),
        (np.array([["a", "b", "c"]]), InputSpec("f", (None, 3), "float32"), "<U1 data (strings/objects/complex)"),
        (np.array([[1, 2, 300]]), InputSpec("q", (None, 3), "int8"), "do not fit the int8 input"),
        (np.array([[1e300, 0, 0]]), InputSpec("f", (None, 3), "float32"), "overflow float32"),
        (np.array([[0, 2, 1]]), InputSpec("mask", (None, 3), "bool"), "0/1 values"),
        (np.zeros((1, 3)), InputSpec("s", (None, 3), "str"), "only numeric/bool inputs"),
    ],
)
def test_unsafe_dtype(data: np.ndarray, spec: InputSpec, match: str) -> None:
    raises(match, load_samples, data, [spec])


def test_nan_and_inf_count_and_first_index() -> None:
    x = np.zeros((6, 4), np.float32)
    x[4, 1] = np.nan
    x[2, 0] = np.inf
    x[4, 3] = np.nan
    err = raises("2 NaN and 1 Inf value(s), first at sample 2", load_samples, x, VEC)
    assert "'features'" in err.message
    raises("2 NaN value(s), first at sample 1", load_samples, x[3:], VEC)


def test_empty_data(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros((0, 4), np.float32))
    raises("no samples", load_samples, tmp_path / "e.npy", VEC)
    raises("no samples", load_samples, lambda: iter([]), VEC)


def test_label_count_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "l.npz", x=np.zeros((5, 4)), y=np.zeros(4))
    err = raises("labels count (4) != samples count (5)", load_samples, tmp_path / "l.npz", VEC)
    assert "l.npz" in err.message


def test_inputs_with_different_counts() -> None:
    raises("different sample counts (image: 2, tokens: 3)", load_samples, (np.zeros((2, 8, 8)), np.zeros((3, 5))), TWO)


# --------------------------------------------------------------------------- callables and iterators


def test_callable_generator_of_xy_batches() -> None:
    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(3):
            yield np.full((2, 28, 28), i, np.float32), np.array([i, i])

    s = load_samples(batches, IMG)
    assert s.source == "callable" and len(s) == 6 and s.y.tolist() == [0, 0, 1, 1, 2, 2]
    assert s.x[0].shape == (6, 28, 28, 1) and s.preprocessing["expand_channel_axis"] is True


def test_callable_multi_input_and_list_of_batches() -> None:
    def batches() -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.zeros((2, 8, 8, 1)), np.ones((2, 5))), (np.zeros((1, 8, 8, 1)), np.ones((1, 5)))]

    s = load_samples(batches, TWO)
    assert len(s) == 3 and s.y is None and s.x[1].dtype == np.int32


def test_callable_returning_direct_data() -> None:
    s = load_samples(lambda: (np.zeros((4, 4)), np.arange(4)), VEC)
    assert len(s) == 4 and s.source == "callable -> arrays"


def test_infinite_generator_stops_at_max_samples() -> None:
    def forever() -> Iterator[np.ndarray]:
        while True:
            yield np.zeros((3, 4))

    assert len(load_samples(forever, VEC, max_samples=7)) == 7
    assert len(load_samples(forever(), VEC, max_samples=2)) == 2


def test_callable_errors() -> None:
    def broken() -> None:
        raise RuntimeError("disk on fire")

    raises("broken() failed: RuntimeError: disk on fire", load_samples, broken, VEC)

    def bad_batch() -> Iterator[np.ndarray]:
        yield np.zeros((2, 4))
        yield np.zeros((2, 5))

    raises("callable (batch 1): input 'features' expects shape (N, 4)", load_samples, bad_batch, VEC)

    def mixed() -> Iterator[object]:
        yield np.zeros((2, 4)), np.zeros(2)
        yield np.zeros((2, 4))

    raises("some batches have labels", load_samples, mixed, VEC)
    raises("returned int", load_samples, lambda: 3, VEC)


# --------------------------------------------------------------------------- tf.data


@pytest.fixture(scope="module")
def tf():  # noqa: ANN201 - the TensorFlow module
    from tfcompress.keras_compat import tf as tensorflow

    return tensorflow


def test_dataset_unbatched_and_batched(tf) -> None:  # noqa: ANN001
    x = rng().random((10, 28, 28), dtype=np.float32)
    y = np.arange(10) % 4
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    for dataset in (ds, ds.batch(3)):
        s = load_samples(dataset, IMG)
        assert s.source == "tf.data.Dataset" and len(s) == 10
        assert s.x[0].shape == (10, 28, 28, 1)
        np.testing.assert_allclose(s.x[0][..., 0], x)
        assert s.y.tolist() == y.tolist()
    assert load_samples(ds, IMG).preprocessing["inputs"]["image"]["added_batch_axis"] is True
    assert "added_batch_axis" not in load_samples(ds.batch(3), IMG).preprocessing["inputs"]["image"]


def test_dataset_dicts_and_multi_input(tf) -> None:  # noqa: ANN001
    ds = tf.data.Dataset.from_tensor_slices(
        ({"image": np.zeros((4, 8, 8, 1), np.float32), "tokens": np.ones((4, 5), np.int64)}, np.arange(4))
    ).batch(2)
    s = load_samples(ds, TWO)
    assert len(s) == 4 and s.y.tolist() == [0, 1, 2, 3] and s.x[1].dtype == np.int32
    tfds_like = tf.data.Dataset.from_tensor_slices({"img": np.zeros((3, 4), np.float32), "label": np.arange(3)})
    s = load_samples(tfds_like, VEC, x_key="img", y_key="label")
    assert s.y.tolist() == [0, 1, 2]


def test_dataset_infinite_needs_max_samples(tf) -> None:  # noqa: ANN001
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((3, 4), np.float32)).repeat()
    raises("infinite", load_samples, ds, VEC)
    assert len(load_samples(ds.batch(2), VEC, max_samples=5)) == 5


def test_dataset_shape_error_names_batch(tf) -> None:  # noqa: ANN001
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((3, 5), np.float32)).batch(2)
    raises("tf.data.Dataset (batch 0): input 'features' expects shape (N, 4) (N = samples), got (2, 5)", load_samples, ds, VEC)


# --------------------------------------------------------------------------- image folders


def test_image_folder_with_classes(image_folder: Path) -> None:
    spec = [InputSpec("image", (None, 4, 4, 3), "float32")]
    s = load_samples(image_folder, spec)
    assert s.labels == ("cat", "dog", "empty")
    assert len(s) == 5 and s.x[0].shape == (5, 4, 4, 3)
    assert s.y.tolist() == [0, 1, 0, 1, 0]  # round-robin over classes
    np.testing.assert_allclose(s.x[0][0, 0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(s.x[0][1, 0, 0], [0.0, 0.0, 1.0])
    p = s.preprocessing
    assert p["kind"] == "image_folder" and p["classes"] == ["cat", "dog", "empty"]
    assert p["resize"] == {"method": "bilinear", "to": [4, 4], "resized": 5}
    assert p["color_mode"] == "RGB" and p["ignored_files"] == 1
    assert p["scaling"]["spec"] == "0,1"
    assert s.source.endswith("imgs/ (3 classes)")
    json.dumps(p)


@pytest.mark.parametrize(
    ("scale", "red", "blue"),
    [
        ("0,1", [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
        ("-1,1", [1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]),
        ("raw", [255.0, 0.0, 0.0], [0.0, 0.0, 255.0]),
        (
            "mean=0.485,0.456,0.406;std=0.229,0.224,0.225",
            [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225],
            [-0.485 / 0.229, -0.456 / 0.224, (1 - 0.406) / 0.225],
        ),
    ],
)
def test_image_folder_scaling(image_folder: Path, scale: str, red: list[float], blue: list[float]) -> None:
    spec = [InputSpec("image", (None, 6, 6, 3), "float32")]
    s = load_samples(image_folder, spec, image=ImageSpec(scale=scale, resize="nearest"))
    np.testing.assert_allclose(s.x[0][0], np.broadcast_to(red, (6, 6, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.x[0][1], np.broadcast_to(blue, (6, 6, 3)), rtol=1e-5, atol=1e-6)
    assert s.preprocessing["scaling"]["spec"] == scale
    assert s.preprocessing["resize"]["resized"] == 0


def test_flat_grayscale_folder_and_layouts(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", 51, size=(10, 12), mode="L")
    write_png(tmp_path / "b.png", (255, 255, 255), size=(30, 30))
    s = load_samples(tmp_path, IMG, max_samples=1)
    assert s.y is None and s.labels is None and len(s) == 1
    assert s.x[0].shape == (1, 28, 28, 1)
    np.testing.assert_allclose(s.x[0], 0.2, atol=1e-6)
    assert s.preprocessing["color_mode"] == "L"
    nchw = load_samples(tmp_path, [InputSpec("x", (None, 3, 5, 5), "float32")])
    assert nchw.x[0].shape == (2, 3, 5, 5) and nchw.preprocessing["layout"] == "NCHW"
    nhw = load_samples(tmp_path, [InputSpec("x", (None, 5, 5), "float32")])
    assert nhw.x[0].shape == (2, 5, 5)


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    raises("has no images", load_samples, tmp_path / "empty", IMG)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG not really")
    raises("broken.png", load_samples, tmp_path / "bad", IMG)
    write_png(tmp_path / "ok" / "a.png", 1)
    raises("image folders feed 1 input", load_samples, tmp_path / "ok", TWO)
    raises("not an image", load_samples, tmp_path / "ok", VEC)
    write_png(tmp_path / "ok" / "b.png", 1, size=(3, 3))
    raises("different sizes", load_samples, tmp_path / "ok", [InputSpec("x", (None, None, None, 3), "float32")])


@pytest.mark.parametrize("spec", ["0", "1,0", "a,b", "mean=0.5", "mean=0.5;std=0", "mean=1,2;std=1,2,3", "nan,1"])
def test_bad_scaling_specs(spec: str) -> None:
    raises(f"bad scaling '{spec}'", parse_scaling, spec)
    with pytest.raises(DataError):
        ImageSpec(scale=spec)


def test_scaling_values_and_bad_resize() -> None:
    assert parse_scaling("0,1").scale == (1 / 255,)
    s = parse_scaling("-1,1")
    assert s.scale == (2 / 255,) and s.offset == (-1.0,)
    assert parse_scaling("raw").scale == (1.0,) and parse_scaling("RAW").offset == (0.0,)
    assert len(parse_scaling("mean=0.5;std=0.25,0.5,1").scale) == 3
    raises("unknown resize method 'cubic'", ImageSpec, resize="cubic")
    raises("3 channel values but the data has 1", parse_scaling("mean=1,2,3;std=1").apply, np.zeros((1, 2, 2, 1)), "x")


# --------------------------------------------------------------------------- split and representative data


def make_samples(n: int) -> Samples:
    return load_samples((np.arange(n * 4, dtype=np.float32).reshape(n, 4), np.arange(n)), VEC)


def test_split_held_out() -> None:
    cal, ver, info = split(make_samples(10), 6, 3)
    assert info == {"calibration": 6, "verification": 3, "verification_held_out": True}
    assert cal.y.tolist() == list(range(6)) and ver.y.tolist() == [6, 7, 8]
    _, ver, info = split(make_samples(10), 6, None)
    assert ver.y.tolist() == [6, 7, 8, 9] and info["verification"] == 4


def test_split_partial_and_reuse() -> None:
    _, ver, info = split(make_samples(8), 6, 5)
    assert info["verification"] == 2 and info["verification_held_out"] is True
    cal, ver, info = split(make_samples(4), 6, None)
    assert info["calibration"] == 4 and info["verification"] == 4
    assert info["verification_held_out"] is False and "reuses" in info["note"]
    assert ver.y.tolist() == cal.y.tolist() == [0, 1, 2, 3]
    _, ver, info = split(make_samples(4), 4, 2)
    assert info == {**info, "verification": 2, "verification_held_out": False} and ver.y.tolist() == [0, 1]
    raises("must be >= 1", split, make_samples(3), 0, None)
    raises("must be >= 1 or None", split, make_samples(3), 1, 0)


def test_representative_dataset() -> None:
    two = load_samples((np.zeros((3, 8, 8, 1)), np.ones((3, 5))), TWO)
    batches = list(representative_dataset(two))
    assert len(batches) == 3
    assert all(isinstance(b, list) and [a.shape for a in b] == [(1, 8, 8, 1), (1, 5)] for b in batches)
    assert [a.dtype for a in batches[0]] == [np.float32, np.int32]
    assert [len(b[0]) for b in representative_dataset(two, batch=2)] == [2, 1]


# --------------------------------------------------------------------------- property test

DTYPES = [np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64, "<U2"]
SPEC_DTYPES = ["float32", "int32", "int8", "uint8", "bool", "float16"]


@st.composite
def array_and_spec(draw: st.DrawFn) -> tuple[np.ndarray, list[InputSpec]]:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    elements = (
        st.floats(allow_nan=draw(st.booleans()), allow_infinity=draw(st.booleans()), width=16)
        if np.dtype(dtype).kind in "fc"
        else None
    )
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    dims = [d if draw(st.booleans()) else None for d in shape[1:]]
    if draw(st.booleans()):  # sometimes a spec unrelated to the data
        dims = draw(st.lists(st.one_of(st.none(), st.integers(0, 4)), max_size=4))
    return array, [InputSpec("in", (None, *dims), draw(st.sampled_from(SPEC_DTYPES)))]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=array_and_spec(), with_labels=st.booleans())
def test_load_samples_raises_only_data_error(data: tuple[np.ndarray, list[InputSpec]], with_labels: bool) -> None:
    array, specs = data
    source = (array, np.arange(array.shape[0] if array.ndim else 1)) if with_labels else array
    try:
        s = load_samples(source, specs)
    except DataError as err:
        assert err.message and "\n" not in err.message
        return
    assert len(s) >= 1
    assert s.x[0].dtype == np.dtype(specs[0].dtype)
    assert s.x[0].ndim == len(specs[0].shape)
    if s.x[0].dtype.kind == "f":
        assert np.isfinite(s.x[0]).all()
    json.dumps(s.preprocessing)

"""Real models through every command: which work, how close int8 is, bytes before and after (issue 17).

    python benchmarks/model_matrix.py                       # every model, every shipped recipe (shortened)
    python benchmarks/model_matrix.py --models small        # the fast ones (what tests/test_model_matrix.py runs)
    python benchmarks/model_matrix.py --models MobileNetV3Small,text --recipes prune-50,qat

Models (weights=None: nothing downloads; random inputs and labels: the figures are int8 fidelity, not accuracy):
Keras 3 `keras.applications` MobileNetV2, MobileNetV3Small / Large, EfficientNetB0, ResNet50, DenseNet121 at
`--side` x `--side` x 3 with 10 classes; a text classifier (int32 token ids, Embedding + pooling); a small
Transformer encoder (MultiHeadAttention, LayerNormalization, GELU, residuals written `x + y`); a Conv1D audio
classifier on 1,000-sample waveforms; FMNIST-CNN saved by tf_keras as `.h5`.

Biases and BatchNormalization statistics are set to random values as after training (`as_if_trained`).

Commands per model: `convert` (int8; agreement and SNR on held-out samples, near-ties counted), `inspect`, the
predicted latency on the shipped host profile (or why not), `profile MODEL` (its kernels timed into a LUT), the
Keras callbacks (CompressionLogger + LatencyLogger in the model's own `fit`), and `compress` with each `--recipes` entry, every
stage cut to 1 epoch of 2 steps (the point is that it runs and what it writes, not accuracy): worked, .tflite
bytes, and the plain `convert` bytes it is compared with.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

APPS = ("MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0", "ResNet50", "DenseNet121")
SMALL = ("text", "transformer", "audio", "fmnist_h5")


def build(name: str, folder: Path, side: int = 96, n: int = 160):
    """(model file, data .npz) for `name`, written into `folder`."""
    from tfcompress.keras_compat import keras3 as k
    from tfcompress.keras_compat import tf_keras

    rng = np.random.default_rng(0)
    k.utils.set_random_seed(0)
    y = rng.integers(0, 10, n).astype(np.int64)
    if name in APPS:
        model = getattr(k.applications, name)(input_shape=(side, side, 3), weights=None, classes=10)
        x = rng.uniform(0, 255 if "EfficientNet" in name or "V3" in name else 1, (n, side, side, 3)).astype(np.float32)
    elif name == "text":
        inp = k.Input((32,), dtype="int32", name="tokens")
        h = k.layers.GlobalAveragePooling1D()(k.layers.Embedding(2000, 32)(inp))
        model = k.Model(inp, k.layers.Dense(10)(k.layers.Dense(64, activation="relu")(h)), name="text")
        x = rng.integers(0, 2000, (n, 32)).astype(np.int32)
    elif name == "transformer":
        inp = k.Input((16, 32), name="x")
        h = inp + k.layers.MultiHeadAttention(2, 16)(inp, inp)
        h = k.layers.LayerNormalization()(h)
        f = k.layers.Dense(32)(k.layers.Dense(64, activation="gelu")(h))
        h = k.layers.LayerNormalization()(h + f)
        model = k.Model(inp, k.layers.Dense(10)(k.layers.GlobalAveragePooling1D()(h)), name="transformer")
        x = rng.normal(size=(n, 16, 32)).astype(np.float32)
    elif name == "audio":
        inp = k.Input((1000, 1), name="wave")
        h = inp
        for f in (16, 32, 64):
            h = k.layers.MaxPooling1D(4)(k.layers.Conv1D(f, 9, padding="same", activation="relu")(h))
        model = k.Model(inp, k.layers.Dense(10)(k.layers.GlobalAveragePooling1D()(h)), name="audio")
        x = rng.normal(0, 0.3, (n, 1000, 1)).astype(np.float32)
    elif name == "fmnist_h5":
        from tfcompress.models import fmnist_cnn

        tf_keras.utils.set_random_seed(0)
        model = fmnist_cnn("tf_keras")
        x = rng.uniform(0, 1, (n, 28, 28, 1)).astype(np.float32)
        as_if_trained(model)
        path = folder / f"{name}.h5"
        model.save(path)
        np.savez(folder / f"{name}.npz", x=x, y=y)
        return path, folder / f"{name}.npz"
    else:
        raise SystemExit(f"unknown model {name!r}: {', '.join(APPS + SMALL)}")
    as_if_trained(model)
    path = folder / f"{name}.keras"
    model.save(path)
    np.savez(folder / f"{name}.npz", x=x, y=y)
    return path, folder / f"{name}.npz"


def as_if_trained(model, seed: int = 0) -> None:
    """Biases, BatchNormalization statistics and normalisation scales set to random values, as after training.

    weights=None leaves them at their initial values (zeros, ones): every bias of the converted file is then the
    same all-zero array, which the converter stores once, and any trained copy (a compress result after a single
    step) looks larger than plain `convert` for that reason alone."""
    rng = np.random.default_rng(seed)
    spread = {"bias": (0.0, 0.05), "beta": (0.0, 0.1), "moving_mean": (0.0, 0.1), "gamma": (1.0, 0.2),
              "moving_variance": (1.0, 0.2)}
    for w in model.weights:
        kind = w.name.split("/")[-1].split(":")[0]
        if kind in spread:
            mean, sd = spread[kind]
            value = rng.normal(mean, sd, tuple(w.shape)).astype(np.float32)
            w.assign(np.abs(value) if kind == "moving_variance" else value)


def shortened(recipe: str):
    """A shipped recipe with every training stage cut to 1 epoch of 2 steps."""
    from tfcompress.recipe import load_recipe, parse_recipe_dict, recipe_to_dict

    d = recipe_to_dict(load_recipe(recipe))
    for st in d.get("stages", []):
        if st.get("epochs", 0):
            st["epochs"], st["steps_per_epoch"] = 1, 2
    return parse_recipe_dict(d, source=f"{recipe} (shortened)")


def _why(size_note: str) -> str:
    """The causes a size note names, without its figures' preamble."""
    return size_note.split("): ", 1)[-1][:200]


def _error(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
    return " ".join(str(msg).split())[:160]


def run_model(name: str, recipes: list[str], folder: Path, side: int = 96, commands: bool = True) -> list[dict]:
    """One row per command for `name`: {model, command, ok, detail, before, after}."""
    from click.testing import CliRunner

    import tfcompress
    from tfcompress.cli import main
    from tfcompress.hardware.predict import predict_latency_ms

    rows: list[dict] = []
    path, data = build(name, folder, side)

    def row(command: str, ok: bool, detail: str, before: int | None = None, after: int | None = None, s: float = 0):
        rows.append({"model": name, "command": command, "ok": ok, "detail": detail, "before": before, "after": after,
                     "seconds": round(s, 1)})
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)  # progress: each row as it ends

    if not commands:
        return _compress_rows(name, recipes, folder, path, data, row, rows)
    t = time.perf_counter()
    plain = None
    try:
        res = tfcompress.convert(str(path), str(data), output=folder / f"{name}.tflite", verify_samples=64,
                                 latency_runs=5)
        o = res.report.verify.outputs[0]
        ties = f", {100 * o.near_ties:.0f}% near-ties" if o.near_ties else ""
        agree = f"agreement {100 * o.top1_agreement:.0f}%{ties}, " if o.top1_agreement is not None else ""
        notes = "; ".join(n for n in res.report.notes if "tf_keras" in n)
        plain = len(res.tflite)
        row("convert", True, f"{agree}SNR {o.snr_db:.1f} dB" + (" (via the tf_keras rebuild)" if notes else ""),
            path.stat().st_size, plain, time.perf_counter() - t)
    except Exception as exc:  # noqa: BLE001  (a matrix records every failure)
        row("convert", False, _error(exc), path.stat().st_size, None, time.perf_counter() - t)
    t = time.perf_counter()
    r = CliRunner().invoke(main, ["inspect", str(path)])
    row("inspect", r.exit_code == 0, "" if r.exit_code == 0 else _error(Exception(r.output[-300:])), s=time.perf_counter() - t)
    t = time.perf_counter()
    if plain is not None:
        try:
            pred = predict_latency_ms(folder / f"{name}.tflite", "host")
            row("predict (host)", True, f"{pred.total_ms:.3f} ms, LUT hit {100 * pred.lut_hit_rate:.0f}%",
                s=time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001
            row("predict (host)", False, _error(exc), s=time.perf_counter() - t)
    t = time.perf_counter()
    r = CliRunner().invoke(main, ["profile", str(path), "-o", str(folder / f"{name}-profile.json"),
                                  "--cache", str(folder / "lut-cache"), "--budget-s", "600"])
    kernels = _profile_kernels(folder / f"{name}-profile.json") if r.exit_code == 0 else None
    row("profile", r.exit_code == 0 and bool(kernels),
        f"{kernels} kernels timed" if r.exit_code == 0 else _error(Exception(r.output[-300:])), s=time.perf_counter() - t)
    t = time.perf_counter()
    try:
        row("callbacks", *_callbacks(path, data), s=time.perf_counter() - t)
    except Exception as exc:  # noqa: BLE001
        row("callbacks", False, _error(exc), s=time.perf_counter() - t)
    return _compress_rows(name, recipes, folder, path, data, row, rows)


def _compress_rows(name: str, recipes: list[str], folder: Path, path: Path, data: Path, row: Any,
                   rows: list[dict]) -> list[dict]:
    import tfcompress

    for recipe in recipes:
        t = time.perf_counter()
        try:
            got = tfcompress.compress(str(path), shortened(recipe), str(data),
                                      output=folder / f"{name}-{recipe}.tflite", measure_stages=False,
                                      on_warning=lambda _w: None)
            note = got.report.size_note
            row(f"compress {recipe}", True, f"larger than convert: {_why(note)}" if note else "",
                got.report.plain_convert_bytes, len(got.convert.tflite), time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001
            row(f"compress {recipe}", False, _error(exc), s=time.perf_counter() - t)
        _release()
    return rows


def _release() -> None:
    """Drop what a compress run left in Keras' global state: a process running every recipe on a large model
    otherwise grows past 14 GB (killed for memory here with MobileNetV3Small at the fifth recipe)."""
    import gc

    from tfcompress.keras_compat import keras3, tf_keras

    tf_keras.backend.clear_session()
    keras3.backend.clear_session()
    gc.collect()


def _profile_kernels(path: Path) -> int:
    import json

    return len(json.loads(path.read_text()).get("entries", []))


def _callbacks(path: Path, data: Path) -> tuple[bool, str]:
    """The model fitted as its own Keras flavour (Keras 3 or tf_keras) for one epoch of 2 batches with
    CompressionLogger and LatencyLogger: (worked, what they logged)."""
    from tfcompress.keras_compat import keras3, tf_keras
    from tfcompress.monitoring import CompressionLogger, LatencyLogger

    keras = tf_keras if path.suffix == ".h5" else keras3
    model = keras.models.load_model(path, compile=False)
    arrays = np.load(data)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    latency, compression = LatencyLogger("host"), CompressionLogger()
    model.fit(arrays["x"][:32], arrays["y"][:32], epochs=1, batch_size=16, verbose=0, callbacks=[latency, compression])
    logged = (f"predicted {latency.history[-1]:.3f} ms/epoch" if latency.history else latency.not_predicted or "")
    ok = len(compression.history) == 1 and bool(latency.history or latency.not_predicted)
    return ok, f"{keras.__name__.split('.')[0]} fit: {logged}, sparsity of {sum(k.endswith('/sparsity') for k in compression.history[0])} kernels"


def table(rows: list[dict]) -> str:
    lines = ["| model | command | worked | detail | bytes before | bytes after | s |", "|---|---|:-:|---|---:|---:|---:|"]
    for r in rows:
        b = f"{r['before']:,}" if r["before"] else ""
        a = f"{r['after']:,}" if r["after"] else ""
        lines.append(f"| {r['model']} | {r['command']} | {'yes' if r['ok'] else '**no**'} | {r['detail']} | {b} | {a} "
                     f"| {r['seconds']:g} |")
    return "\n".join(lines)


def main() -> int:
    from tfcompress.recipe import list_shipped_recipes

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="all", help="comma-separated names, 'small' or 'all'")
    ap.add_argument("--recipes", default="all", help="comma-separated shipped recipes, 'all', or '' (none)")
    ap.add_argument("--side", type=int, default=96, help="input side of the keras.applications models")
    ap.add_argument("--compress-only", action="store_true",
                    help="only the compress rows (run one model and recipe per process: CQAT on MobileNetV2 at 64x64 "
                         "reached 21 GB before it was killed, and a process that runs many recipes on a large model was killed for "
                         "memory here)")
    a = ap.parse_args()
    import tfcompress.keras_compat  # noqa: F401

    models = list(APPS + SMALL) if a.models == "all" else list(SMALL) if a.models == "small" else a.models.split(",")
    recipes = list_shipped_recipes() if a.recipes == "all" else [r for r in a.recipes.split(",") if r]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)
            try:
                rows += run_model(name, recipes, Path(tmp), a.side, commands=not a.compress_only)
            except Exception:  # noqa: BLE001  (a model that cannot even be built is a row too)
                rows.append({"model": name, "command": "build", "ok": False, "before": None, "after": None,
                             "detail": traceback.format_exc().splitlines()[-1][:160], "seconds": 0})
    print(table(rows))
    bad = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} worked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

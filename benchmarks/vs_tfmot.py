"""tfcompress recipes vs the same pipelines written by hand with TF-MOT + TFLiteConverter.

    python benchmarks/vs_tfmot.py                                   # all nine recipes (20-30 min, 2 cores)
    python benchmarks/vs_tfmot.py --recipes prune-50,pcqat --train-samples 5000 --epochs-scale 0.5   # smoke

Everything runs in one process on the FMNIST-CNN trained 10 epochs (`train_fmnist_cnn(DemoConfig(epochs=10))`,
cached in ~/.cache/tfcompress). For each recipe, two pipelines start from a fresh copy of that model
(clone_model + set_weights) after `tf_keras.utils.set_random_seed(0)`:

* hand TF-MOT: what the TF-MOT guides show, with the recipe's epochs, Adam learning rates, batch size (128)
  and schedule parameters, read from the same loaded recipe:
  - prune: whole-model `prune_low_magnitude(PolynomialDecay | ConstantSparsity[, sparsity_m_by_n])`,
    `UpdatePruningStep`, `strip_pruning`; end_step = ceil(n / 128) * epochs, frequency 100 (TF-MOT's default;
    capped at end_step // 4 like tfcompress does, which only matters for smoke runs);
  - cluster: whole-model `cluster_weights(number_of_clusters=16, KMEANS_PLUS_PLUS[, preserve_sparsity])`,
    `strip_clustering`;
  - qat: `quantize_model`; PQAT `quantize_apply(quantize_annotate_model(m), Default8BitPrunePreserveQuantizeScheme())`;
    CQAT / PCQAT `Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False / True)`;
  - convert: `TFLiteConverter.from_keras_model`, optimizations [DEFAULT], representative dataset of the first
    200 training images, supported_ops [TFLITE_BUILTINS_INT8], int8 input / output. No EXPERIMENTAL_SPARSITY
    (users rarely know the flag), so the hand-written prune-80 .tflite stays dense.
  A TF-MOT call that raises is reported as FAILED with the error's first line.
* tfcompress: `compress(model, recipe, (x_train, y_train), val_data=(x_val, y_val), measure_stages=False,
  verify=False)`.

Data: fine-tuning on the first 55,000 Fashion-MNIST training images (the last 5,000 are validation data for both
pipelines' `fit`); accuracy of both .tflite files on the 10,000 test images in LiteRT through
`tfcompress.export.verify.TfliteRunner` (inputs quantized with the input scale / zero point). Latency: median of
batch-1 invoke() on 1 thread, measured for all files at the end in interleaved rounds (median of the round
medians) so that load from other processes on a shared machine hits every row alike. gzip = gzip -9 of the
.tflite. "zeros" / "uniq/ch" are read back from the .tflite weights (fraction of zero int8 codes over all weight
tensors, largest unique-value count within one channel).
"""

from __future__ import annotations

import argparse
import gzip
import math
import shlex
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALL_RECIPES = (
    "prune-50",
    "prune-80-sparse",
    "prune-2of4",
    "cluster-16",
    "qat",
    "pqat",
    "cqat",
    "pcqat",
    "mobile-int8",
)
TOLERANCE_PP = 0.3
VAL_SAMPLES = 5000
CALIB_SAMPLES = 200
BATCH = 128


@dataclass
class Row:
    recipe: str
    who: str
    acc: float | None = None
    tflite: bytes | None = field(default=None, repr=False)
    seconds: float = 0.0
    error: str | None = None
    resolver: str = "-"
    latency_ms: float | None = None
    zeros: float | None = None
    max_unique: int | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.tflite is not None

    @property
    def nbytes(self) -> int | None:
        return len(self.tflite) if self.tflite is not None else None

    @property
    def gzbytes(self) -> int | None:
        return len(gzip.compress(self.tflite, compresslevel=9)) if self.tflite is not None else None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0].strip() if text else ""
    return f"{type(e).__name__}: {line}"[:200]


def scaled_recipe(recipe, scale: float):
    """The recipe with every training stage's epochs multiplied by `scale` (rounded up, >= 1)."""
    if scale == 1.0:
        return recipe
    stages = tuple(
        replace(s, epochs=max(1, math.ceil(s.epochs * scale))) if s.epochs > 0 else s for s in recipe.stages
    )
    return replace(recipe, stages=stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(ALL_RECIPES), help="comma-separated recipe names")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every stage's epochs (round up, >= 1)")
    parser.add_argument("--train-samples", type=int, default=None, help="fine-tune on only the first N training images")
    parser.add_argument("--latency-rounds", type=int, default=3, help="interleaved latency rounds at the end")
    parser.add_argument("--latency-runs", type=int, default=100, help="timed batch-1 runs per round")
    args = parser.parse_args()
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in ALL_RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {', '.join(ALL_RECIPES)}")
    if args.epochs_scale <= 0:
        parser.error("--epochs-scale must be > 0")

    print("$ " + shlex.join(["python", *sys.argv]), flush=True)

    from tfcompress.keras_compat import tf, tf_keras

    import tensorflow_model_optimization as tfmot

    from tfcompress.compression import compress
    from tfcompress.demo import DemoConfig, fashion_mnist_float, train_fmnist_cnn
    from tfcompress.export.verify import TfliteRunner
    from tfcompress.export.weight_stats import summary, weight_stats
    from tfcompress.keras_compat import versions
    from tfcompress.quiet import captured_output
    from tfcompress.recipe import load_recipe
    from tfcompress.runtime import runtime_version

    import platform

    vers = versions()
    print(
        f"machine: {platform.machine()}, python {platform.python_version()}, tensorflow {vers['tensorflow']}, "
        f"tf_keras {vers['tf_keras']}, tensorflow-model-optimization {tfmot.__version__}, {runtime_version()}",
        flush=True,
    )

    # ------------------------------------------------------------------ data
    (xtr, ytr), (x_test, y_test) = fashion_mnist_float()
    x_train, y_train = xtr[:-VAL_SAMPLES], ytr[:-VAL_SAMPLES]
    x_val, y_val = xtr[-VAL_SAMPLES:], ytr[-VAL_SAMPLES:]
    if args.train_samples:
        x_train, y_train = x_train[: args.train_samples], y_train[: args.train_samples]
    calib = x_train[:CALIB_SAMPLES]  # compress calibrates on the first 200 training samples too
    print(
        f"data: fine-tune {len(x_train):,} / validation {len(x_val):,} / test {len(x_test):,} images; "
        f"epochs x{args.epochs_scale}",
        flush=True,
    )

    log("baseline: FMNIST-CNN, 10 epochs (cached in ~/.cache/tfcompress)")
    base, path, cached = train_fmnist_cnn(DemoConfig(epochs=10))
    log(f"baseline {'loaded from' if cached else 'trained, saved to'} {path}")
    base_weights = base.get_weights()

    def fresh():
        tf_keras.backend.clear_session()
        tf_keras.utils.set_random_seed(0)
        model = tf_keras.models.clone_model(base)
        model.set_weights(base_weights)
        return model

    def evaluate(row: Row) -> Row:
        runner = TfliteRunner(row.tflite, threads=1)
        logits = runner.run((x_test,))[0]
        row.acc = float(np.mean(np.argmax(logits, axis=1) == y_test))
        row.resolver = runner.resolver
        try:
            s = summary(weight_stats(row.tflite))
            row.zeros, row.max_unique = s["zeros"], s["max_unique_per_channel"]
        except Exception as e:  # a reader bug must not lose the row
            row.note = (row.note + f" weight_stats failed: {first_line(e)}").strip()
        return row

    # ------------------------------------------------- hand-written TF-MOT code
    loss = lambda: tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # noqa: E731

    def fit(model, stage, callbacks=()):
        model.compile(optimizer=tf_keras.optimizers.Adam(stage.learning_rate), loss=loss(), metrics=["accuracy"])
        model.fit(
            x_train,
            y_train,
            batch_size=stage.batch_size,
            epochs=stage.epochs,
            validation_data=(x_val, y_val),
            callbacks=list(callbacks),
            verbose=0,
        )

    def hand_prune(model, stage):
        p = stage.params
        sk = tfmot.sparsity.keras
        end_step = int(np.ceil(len(x_train) / stage.batch_size)) * stage.epochs
        frequency = min(100, max(1, end_step // 4))
        if p.schedule == "constant":
            sched = sk.ConstantSparsity(p.final_sparsity, begin_step=0, end_step=end_step, frequency=frequency)
        else:
            sched = sk.PolynomialDecay(
                initial_sparsity=p.initial_sparsity,
                final_sparsity=p.final_sparsity,
                begin_step=0,
                end_step=end_step,
                frequency=frequency,
            )
        kwargs = {"pruning_schedule": sched}
        if p.m_by_n:
            kwargs["sparsity_m_by_n"] = tuple(p.m_by_n)
        pruned = sk.prune_low_magnitude(model, **kwargs)
        fit(pruned, stage, [sk.UpdatePruningStep()])
        return sk.strip_pruning(pruned)

    def hand_cluster(model, stage):
        p = stage.params
        ck = tfmot.clustering.keras
        init = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}
        kwargs = {
            "number_of_clusters": p.clusters,
            "cluster_centroids_init": getattr(ck.CentroidInitialization, init[p.init]),
        }
        if p.preserve_sparsity:
            kwargs["preserve_sparsity"] = True
        clustered = ck.cluster_weights(model, **kwargs)
        fit(clustered, stage)
        return ck.strip_clustering(clustered)

    def hand_qat(model, stage, earlier: list[str]):
        scheme = stage.params.scheme
        if scheme == "auto":  # what the recipe's "auto" picks, from what the earlier stages did
            scheme = {
                (False, False): "default",
                (True, False): "prune_preserve",
                (False, True): "cluster_preserve",
                (True, True): "prune_cluster_preserve",
            }[("prune" in earlier, "cluster" in earlier)]
        qk = tfmot.quantization.keras
        combine = tfmot.experimental.combine
        if scheme == "default":
            qat = qk.quantize_model(model)
        elif scheme == "prune_preserve":
            qat = qk.quantize_apply(qk.quantize_annotate_model(model), combine.Default8BitPrunePreserveQuantizeScheme())
        else:
            preserve = scheme == "prune_cluster_preserve"
            qat = qk.quantize_apply(
                qk.quantize_annotate_model(model),
                combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=preserve),
            )
        fit(qat, stage)
        return qat

    def hand_convert(model) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def representative_dataset():
            for i in range(len(calib)):
                yield [calib[i : i + 1]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        with captured_output():
            return converter.convert()

    def run_hand(recipe) -> Row:
        row = Row(recipe.name, "hand TF-MOT")
        model = fresh()
        t0 = time.perf_counter()
        earlier: list[str] = []
        step = "?"
        try:
            for stage in recipe.stages:
                step = stage.technique
                if stage.technique == "prune":
                    model = hand_prune(model, stage)
                elif stage.technique == "cluster":
                    model = hand_cluster(model, stage)
                elif stage.technique == "qat":
                    model = hand_qat(model, stage, earlier)
                else:
                    raise NotImplementedError(f"no hand-written version of technique '{stage.technique}'")
                earlier.append(stage.technique)
            step = "convert"
            row.tflite = hand_convert(model)  # the recipe's export: settings (int8); sparse has no hand version
        except Exception as e:
            row.error = f"{step}: {first_line(e)}"
            traceback.print_exc()
        row.seconds = time.perf_counter() - t0
        return row

    def run_tfcompress(recipe) -> Row:
        row = Row(recipe.name, "tfcompress")
        model = fresh()
        t0 = time.perf_counter()
        try:
            res = compress(
                model, recipe, (x_train, y_train), val_data=(x_val, y_val), measure_stages=False, verify=False
            )
            row.tflite = res.convert.tflite
        except Exception as e:
            row.error = first_line(e)
            traceback.print_exc()
        row.seconds = time.perf_counter() - t0
        return row

    # --------------------------------------------------------------- baseline
    rows: list[Row] = []
    pred = base.predict(x_test, batch_size=256, verbose=0)
    float_acc = float(np.mean(np.argmax(pred, axis=1) == y_test))
    rows.append(Row("baseline", "float Keras", acc=float_acc, note="10-epoch model, no compression"))
    t0 = time.perf_counter()
    ptq = Row("baseline", "hand PTQ int8", tflite=hand_convert(fresh()))
    ptq.seconds = time.perf_counter() - t0
    rows.append(evaluate(ptq))
    log(f"baseline: float {float_acc:.4f}, PTQ int8 {ptq.acc:.4f}, {ptq.nbytes:,} bytes")

    # ---------------------------------------------------------------- recipes
    pairs: dict[str, tuple[Row, Row]] = {}
    for name in recipes:
        recipe = scaled_recipe(load_recipe(name), args.epochs_scale)
        plan = ", ".join(
            f"{s.technique}" + (f" {s.epochs}ep lr {s.learning_rate:g}" if s.epochs else "") for s in recipe.stages
        )
        log(f"{name}: {plan}")
        pair = []
        for who, runner in (("hand TF-MOT", run_hand), ("tfcompress", run_tfcompress)):
            log(f"{name}: {who} ...")
            row = runner(recipe)
            if row.ok:
                try:
                    evaluate(row)
                except Exception as e:
                    row.error = f"evaluate: {first_line(e)}"
                    traceback.print_exc()
            if row.ok:
                log(f"{name}: {who}: acc {row.acc:.4f}, {row.nbytes:,} bytes, {row.seconds:.0f} s")
            else:
                log(f"{name}: {who}: FAILED {row.error}")
            pair.append(row)
            rows.append(row)
        pairs[name] = (pair[0], pair[1])

    # ------------------------------------------------ latency, interleaved
    timed = [r for r in rows if r.ok]
    log(f"latency: {len(timed)} files, {args.latency_rounds} interleaved rounds of {args.latency_runs} batch-1 runs")
    runners = {id(r): TfliteRunner(r.tflite, threads=1) for r in timed}
    medians: dict[int, list[float]] = {id(r): [] for r in timed}
    for _ in range(args.latency_rounds):
        for r in timed:
            lat = runners[id(r)].latency((x_test,), runs=args.latency_runs, budget_s=10.0)
            medians[id(r)].append(lat.median_ms)
    for r in timed:
        r.latency_ms = statistics.median(medians[id(r)])

    # ------------------------------------------------------------------ table
    hand_acc = {name: (h.acc if h.ok else None) for name, (h, _) in pairs.items()}
    head = (
        f"{'recipe':16s} {'who':14s} {'test acc':>8s} {'Δ pp':>6s} {'.tflite B':>10s} {'gzip B':>9s} "
        f"{'lat ms':>7s} {'zeros':>6s} {'uniq/ch':>7s} {'runtime needs':>14s} {'sec':>6s}"
    )
    print()
    print(
        f"FMNIST-CNN (10-epoch baseline), test acc of the int8 .tflite on 10,000 test images; "
        f"latency = LiteRT {runtime_version()}, 1 thread, batch 1, median"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.error is not None:
            print(f"{r.recipe:16s} {r.who:14s} FAILED ({r.seconds:.0f} s): {r.error}")
            continue
        acc = f"{r.acc:.4f}" if r.acc is not None else "-"
        delta = "-"
        if r.who == "tfcompress" and r.acc is not None and hand_acc.get(r.recipe) is not None:
            delta = f"{100 * (r.acc - hand_acc[r.recipe]):+.2f}"
        nb = f"{r.nbytes:,}" if r.nbytes is not None else "-"
        gz = f"{r.gzbytes:,}" if r.gzbytes is not None else "-"
        lat = f"{r.latency_ms:.3f}" if r.latency_ms is not None else "-"
        zeros = f"{r.zeros:.0%}" if r.zeros is not None else "-"
        uniq = f"{r.max_unique}" if r.max_unique is not None else "-"
        needs = {"default": "XNNPACK", "builtin": "builtin only"}.get(r.resolver, r.resolver)
        sec = f"{r.seconds:.0f}" if r.seconds else "-"
        line = (
            f"{r.recipe:16s} {r.who:14s} {acc:>8s} {delta:>6s} {nb:>10s} {gz:>9s} {lat:>7s} {zeros:>6s} "
            f"{uniq:>7s} {needs:>14s} {sec:>6s}"
        )
        print(line + (f"  {r.note}" if r.note else ""))

    # ---------------------------------------------------------------- targets
    print()
    print(f"targets (accuracy: tfcompress >= hand-written - {TOLERANCE_PP} pp):")
    all_pass = True
    for name, (hand, ours) in pairs.items():
        if not ours.ok:
            verdict, why = "FAIL", f"tfcompress failed: {ours.error}"
        elif not hand.ok:
            verdict, why = "PASS", f"hand-written TF-MOT failed ({hand.error}); tfcompress {ours.acc:.4f}"
        else:
            d = 100 * (ours.acc - hand.acc)
            verdict = "PASS" if d >= -TOLERANCE_PP else "FAIL"
            why = f"tfcompress {ours.acc:.4f} vs hand {hand.acc:.4f} ({d:+.2f} pp)"
        all_pass &= verdict == "PASS"
        print(f"  {verdict}  {name:16s} accuracy: {why}")
    if "prune-80-sparse" in pairs:
        hand, ours = pairs["prune-80-sparse"]
        if ours.ok and hand.ok:
            verdict = "PASS" if ours.nbytes < hand.nbytes else "FAIL"
            why = f"tfcompress {ours.nbytes:,} B vs hand prune-80 {hand.nbytes:,} B ({ours.nbytes / hand.nbytes:.2f}x)"
        elif ours.ok:
            verdict, why = "PASS", f"hand-written failed ({hand.error}); tfcompress {ours.nbytes:,} B"
        else:
            verdict, why = "FAIL", f"tfcompress failed: {ours.error}"
        all_pass &= verdict == "PASS"
        print(f"  {verdict}  {'prune-80-sparse':16s} raw .tflite smaller than hand-written prune-80: {why}")
    print(f"overall: {'PASS' if all_pass else 'FAIL'}")
    print(f"total {time.perf_counter() - T_START:.0f} s")


T_START = time.perf_counter()

if __name__ == "__main__":
    main()

"""Knowledge distillation after structured pruning, measured against plain fine-tuning.

    python benchmarks/distill.py            # about 10 minutes on 2 idle cores
    python benchmarks/distill.py --quick    # smoke test (figures meaningless)

FMNIST-CNN trained 10 epochs (Adam 1e-3, batch 128; the demo's cached model when
present, else trained here) is the teacher. 50% and 70% of its channels are removed
(`prune_channels`, Taylor criterion on 1,024 training images, global allocation);
each pruned model is then fine-tuned 3 epochs twice from the same weights and seed:
on the labels (cross-entropy), and with `distill` (default T=4, alpha=0.1: 90% of the
loss is matching the teacher's softened outputs; --temperature / --alpha). Same optimizer (Adam, cosine decay from
1e-3, batch 128). Accuracy: float and int8 (.tflite in LiteRT) on the 10,000 test images.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from structured import compile_model, measure, say, train


def fine_tune(model, x, y, epochs, *, teacher=None, temperature=4.0, alpha=0.1, seed=1, lr=1e-3):
    """Cosine-decayed Adam on labels, or distillation from `teacher`; returns seconds."""
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.distill import Params, distiller

    tf_keras.utils.set_random_seed(seed)
    steps = epochs * int(np.ceil(len(x) / 128))
    target = model if teacher is None else distiller(model, teacher, Params(temperature=temperature, alpha=alpha))
    compile_model(target, tf_keras.optimizers.schedules.CosineDecay(lr, steps))
    t0 = time.perf_counter()
    target.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.1, help="weight of the label loss")
    ap.add_argument("--teacher-width", type=float, default=None,
                    help="distill from a wider FMNIST-CNN trained 10 epochs here instead of the model itself")
    args = ap.parse_args(argv)

    from tfcompress.demo import DemoConfig, fashion_mnist_float, train_fmnist_cnn
    from tfcompress.keras_compat import tf_keras
    from tfcompress.techniques.structured import plan_pruning, prune_channels

    (xtr, ytr), (xte, yte) = fashion_mnist_float()
    ft_epochs = 1 if args.quick else 3
    if args.quick:
        xtr, ytr, xte, yte = xtr[:6000], ytr[:6000], xte[:1000], yte[:1000]
    calib, test = (xtr[:200], ytr[:200]), (xte, yte)
    teacher, path, cached = train_fmnist_cnn(DemoConfig(epochs=1 if args.quick else 10))
    say(f"teacher: FMNIST-CNN 10 epochs ({'cached ' + str(path) if cached else 'trained now'})")
    base = teacher  # what gets pruned
    if args.teacher_width:
        from tfcompress.models import fmnist_cnn

        tf_keras.utils.set_random_seed(0)
        teacher = fmnist_cnn("tf_keras", width=args.teacher_width)
        secs = train(teacher, xtr, ytr, 1 if args.quick else 10)
        say(f"teacher: FMNIST-CNN width {args.teacher_width:g}, trained 10 epochs here ({secs:.0f} s)")
    row, _ = measure(f"teacher (width {args.teacher_width or 1:g})", teacher, calib, test)
    lines = [f"{'model':40s} {'params':>8s} {'float acc':>9s} {'int8 acc':>9s} {'int8 bytes':>10s} {'s':>5s}",
             f"{row.name:40s} {row.params:8,d} {row.float_acc:9.4f} {row.int8_acc:9.4f} {row.tflite_bytes:10,d} {'':>5s}"]
    for ratio in (0.5, 0.7):
        pct = int(ratio * 100)
        plan = plan_pruning(base, ratio=ratio, criterion="taylor", allocation="global",
                            data=(xtr[:1024], ytr[:1024]))
        pruned = prune_channels(base, plan=plan, data=(xtr[:1024], ytr[:1024]))
        compile_model(pruned, 1e-3)
        acc0 = float(pruned.evaluate(xte, yte, batch_size=512, verbose=0)[1])
        say(f"{pct}% channels removed: {pruned.count_params():,} params, accuracy right after surgery {acc0:.4f}")
        results = {}
        for how, t in (("labels", None), ("distill", teacher)):
            student = tf_keras.models.clone_model(pruned)
            student.set_weights(pruned.get_weights())
            secs = fine_tune(student, xtr, ytr, ft_epochs, teacher=t, temperature=args.temperature, alpha=args.alpha)
            label = how if t is None else f"distill T={args.temperature:g} a={args.alpha:g}"
            row, _ = measure(f"pruned {pct}% + {ft_epochs} ep {label}", student, calib, test)
            results[how] = row
            say(f"  {how}: float {row.float_acc:.4f}, int8 {row.int8_acc:.4f} ({secs:.0f} s)")
            lines.append(f"{row.name:40s} {row.params:8,d} {row.float_acc:9.4f} {row.int8_acc:9.4f} "
                         f"{row.tflite_bytes:10,d} {secs:5.0f}")
        gain = 100 * (results["distill"].int8_acc - results["labels"].int8_acc)
        lines.append(f"{'  distill - labels (int8, pp)':40s} {gain:+27.2f}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

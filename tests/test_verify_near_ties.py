"""Verification explains low agreement: near-ties (float margin within one output step) are set apart (issue 17).

An untrained model's logits are nearly equal, so rounding alone flips its top-1 on most samples: 0-9% agreement
beside an SNR above 36 dB read like a broken conversion. The metrics now say what share are near-ties and the
agreement on the rest.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfcompress.export.verify import output_metrics


def test_near_uniform_outputs_are_reported_as_near_ties():
    rng = np.random.default_rng(0)
    ref = 0.5 + rng.normal(0, 1e-3, (200, 10))  # an untrained head: every class within a hair
    step = 0.01  # one int8 output step
    out = np.round(ref / step) * step  # what int8 does to it
    m = output_metrics("logits", ref, out, step)
    assert m.snr_db > 36 and m.top1_agreement < 0.5, "the case of the issue: high SNR, low agreement"
    assert m.near_ties == 1.0 and m.decisive_agreement is None and m.step == step


def test_decisive_samples_keep_their_agreement():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 0.001, (300, 5))
    winners = rng.integers(0, 5, 300)
    ref[np.arange(200), winners[:200]] += 1.0  # 200 clear winners, 100 near-ties
    step = 0.02
    out = np.round(ref / step) * step
    m = output_metrics("logits", ref, out, step)
    assert m.near_ties == pytest.approx(1 / 3)
    assert m.decisive_agreement == 1.0 and m.top1_agreement < 1.0


def test_float_outputs_use_the_largest_error_as_the_step():
    ref = np.array([[1.0, 0.0], [0.5, 0.49]])
    out = np.array([[0.98, 0.0], [0.49, 0.5]])
    m = output_metrics("p", ref, out)  # no quantization scale: the step is max |err| = 0.02
    assert m.step == pytest.approx(0.02) and m.near_ties == 0.5 and m.decisive_agreement == 1.0
    assert output_metrics("v", np.ones((4, 1)), np.ones((4, 1))).near_ties is None, "not a class vector"



def test_an_untrained_model_reads_as_near_ties_not_as_broken(tmp_path):
    """Converted for real: an untrained CNN's int8 output; the report and the terminal name the near-ties."""
    import json

    from rich.console import Console

    import tfcompress
    from tfcompress.keras_compat import tf_keras
    from tfcompress.render import render

    tf_keras.utils.set_random_seed(0)
    L = tf_keras.layers
    inp = tf_keras.Input((16, 16, 3))
    x = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu")(inp))
    head = L.Dense(10)
    model = tf_keras.Model(inp, head(x))
    rng = np.random.default_rng(0)  # ten near-identical classes: outputs span a wide range, margins a hair
    head.set_weights([np.repeat(rng.normal(0, 1, (8, 1)), 10, axis=1) + rng.normal(0, 1e-5, (8, 10)),
                      np.zeros(10)])
    x_data = np.random.default_rng(0).uniform(0, 1, (96, 16, 16, 3)).astype(np.float32)
    res = tfcompress.convert(model, x_data, output=tmp_path / "m.tflite", verify_samples=48, latency_runs=5)
    (o,) = res.report.verify.outputs
    assert o.step is not None and o.step > 0, "int8 output: its scale is the step"
    assert o.near_ties == 1.0, "ten copies of one class: every sample is a near-tie"
    saved = json.loads(res.report_path.read_text())["verify"]["outputs"][0]
    assert saved["near_ties"] == 1.0 and saved["decisive_agreement"] is None
    console = Console(record=True, width=200)
    render(res.report, console)
    assert "100% near-ties within one output step" in console.export_text()

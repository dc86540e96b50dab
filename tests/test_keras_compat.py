"""The Keras seam: one module imports TensorFlow / Keras, and import order does not matter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import tfcompress

PACKAGE = Path(tfcompress.__file__).parent
IMPORT = re.compile(r"^\s*(import|from)\s+(tensorflow|tf_keras|keras)(\.|\s|$)", re.M)


def test_only_keras_compat_imports_tensorflow_or_keras():
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "keras_compat.py" and IMPORT.search(p.read_text())
    ]
    assert offenders == []


def test_legacy_flag_is_set_and_both_kerases_are_there():
    import os

    from tfcompress.keras_compat import keras3, tf_keras

    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert tf_keras.__version__.startswith("2.")
    assert keras3.__version__.startswith("3.")


_TF_FIRST = """
import numpy as np
import tensorflow as tf                      # the user imported TensorFlow first (tf.keras is Keras 3)
import pytest

import tfcompress
from tfcompress import keras_compat
import tensorflow_model_optimization as tfmot
from tfcompress.models import fmnist_cnn

assert keras_compat.LEGACY_FLAG_WAS_LATE
model = tfcompress.load_model(fmnist_cnn("keras3"))        # bridged into tf_keras
pruned = tfmot.sparsity.keras.prune_low_magnitude(model)   # TF-MOT accepts it
assert any("prune_low_magnitude" in l.name for l in pruned.layers)
x = np.random.default_rng(0).random((30, 28, 28, 1), dtype=np.float32)
res = tfcompress.convert(model, x, verify_samples=10, latency_runs=3)
assert res.report.io_dtypes == ("int8", "int8")
print("OK")
"""


@pytest.mark.slow
def test_tensorflow_imported_first_still_works():
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}  # a fresh user's shell
    proc = subprocess.run([sys.executable, "-c", _TF_FIRST], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")

"""Issue 17's model matrix, fast variants: models people have (not image CNNs only) through every command.

`benchmarks/model_matrix.py --models small`: a text classifier (int32 token ids), a Transformer encoder written
with tensor operators (`x + y`, MultiHeadAttention, LayerNormalization, GELU), a Conv1D audio classifier and a
tf_keras `.h5`, each through convert (int8, verified), inspect, the host latency prediction and compress with
`prune-50` and `qat` cut to 2 steps. The keras.applications rows are opt-in (the benchmark, README table).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("model_matrix", Path(__file__).parents[1] / "benchmarks" / "model_matrix.py")
matrix = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(matrix)


@pytest.mark.slow
@pytest.mark.parametrize("name", matrix.SMALL)
def test_every_command_works_on(name, tmp_path):
    rows = matrix.run_model(name, ["prune-50", "qat"], tmp_path)
    failed = [f"{r['command']}: {r['detail']}" for r in rows if not r["ok"]]
    assert not failed, failed
    commands = {r["command"] for r in rows}
    assert {"convert", "inspect", "predict (host)", "compress prune-50", "compress qat"} <= commands
    convert = next(r for r in rows if r["command"] == "convert")
    assert "SNR" in convert["detail"] and convert["after"] > 0
    compressed = [r for r in rows if r["command"].startswith("compress")]
    assert all(r["after"] > 0 and r["before"] > 0 for r in compressed), "both sizes recorded"

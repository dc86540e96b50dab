"""Issue 17's model matrix, fast variants: models people have (not image CNNs only) through every command.

`benchmarks/model_matrix.py --models small`: a text classifier (int32 token ids), a Transformer encoder written
with tensor operators (`x + y`, MultiHeadAttention, LayerNormalization, GELU), a Conv1D audio classifier and a
tf_keras `.h5`, each through convert (int8, verified), inspect, the host latency prediction, `profile MODEL`, the
Keras callbacks in the model's own `fit`, and compress with every shipped recipe cut to 2 steps (the `.h5`:
`prune-50` and `qat`). The keras.applications rows are opt-in (the benchmark, README table).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("model_matrix", Path(__file__).parents[1] / "benchmarks" / "model_matrix.py")
matrix = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(matrix)


RECIPES = {"fmnist_h5": ["prune-50", "qat"]}  # the others: every shipped recipe


@pytest.mark.slow
@pytest.mark.parametrize("name", matrix.SMALL)
def test_every_command_works_on(name, tmp_path):
    from tfcompress.recipe import list_shipped_recipes, load_recipe

    recipes = RECIPES.get(name) or list_shipped_recipes()
    rows = matrix.run_model(name, recipes, tmp_path)
    failed = [f"{r['command']}: {r['detail']}" for r in rows if not r["ok"]]
    assert not failed, failed
    commands = {r["command"] for r in rows}
    assert {"convert", "inspect", "predict (host)", "profile", "callbacks"} <= commands
    assert {f"compress {r}" for r in recipes} <= commands
    convert = next(r for r in rows if r["command"] == "convert")
    assert "SNR" in convert["detail"] and convert["after"] > 0
    compressed = {r["command"].split()[1]: r for r in rows if r["command"].startswith("compress")}
    assert all(r["after"] > 0 and r["before"] > 0 for r in compressed.values()), "both sizes recorded"
    # never larger than plain convert in weights: recipes without QAT are no larger at all; with QAT, a larger
    # file holds no more weight bytes and says where the rest went (graph: names, requantize ops)
    for recipe, r in compressed.items():
        if "qat" not in {st.technique for st in load_recipe(recipe).stages}:
            assert r["after"] <= r["before"], (recipe, r)
        elif r["after"] > r["before"]:
            assert re.match(r"larger than convert: weights and constants (\+0|-[\d,]+) B", r["detail"]), (recipe, r)

"""The technique contract: a technique defined in this file runs through a recipe, the CLI and the Keras callbacks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import BaseModel, ConfigDict, Field

import tfcompress
from tfcompress.cli import main
from tfcompress.keras_compat import tf_keras
from tfcompress.recipe import parse_recipe_dict
from tfcompress.techniques import TECHNIQUES, Capability, StageContext, Technique, register_technique, unregister_technique

PACKAGE = Path(tfcompress.__file__).resolve().parent
SEEN: dict[str, list] = {"apply": [], "callbacks": [], "strip": [], "epochs": []}


class HalveParams(BaseModel):
    """Params of the toy technique."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    factor: float = Field(0.5, gt=0, le=1)


def _halve(model, params: HalveParams, rules, ctx: StageContext):
    """Scale every Dense kernel by `factor` (a technique that changes weights, not structure)."""
    SEEN["apply"].append((params.factor, ctx.total_steps, ctx.data is not None))
    clone = tf_keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:
        if isinstance(layer, tf_keras.layers.Dense):
            kernel, *rest = layer.get_weights()
            layer.set_weights([kernel * params.factor, *rest])
    return clone


class _EpochCounter(tf_keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        SEEN["epochs"].append(epoch)


def _callbacks(params, ctx):
    SEEN["callbacks"].append(ctx.log_dir)
    return [_EpochCounter()]


def _strip(model):
    SEEN["strip"].append(model.name)
    return model


TOY = Technique(
    name="toy_halve",
    summary="scale Dense kernels (a test technique)",
    params_type=HalveParams,
    apply=_halve,
    strip=_strip,
    callbacks=_callbacks,
    capabilities=frozenset({Capability.USES_DATA}),
)


@pytest.fixture
def toy():
    for v in SEEN.values():
        v.clear()
    register_technique(TOY)
    yield TOY
    unregister_technique(TOY.name)


def _mlp():
    return tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(16, activation="relu"),
                                tf_keras.layers.Dense(3)], name="mlp")


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8), dtype=np.float32), rng.integers(0, 3, n)


RECIPE = {"name": "toy", "stages": [{"technique": "toy_halve", "epochs": 1, "steps_per_epoch": 2, "batch_size": 16,
                                     "params": {"factor": 0.25}}],
          "export": {"mode": "int8", "calib_samples": 16}}


def test_registered_technique_is_validated_by_the_recipe_schema(toy):
    recipe = parse_recipe_dict(RECIPE)
    assert recipe.stages[0].params == HalveParams(factor=0.25)
    bad = {**RECIPE, "stages": [{**RECIPE["stages"][0], "params": {"factor": 2}}]}
    with pytest.raises(tfcompress.TfcompressError, match="factor"):
        parse_recipe_dict(bad)
    with pytest.raises(ValueError, match="already registered"):
        register_technique(TOY)


def test_registered_technique_through_compress_api(toy):
    x, y = _data()
    result = tfcompress.compress(_mlp(), parse_recipe_dict(RECIPE), (x, y), measure_stages=False, device=None)
    assert [s.technique for s in result.stages] == ["toy_halve"]
    assert SEEN["apply"] == [(0.25, 2, True)], "params, total steps and data reach apply through the context"
    assert SEEN["epochs"] == [0] and SEEN["strip"], "its callbacks ran in fit and strip ran after"
    assert result.convert.report.io_dtypes == ("int8", "int8")


def test_registered_technique_through_the_cli(toy, tmp_path):
    import yaml

    x, y = _data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    _mlp().save(tmp_path / "m.keras")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "m.tflite"
    res = CliRunner().invoke(main, ["compress", str(tmp_path / "m.keras"), "--recipe", str(tmp_path / "r.yaml"),
                                    "--data", str(tmp_path / "d.npz"), "-o", str(out), "--device", "none",
                                    "--no-stage-metrics"])
    assert res.exit_code == 0, res.output
    assert out.exists() and SEEN["apply"]


def test_registered_technique_through_keras_callbacks(toy, tmp_path):
    x, y = _data()
    recipe = parse_recipe_dict(RECIPE)
    model = tfcompress.prepare(_mlp(), recipe, steps_per_epoch=3)
    cbs = tfcompress.callbacks(recipe, steps_per_epoch=3, log_dir=str(tmp_path))
    model.compile(optimizer="adam", loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=cbs)
    assert SEEN["epochs"] == [0, 1] and SEEN["callbacks"] == [f"{tmp_path}/stage0_toy_halve"]
    assert "mean_sparsity" in history.history, "the generic compression logger rides along"
    final = tfcompress.finalize(model)
    assert [type(layer).__name__ for layer in final.layers] == ["Dense", "Dense"], "nothing wrapped, nothing lost"


def test_every_builtin_technique_declares_the_contract():
    for name, entry in TECHNIQUES.items():
        assert entry.name == name and entry.summary
        assert isinstance(entry.params_type(), entry.params_type), f"{name}: Params() needs every default"
        assert callable(entry.apply) and callable(entry.strip) and callable(entry.callbacks)


def test_the_generic_loop_names_no_technique():
    """compression.py and stages.py read registry entries; a technique's name in them is a special case."""
    names = [n for n in TECHNIQUES if n != TOY.name] + ["student", "teacher_of", "pruning", "clustering"]
    for module in ("compression.py", "stages.py"):
        code = "\n".join(
            line for line in (PACKAGE / module).read_text().splitlines() if not line.lstrip().startswith("#")
        )
        found = [n for n in names if re.search(rf"\b{re.escape(n)}\b", code)]
        assert not found, f"{module} names technique(s) {found}"

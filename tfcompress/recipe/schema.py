"""The recipe's pydantic models, and the check of a located tree against them.

The models say what a recipe may hold (types, ranges, defaults, descriptions): the file's top level
(`RecipeFile`), the training settings every stage shares (`StageBase`), a rule and its `match`, and,
per technique, a stage model whose `params` is the technique's own pydantic `Params` and whose rules'
`params` are any subset of them. `recipe_model` puts them together as one model whose JSON Schema is
the recipe format (`tfcompress recipes --schema`).

`build_recipe` validates a `Located` tree with these models (strict JSON-mode validation: `true` is
never a number, `1.5` never an integer, lists fill tuples, enums take their values) and turns the first
`ValidationError` into a `RecipeError` at the offending key's line: `FILE:LINE: key path: problem (hint)`,
where the problem is phrased from the failing field's JSON Schema and the hint is its description.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping, NoReturn, Union

from pydantic import (
    BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError, create_model,
    field_validator, model_validator,
)

from tfcompress.recipe.order import check_stage_order
from tfcompress.recipe.yaml_tree import Located, error, short, show, suggest
from tfcompress.techniques.rules import MAX_PATTERN_CHARS, compile_pattern
from tfcompress.types import ExportSettings, LayerMatch, LayerRule, Recipe, Stage

CONVERT = "convert"  # the export sugar: `- technique: convert` as the last stage sets `export`
_FROZEN = ConfigDict(extra="forbid", frozen=True)


# ----------------------------------------------------------------- models


class MatchModel(BaseModel):
    """Which layers a rule targets."""

    model_config = _FROZEN

    name: StrictStr | None = Field(
        None, max_length=MAX_PATTERN_CHARS,
        description="regex searched (re.search semantics, run by RE2) in the layer's name")
    class_name: StrictStr | None = Field(
        None, alias="class", max_length=MAX_PATTERN_CHARS,
        description="regex searched (re.search semantics, run by RE2) in the layer's class name")

    @field_validator("name", "class_name")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            compile_pattern(pattern)  # ValueError: invalid, or not runnable in linear time
        return pattern

    @model_validator(mode="after")
    def _one(self) -> MatchModel:
        if self.name is None and self.class_name is None:
            raise ValueError("needs 'name' and/or 'class'")
        return self


class RuleBase(BaseModel):
    """One per-layer rule; per technique, `params` is typed as a subset of the technique's params."""

    model_config = _FROZEN

    match: MatchModel = Field(
        description="which layers: 'name' and/or 'class', regexes searched (re.search semantics, run by RE2) in the "
        "layer's name / class name; both given = both must match. e.g. `match: {name: \"^logits$\"}`")
    skip: StrictBool = Field(False, description="`skip: true` leaves matching layers untouched by this stage")
    params: dict[str, Any] | None = Field(
        None, description="overrides of the stage's params for matching layers (same keys and types); the stage's "
        "params with these applied must pass the technique's checks")

    @field_validator("params")
    @classmethod
    def _not_with_skip(cls, params: Any, info: Any) -> Any:
        if params is not None and info.data.get("skip"):
            raise ValueError("a rule cannot both skip layers ('skip: true') and set 'params'")
        return params


class StageBase(BaseModel):
    """What every stage has; per technique, `technique` is that name and `params` its `Params`."""

    model_config = _FROZEN

    technique: StrictStr = Field(description="the technique: a name from `tfcompress.techniques.TECHNIQUES`")
    epochs: StrictInt = Field(
        0, ge=0, le=10_000, description="fine-tuning epochs after the technique is applied (0 = no training)")
    steps_per_epoch: StrictInt | None = Field(
        None, ge=1, le=10**9, description="limit each epoch to this many steps; null = the whole data set")
    learning_rate: StrictFloat | None = Field(
        None, gt=0.0, le=10.0, description="fine-tuning learning rate, e.g. `1.0e-4`; null = the technique's default")
    batch_size: StrictInt = Field(128, ge=1, le=65536, description="fine-tuning batch size")
    params: Any = Field(None, description="the technique's parameters")  # typed per technique
    rules: Any = Field(  # typed per technique
        None, description="per-layer exceptions, first match wins: `- match: {name: REGEX}` with `skip: true` or "
        "`params: {...}`")


class ConvertStage(BaseModel):
    """Sugar for `export:`: a last stage `- technique: convert` with the export settings as its params."""

    model_config = _FROZEN

    technique: Literal["convert"] = Field(description="convert to .tflite (must be the last stage)")
    params: ExportSettings | None = Field(None, description="the export settings (as `export:`)")


_STAGES = "the stages, run in order; each a mapping: `- technique: NAME` followed by its keys"


class RecipeFile(BaseModel):
    """A recipe file's top level (stages checked one by one, each against its technique's stage model)."""

    model_config = _FROZEN

    name: Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"\S")] = Field(
        description="the recipe's name (reports, file names), e.g. `name: prune-50`")
    description: StrictStr | None = Field(None, max_length=10_000, description="one line for humans; null = \"\"")
    stages: list[dict[str, Any]] = Field(min_length=1, description=_STAGES)
    export: ExportSettings | None = Field(
        None, description="how the final model becomes a .tflite (default: full int8); or, as sugar, a last stage "
        "`- technique: convert` with these as its params")


@dataclass(frozen=True)
class TechniqueModels:
    params: type[BaseModel]  # the technique's Params
    overrides: type[BaseModel]  # every field optional: a rule's params
    stage: type[BaseModel]


@functools.lru_cache(maxsize=None)
def technique_models(name: str, params_type: type[BaseModel]) -> TechniqueModels:
    """The stage and rule models of technique `name` (cached per Params class)."""
    camel = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", name)) or "Technique"
    overrides = create_model(  # type: ignore[call-overload]
        f"{camel}Overrides", __config__=_FROZEN, __doc__=f"Any subset of the {name!r} params.",
        **{f: (Annotated[(i.annotation, *i.metadata)] if i.metadata else i.annotation,
               Field(None, description=i.description)) for f, i in params_type.model_fields.items()},
    )
    rule = create_model(f"{camel}Rule", __base__=RuleBase, params=(overrides | None, RuleBase.model_fields["params"]))
    stage = create_model(
        f"{camel}Stage", __base__=StageBase, __doc__=f"A {name!r} stage.",
        technique=(Literal[name], Field(description=f"the {name!r} technique")),
        params=(params_type | None, Field(None, description=f"the {name!r} parameters (all optional)")),
        rules=(list[rule] | None, StageBase.model_fields["rules"]),  # type: ignore[valid-type]
    )
    return TechniqueModels(params_type, overrides, stage)


def recipe_model(registry: Mapping[str, Any]) -> type[BaseModel]:
    """The whole recipe format as one model: stages are a union discriminated by `technique`."""
    stages = [technique_models(n, e.params_type).stage for n, e in registry.items()]
    stage = Annotated[Union[tuple([*stages, ConvertStage])], Field(discriminator="technique")]
    return create_model("Recipe", __base__=RecipeFile, __doc__="A tfcompress recipe (docs/recipes.md).",
                        stages=(list[stage], Field(min_length=1, description=_STAGES)))  # type: ignore[valid-type]


def recipe_schema(registry: Mapping[str, Any]) -> dict[str, Any]:
    """`recipe_model`'s JSON Schema, each technique's `Params` named after its stage (`PruneParams`) in `$defs`."""
    schema = recipe_model(registry).model_json_schema()
    renames = {}
    for name, d in schema.get("$defs", {}).items():
        refs = [a["$ref"] for a in d.get("properties", {}).get("params", {}).get("anyOf", []) if "$ref" in a]
        new = f"{name.removesuffix('Stage')}Params"
        if name.endswith("Stage") and name != "ConvertStage" and refs and new not in schema["$defs"]:
            renames[refs[0].rsplit("/", 1)[-1]] = new
    text = json.dumps(schema)
    for old, new in renames.items():
        text = text.replace(f'"#/$defs/{old}"', f'"#/$defs/{new}"')
    schema = json.loads(text)
    schema["$defs"] = dict(sorted((renames.get(k, k), v) for k, v in schema["$defs"].items()))
    return schema


# ----------------------------------------------------------------- errors: pydantic -> file:line


@functools.lru_cache(maxsize=None)
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _resolve(s: Any, defs: dict[str, Any]) -> dict[str, Any]:
    while isinstance(s, dict) and "$ref" in s:
        s = defs.get(s["$ref"].rsplit("/", 1)[-1], {})
    return s if isinstance(s, dict) else {}


def _alternatives(s: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    return [_resolve(a, defs) for a in s.get("anyOf", s.get("oneOf", []))]


def _properties(s: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """The keys a mapping schema names (through `X | None`)."""
    s = _resolve(s, defs)
    return next((p for p in (_properties(a, defs) for a in _alternatives(s, defs)) if p), list(s.get("properties", {})))


def _child(s: dict[str, Any], key: str | int, defs: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of `s`'s value at `key` (a mapping key or a list index)."""
    s = _resolve(s, defs)
    for alt in _alternatives(s, defs):
        found = _child(alt, key, defs) if alt.get("type") != "null" else None
        if found is not None:
            return found
    if isinstance(key, str):
        if key in s.get("properties", {}):
            return s["properties"][key]
        extra = s.get("additionalProperties")
        return extra if isinstance(extra, dict) else ({} if s.get("type") == "object" else None)
    prefix = s.get("prefixItems")
    if prefix and key < len(prefix):
        return prefix[key]
    return s.get("items", {} if s.get("type") == "array" else None)


def describe(s: dict[str, Any], defs: dict[str, Any]) -> str:
    """A JSON Schema in words: 'an integer >= 0', "one of 'a', 'b'", 'a list of 2 values (...)'."""
    s = _resolve(s, defs)
    alts = _alternatives(s, defs)
    if alts:
        parts = [describe(a, defs) for a in alts if a.get("type") != "null"]
        return " or ".join(parts + ["null"] * any(a.get("type") == "null" for a in alts))
    if "const" in s:
        return repr(s["const"])
    if "enum" in s:
        return "one of " + ", ".join(repr(v) for v in s["enum"])
    kind = s.get("type")
    if kind in ("integer", "number"):
        bounds = [f"{op} {s[k]}" for k, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                                               ("exclusiveMaximum", "<")) if k in s]
        return " and ".join([f"{'an integer' if kind == 'integer' else 'a number'}{' ' + bounds[0] if bounds else ''}",
                             *bounds[1:]])
    if kind == "array":
        if "prefixItems" in s:
            items = s["prefixItems"]
            return f"a list of {len(items)} values ({', '.join(describe(i, defs) for i in items)})"
        each = _resolve(s.get("items", {}), defs)
        text = "a list" if not each else "a list of mappings" if describe(each, defs) == "a mapping" else \
            f"a list of values, each {describe(each, defs)}"
        return text + (f" (at least {s['minItems']})" if s.get("minItems") else "")
    if kind == "object":
        extra = s.get("additionalProperties")
        return f"a mapping of names to values, each {describe(extra, defs)}" if isinstance(extra, dict) else "a mapping"
    if kind == "string":
        text = "a non-empty string" if s.get("minLength") else "a string"
        return text + (f" of at most {s['maxLength']:,} characters" if "maxLength" in s else "")
    return {"null": "null", "boolean": "true or false"}.get(kind, "any value")


@dataclass(frozen=True)
class _Context:
    source: str
    path: str  # key path of the validated node ("" = top level)
    technique: str = ""
    params: Literal["stage", "root", ""] = ""  # where parameter mappings are: a stage's / rules', the node itself
    over_stage: bool = False  # validating a rule's params applied over the stage's

    def is_params(self, loc: tuple[str | int, ...]) -> bool:
        """Whether `loc` is a mapping of the technique's parameters."""
        if self.params == "root":
            return loc == ()
        return self.params == "stage" and (loc == ("params",) or (len(loc) == 3 and loc[::2] == ("rules", "params")))


# an unknown key: in a model, and in a pydantic dataclass (`types.PrecisionRule`)
_EXTRA = ("extra_forbidden", "unexpected_keyword_argument")


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def _fail(ctx: _Context, node: Located, model: type[BaseModel], err: dict[str, Any]) -> NoReturn:
    """Raise `err` (one pydantic error) as a RecipeError at its node's line."""
    root = _schema(model)
    defs = root.get("$defs", {})
    # walk the located tree along the error's location; elements that name no value are union tags
    trail = [(node, ctx.path, root, ())]
    for key in err["loc"]:
        v, path, s, loc = trail[-1]
        ok = (isinstance(v.value, dict) and isinstance(key, str) and key in v.value) or (
            isinstance(v.value, list) and isinstance(key, int) and 0 <= key < len(v.value))
        if ok:
            trail.append((v.value[key], _join(path, key), _child(s, key, defs) or {}, (*loc, key)))
    v, path, s, loc = trail[-1]
    kind = err["type"]
    key = err["loc"][-1] if err["loc"] else None
    hint = next((d for d in map(lambda t: _description(t[2], defs), reversed(trail)) if d), "")
    in_params = any(ctx.is_params(loc[:k]) for k in range(len(loc) + 1))
    if kind in _EXTRA and len(trail) > 1:
        owner, owner_path, owner_schema, owner_loc = trail[-2]
        valid = _properties(owner_schema, defs)
        if ctx.is_params(owner_loc):
            raise error(ctx.source, v.at, f"{owner_path}: unknown parameter {short(str(key))!r} for technique "
                        f"{ctx.technique!r}{suggest(str(key), valid)}",
                        f"valid parameters: {', '.join(valid) or '(none: this technique takes no parameters)'}")
        raise error(ctx.source, v.at, f"{owner_path or 'top level'}: unknown key {short(str(key))!r}"
                    f"{suggest(str(key), valid)}", f"valid keys: {', '.join(valid)}")
    if kind == "missing" and isinstance(v.value, dict):
        wanted = _description(_child(s, str(key), defs) or {}, defs)
        raise error(ctx.source, v.line, f"{path or 'top level'}: missing required key {key!r}",
                    f"add `{key}:`" + (f" ({wanted})" if wanted else ""))
    if kind in ("value_error", "assertion_error"):
        reason = short(str(err.get("ctx", {}).get("error", err["msg"])), 200)
        if not ctx.is_params(loc) or loc[:1] == ("rules",):  # a rule's own check, not the technique's
            raise error(ctx.source, v.at, f"{path}: {reason}", hint or "fix the value")
        over = " (applied over the stage's)" if ctx.over_stage else ""
        fields = ", ".join(_properties(s, defs)) or "none"
        raise error(ctx.source, v.at, f"{path}: invalid parameters for {ctx.technique!r}{over}: {reason}",
                    "fix the rule's values" if ctx.over_stage else
                    f"the technique rejects this combination of values; parameters: {fields}")
    if kind == "too_short" and v.value == []:
        raise error(ctx.source, v.at, f"{path}: the list is empty", f"add at least one: {hint}")
    expected = describe(s, defs)
    if ctx.is_params(loc):
        hint = f"valid parameters: {', '.join(_properties(s, defs)) or '(none)'}"
    elif in_params:  # the parameter's own description, not its container's
        at = next(k for k in range(len(loc) + 1) if ctx.is_params(loc[:k]))
        _, _, field, _ = next(t for t in trail if len(t[3]) == at + 1)
        hint = f"{loc[at]}: {_description(field, defs)}" if _description(field, defs) else \
            f"{loc[at]} takes {describe(field, defs)}"
    if "string" in expected and not isinstance(v.value, (str, list, dict)):
        hint += "; quote the value to make it a string"
    raise error(ctx.source, v.at, f"{path or 'the recipe'}: expected {expected}, got {show(v.value)}", hint)


def _description(s: dict[str, Any], defs: dict[str, Any]) -> str:
    """A field's description (not a model's docstring)."""
    if s.get("description"):
        return str(s["description"])
    s = _resolve(s, defs)
    return "" if "properties" in s else str(s.get("description", ""))


_NOT_JSON = "\x00not-json"  # marks a value JSON cannot hold (a date, bytes): it fails every typed field


def _json(v: Located, ctx: _Context, path: str) -> Any:
    """The located tree as JSON-able data (NaN is refused here: it is never a valid recipe value)."""
    x = v.value
    if isinstance(x, dict):
        return {k: _json(i, ctx, _join(path, k)) for k, i in x.items()}
    if isinstance(x, list):
        return [_json(i, ctx, _join(path, n)) for n, i in enumerate(x)]
    if isinstance(x, enum.Enum):
        x = x.value
    if isinstance(x, float) and math.isnan(x):
        raise error(ctx.source, v.at, f"{path}: expected a number, got NaN", "NaN is not a valid value in a recipe")
    if x is None or isinstance(x, (bool, str, int, float)):
        return x
    return {_NOT_JSON: type(x).__name__}


def validate(model: type[BaseModel], node: Located, ctx: _Context, data: Any = None) -> Any:
    """`model` validated from `node` (strict, JSON mode), or from `data` (Python, lax) located at `node`."""
    try:
        if data is not None:
            return model.model_validate(data)
        return model.model_validate_json(json.dumps(_json(node, ctx, ctx.path)), strict=True)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        _fail(ctx, node, model, min(errors, key=lambda x: x["type"] not in _EXTRA))


# ----------------------------------------------------------------- the recipe


def _technique(tv: Located, path: str, registry: Mapping[str, Any], source: str) -> TechniqueModels:
    name = tv.value
    known = list(registry)  # names only: a lazy registry imports a module when an entry is read
    names = [*known, *([CONVERT] if CONVERT not in known else [])]
    if name not in known:
        raise error(source, tv.at, f"{path}: unknown technique {short(name)!r}{suggest(name, names)}",
                    f"valid techniques: {', '.join(names)}")
    try:
        entry = registry[name]
        params_type = entry.params_type
    except Exception as e:  # the technique's module is missing or broken
        raise error(source, tv.at, f"{path}: technique {name!r} is not available: cannot load its parameters "
                    f"({type(e).__name__}: {short(str(e), 120)})",
                    "its module failed to import: check the installation, or use another technique") from None
    if not (isinstance(params_type, type) and issubclass(params_type, BaseModel)):
        raise error(source, tv.at, f"{path}: technique {name!r} is not available: its Params is not a pydantic model",
                    "this is a bug in the technique module")
    return technique_models(name, params_type)


def _stage(v: Located, path: str, registry: Mapping[str, Any], source: str) -> Stage:
    validate(StageBase, v, _Context(source, path))  # keys, training settings, `technique` is a string
    tv = v.value["technique"]
    models = _technique(tv, f"{path}.technique", registry, source)
    ctx = _Context(source, path, tv.value, "stage")
    stage = validate(models.stage, v, ctx)
    params = stage.params
    if params is None:
        params = validate(models.params, v, ctx, data={})  # the defaults
    rules = []
    for i, (rule, rv) in enumerate(zip(stage.rules or (), v.value["rules"].value if stage.rules else ())):
        overrides = {k: getattr(rule.params, k) for k in rule.params.model_fields_set} if rule.params else {}
        if overrides:
            pv = rv.value["params"]
            rctx = _Context(source, f"{path}.rules[{i}].params", tv.value, "root", over_stage=True)
            validate(models.params, pv, rctx, data={**params.model_dump(), **overrides})
        match = LayerMatch(name=rule.match.name, class_name=rule.match.class_name)
        rules.append(LayerRule(match=match, skip=rule.skip, params=overrides, line=rv.line))
    return Stage(technique=tv.value, params=params, epochs=stage.epochs, steps_per_epoch=stage.steps_per_epoch,
                 learning_rate=stage.learning_rate, batch_size=stage.batch_size, rules=tuple(rules), line=v.line)


def build_recipe(root: Located | None, source: str, registry: Mapping[str, Any]) -> Recipe:
    """Validate a located tree into a `Recipe` (RecipeError at the first problem)."""
    if root is None:
        raise error(source, 1, "the recipe is empty", "write a mapping with `name:` and `stages:` (see docs/recipes.md)")
    if not isinstance(root.value, dict):
        raise error(source, root.line, f"the recipe must be a mapping with 'name' and 'stages', got {show(root.value)}",
                    "start the file with `name: my-recipe` and `stages:` (see docs/recipes.md)")
    top = validate(RecipeFile, root, _Context(source, ""))
    items = root.value["stages"].value
    export = top.export
    stages = []
    for i, v in enumerate(items):
        tv = v.value.get("technique")
        if tv is None or tv.value != CONVERT:
            stages.append(_stage(v, f"stages[{i}]", registry, source))
            continue
        if i != len(items) - 1:
            raise error(source, tv.at, f"stages[{i}].technique: the {CONVERT!r} stage must be the last stage "
                        f"(it is stage {i + 1} of {len(items)})",
                        f"move the {CONVERT!r} stage to the end of `stages`; keep only one")
        if "export" in root.value:
            raise error(source, tv.at, f"stages[{i}].technique: the export settings are given twice: by the top-level "
                        f"'export' and by this {CONVERT!r} stage", "keep one of them (`export:` is the plain form)")
        export = validate(ConvertStage, v, _Context(source, f"stages[{i}]", CONVERT, "stage")).params
    check_stage_order(stages, source)
    return Recipe(name=top.name, stages=tuple(stages), description=top.description or "", source=source,
                  export=export or ExportSettings())

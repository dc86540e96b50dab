"""Recipes: YAML / JSON files describing compression stages, parsed into a validated `Recipe`.

A recipe is a mapping (full reference with examples: docs/recipes.md; JSON Schema:
`tfcompress recipes --schema`)::

    name: prune-50                # required, non-empty string
    description: Prune 50% ...    # optional string (null = "")
    stages:                       # required, non-empty list, run in order
      - technique: prune          # required: a key of tfcompress.techniques.TECHNIQUES
        epochs: 2                 # integer 0..10000, default 0 (0 = no fine-tuning)
        steps_per_epoch: 100      # integer >= 1 or null (default null = whole data set)
        learning_rate: 1.0e-4     # number > 0 or null (default null = the technique's default)
        batch_size: 128           # integer 1..65536, default 128
        params:                   # optional mapping: the technique's pydantic `Params`
          final_sparsity: 0.5
        rules:                    # optional list, first matching rule wins
          - match: {name: "^logits$"}            # `name` and/or `class`: regexes (re.search, run by RE2)
            skip: true                           # leave matching layers alone
          - match: {class: "Conv2D|DepthwiseConv2D"}
            params: {final_sparsity: 0.6}        # partial override of the stage's params
    export: {mode: int8}          # optional: `tfcompress.types.ExportSettings` (default full int8)

As sugar, the export settings may instead be the `params:` of a last stage `- technique: convert`
(not both; a `convert` stage that is not last is an error). `Recipe.stages` never holds it.

Format decisions:

* Keys are case-sensitive strings; an unknown key is an error naming the closest valid key. A key given
  twice in one mapping is an error (YAML itself would silently keep the last one). YAML anchors, aliases
  and merge keys (``<<: *defaults``) work; custom tags (``!foo``) and ``!!python/...`` do not.
* Numbers: ``1e-4`` / ``1E5`` are floats (YAML 1.2 / JSON style; plain PyYAML would read them as
  strings). ``true`` / ``false`` are never accepted where a number is expected, ``1.5`` never where an
  integer is, NaN nowhere; integers are accepted where a float is expected. YAML 1.1 words such as
  ``yes`` / ``no`` / ``on`` / ``off`` are booleans: quote them to get strings.
* Values are validated by pydantic models (`tfcompress.recipe.schema`) in strict JSON mode: YAML lists
  fill tuples, enums take their values. A technique's ``Params`` cross-field checks become errors at the
  ``params:`` line. A rule's ``params`` are checked field by field and also applied over the stage's
  params, so a combination the technique rejects is caught here rather than during compression.
* A rule needs ``match`` with at least one of ``name`` / ``class``; ``skip: true`` and ``params`` in the
  same rule is an error. Its regexes run on RE2 (linear time, so no pattern can hang): Python syntax
  without backreferences and lookaround, at most 1,000 characters.
* Stage order is checked against the table `tfcompress.recipe.order.ORDER_RULES`: what cannot work
  (``qat`` before ``prune``, ``qat`` twice, ...) is an error at the later stage's line; what undoes an
  earlier stage (clustering after pruning without ``preserve_sparsity``) is a `StageOrderWarning`.
* Bounds: a recipe is at most 1 MiB (`MAX_RECIPE_BYTES`, checked before parsing; files are read only
  when they are regular files, at most that many bytes), 20,000 YAML nodes, 64 levels; integers of
  more than 100 digits and strings holding NUL are errors.
* ``.json`` files use the same structure (parsed by the YAML parser so errors keep line numbers; tab
  indentation in JSON is accepted).

Every `RecipeError` about a recipe's content starts with ``FILE:LINE:`` (1-based line of the offending
key, or of the value / list item when that is more precise) and names the key path (``stages[0].epochs``);
its ``hint`` says what is expected. Recipes given as dicts (`parse_recipe_dict`) have no lines: their
messages start with ``SOURCE:`` only. Problems finding a file (missing, unreadable, unknown shipped
name) start with the path / name.

Public API: `load_recipe`, `parse_recipe_text`, `parse_recipe_dict`, `dump_recipe`, `recipe_to_dict`,
`recipe_json_schema`, `list_shipped_recipes`, `recipe_dirs` (and `RECIPE_DIRS`, the search path for
shipped recipes, `RECIPE_SUFFIXES`, `MAX_RECIPE_BYTES`), `check_stage_order`, `RecipeWarning`,
`StageOrderWarning`.

This package imports no TensorFlow: technique ``Params`` come from the registry, whose modules import
Keras only inside their functions.
"""

from __future__ import annotations

import enum
import os
import stat
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel

from tfcompress.errors import RecipeError
from tfcompress.recipe.order import RecipeWarning, StageOrderWarning, check_stage_order
from tfcompress.recipe.schema import CONVERT, build_recipe, recipe_schema
from tfcompress.recipe.yaml_tree import MAX_RECIPE_BYTES, check_size, compose, dump_yaml, from_python, suggest
from tfcompress.techniques import TECHNIQUES
from tfcompress.types import PrecisionRule, Recipe

__all__ = [
    "MAX_RECIPE_BYTES",
    "RECIPE_DIRS",
    "RECIPE_SUFFIXES",
    "RecipeWarning",
    "StageOrderWarning",
    "check_stage_order",
    "dump_recipe",
    "list_shipped_recipes",
    "load_recipe",
    "parse_recipe_dict",
    "parse_recipe_text",
    "recipe_dirs",
    "recipe_json_schema",
    "recipe_to_dict",
]

# Where shipped recipes live, searched in order: copies packaged inside tfcompress, then the repository's
# `recipes/` folder next to the package (a source checkout). Tests monkeypatch this tuple.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
RECIPE_DIRS: tuple[Path, ...] = (_PACKAGE_DIR / "recipes", _PACKAGE_DIR.parent / "recipes")
RECIPE_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")


def _registry(registry: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return TECHNIQUES if registry is None else registry


def parse_recipe_text(text: str, source: str = "<string>", registry: Mapping[str, Any] | None = None) -> Recipe:
    """Parse and validate a recipe from YAML (or JSON) text.

    Args:
        text: the document.
        source: what to call it in messages (a file path); a name ending in `.json` also accepts tab
            indentation.
        registry: technique name -> entry with `.params_type` (a pydantic model); default `TECHNIQUES`.

    Raises:
        RecipeError: `SOURCE:LINE: key: problem`, with a hint.
    """
    if not isinstance(text, str):
        raise RecipeError(f"{source}: expected recipe text, got {type(text).__name__}", "pass the file's content")
    if source.lower().endswith(".json"):
        text = text.replace("\t", " ")  # JSON allows tab indentation, YAML does not; raw tabs only occur there
    return build_recipe(compose(text, source), source, _registry(registry))


def parse_recipe_dict(data: Any, source: str = "<dict>", registry: Mapping[str, Any] | None = None) -> Recipe:
    """Validate a recipe given as plain Python data (dicts, lists, scalars); messages start with `SOURCE:`."""
    return build_recipe(from_python(data, source), source, _registry(registry))


def recipe_json_schema(registry: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON Schema of a recipe file: every technique's stage, with its params, and `export`."""
    return recipe_schema(_registry(registry))


# ----------------------------------------------------------------- files and shipped recipes


def recipe_dirs() -> tuple[Path, ...]:
    """The folders searched for shipped recipes, in order (see `RECIPE_DIRS`)."""
    return tuple(Path(d) for d in RECIPE_DIRS)


def _shipped_path(name: str) -> Path | None:
    for folder in recipe_dirs():
        for suffix in RECIPE_SUFFIXES:
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return path
    return None


def list_shipped_recipes() -> list[str]:
    """Names of the shipped recipes (file stems in `recipe_dirs()`), sorted."""
    names: set[str] = set()
    for folder in recipe_dirs():
        if folder.is_dir():
            names.update(p.stem for p in folder.iterdir() if p.suffix in RECIPE_SUFFIXES and p.is_file())
    return sorted(names)


def _looks_like_path(text: str) -> bool:
    return Path(text).suffix.lower() in RECIPE_SUFFIXES or "/" in text or os.sep in text or (
        os.altsep is not None and os.altsep in text
    )


def _file_kind(mode: int) -> str:
    return next((name for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                                         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                                         (stat.S_ISSOCK, "a socket")) if test(mode)), "not a regular file")


def _read_bounded(path: Path) -> bytes:
    """At most `MAX_RECIPE_BYTES` + 1 bytes of `path`, a regular file (or a link to one); never blocks on a FIFO."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RecipeError(f"{path}: a recipe must be a regular file, this is {_file_kind(info.st_mode)}",
                              "pass the path of a .yaml / .json file")
        check_size(info.st_size, str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_RECIPE_BYTES + 1)  # the file may have grown since fstat
    finally:
        os.close(fd)
    check_size(len(data), str(path))
    return data


def _load_file(path: Path, registry: Mapping[str, Any] | None) -> Recipe:
    hint = f"shipped recipes: {', '.join(list_shipped_recipes()) or '(none)'}"
    try:
        text = _read_bounded(path).decode("utf-8-sig")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found", f"check the path; {hint}") from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: recipe is not UTF-8 text ({e.reason} at byte {e.start})",
                          "save the file as UTF-8") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read recipe: {e.strerror or e}", "check the path and permissions") from None
    except ValueError as e:  # a path with a NUL character
        raise RecipeError(f"{str(path)[:200]!r}: cannot read recipe: {e}", "check the path") from None
    return parse_recipe_text(text, source=str(path), registry=registry)


def load_recipe(path_or_name: str | os.PathLike[str], registry: Mapping[str, Any] | None = None) -> Recipe:
    """Load a recipe from a `.yaml` / `.yml` / `.json` path, or by the name of a shipped recipe.

    A string with a recipe suffix or a path separator (or any `os.PathLike`) is a path. A bare name is
    looked up as `NAME.yaml` / `.yml` / `.json` in `recipe_dirs()` (packaged recipes first, then the
    repository's `recipes/`); failing that, an existing file of that name is loaded.

    Raises:
        RecipeError: missing file / unknown name (listing shipped names), or an invalid recipe.
    """
    if isinstance(path_or_name, os.PathLike):
        return _load_file(Path(path_or_name), registry)
    text = str(path_or_name)
    if _looks_like_path(text):
        return _load_file(Path(text), registry)
    found = _shipped_path(text)
    if found is not None:
        return _load_file(found, registry)
    if text and Path(text).is_file():
        return _load_file(Path(text), registry)
    names = list_shipped_recipes()
    raise RecipeError(
        f"{text}: no shipped recipe of that name{suggest(text, names)}",
        f"shipped recipes: {', '.join(names) or '(none)'}; or pass a path to a .yaml / .json file",
    )


# ----------------------------------------------------------------- writing


def _out(x: Any) -> Any:
    """A params value as YAML-able plain data (tuples -> lists, enums -> values)."""
    if isinstance(x, enum.Enum):  # before str: str enums such as Mode
        return _out(x.value)
    if x is None or isinstance(x, bool):
        return x
    if isinstance(x, str):
        return str(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if isinstance(x, (list, tuple)):
        return [_out(i) for i in x]
    if isinstance(x, Mapping):
        return {str(k): _out(v) for k, v in x.items()}
    if isinstance(x, BaseModel):
        return {k: _out(v) for k, v in x.model_dump().items()}
    if isinstance(x, PrecisionRule):
        return x.entry()
    if hasattr(x, "item"):  # numpy scalars
        return _out(x.item())
    raise TypeError(f"cannot write {type(x).__name__} value {x!r} to a recipe")


def _same(a: Any, b: Any) -> bool:
    try:
        return isinstance(a, bool) == isinstance(b, bool) and type(a == b) is bool and a == b
    except Exception:
        return False


def _params_out(params: Any) -> dict[str, Any]:
    """Params (a pydantic model, or a mapping built in code) as the fields that differ from the defaults."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return {str(k): _out(v) for k, v in params.items()}
    if not isinstance(params, BaseModel):
        raise TypeError(f"stage params must be a pydantic model or a mapping, got {type(params).__name__}")
    out = {}
    for name, info in type(params).model_fields.items():
        value = getattr(params, name)
        if not info.is_required() and _same(value, info.get_default(call_default_factory=True)):
            continue
        out[info.alias or name] = _out(value)
    return out


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain data in the file format (accepted by `parse_recipe_dict`).

    `export` is written only when it is not the default; a recipe without stages writes it as the
    `convert` stage sugar (the file format needs at least one stage).
    """
    stages = []
    for s in recipe.stages:
        stage: dict[str, Any] = {
            "technique": s.technique,
            "epochs": s.epochs,
            "steps_per_epoch": s.steps_per_epoch,
            "learning_rate": s.learning_rate,
            "batch_size": s.batch_size,
        }
        params = _params_out(s.params)
        if params:
            stage["params"] = params
        if s.rules:
            rules = []
            for r in s.rules:
                match: dict[str, str] = {}
                if r.match.name is not None:
                    match["name"] = r.match.name
                if r.match.class_name is not None:
                    match["class"] = r.match.class_name
                rule: dict[str, Any] = {"match": match}
                if r.skip:
                    rule["skip"] = True
                if r.params:
                    rule["params"] = {str(k): _out(v) for k, v in r.params.items()}
                rules.append(rule)
            stage["rules"] = rules
        stages.append(stage)
    export = _params_out(recipe.export)
    if not stages:
        stages.append({"technique": CONVERT, **({"params": export} if export else {})})
        export = {}
    out: dict[str, Any] = {"name": recipe.name}
    if recipe.description:
        out["description"] = recipe.description
    out["stages"] = stages
    if export:
        out["export"] = export
    return out


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML text that `parse_recipe_text` reads back to an equal Recipe.

    Stage params and `export` list only the fields that differ from their defaults; `line` / `source`
    are not written (they come from wherever the text is parsed).
    """
    return dump_yaml(recipe_to_dict(recipe))

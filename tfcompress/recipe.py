"""Recipes: YAML / JSON files describing compression stages, parsed into a validated `Recipe`.

A recipe is a mapping (full reference with examples: docs/recipes.md)::

    name: prune-50                # required, non-empty string
    description: Prune 50% ...    # optional string (null = "")
    stages:                       # required, non-empty list, run in order
      - technique: prune          # required: a key of tfcompress.techniques.TECHNIQUES
        epochs: 2                 # integer >= 0, default 0 (0 = no fine-tuning)
        steps_per_epoch: 100      # integer >= 1 or null (default null = whole data set)
        learning_rate: 1.0e-4     # number > 0 or null (default null = the technique's default)
        batch_size: 128           # integer >= 1, default 128
        params:                   # optional mapping, checked against the technique's `Params` dataclass
          final_sparsity: 0.5
        rules:                    # optional list, first matching rule wins
          - match: {name: "^logits$"}            # `name` and/or `class`: Python regexes (re.search)
            skip: true                           # leave matching layers alone
          - match: {class: "Conv2D|DepthwiseConv2D"}
            params: {final_sparsity: 0.6}        # partial override of the stage's params

Format decisions:

* Keys are case-sensitive strings; an unknown key is an error naming the closest valid key. A key given
  twice in one mapping is an error (YAML itself would silently keep the last one). YAML anchors, aliases
  and merge keys (``<<: *defaults``) work; custom tags (``!foo``) and ``!!python/...`` do not.
* Numbers: ``1e-4`` / ``1E5`` are floats (YAML 1.2 / JSON style; plain PyYAML would read them as
  strings). ``true`` / ``false`` are never accepted where a number is expected, and integers are accepted
  where a float is expected. YAML 1.1 words such as ``yes`` / ``no`` / ``on`` / ``off`` are booleans:
  quote them to get strings.
* ``params`` values are converted following the type hints of the technique's ``Params`` dataclass:
  ``int``, ``float``, ``bool``, ``str``, ``Literal[...]``, enums (by value), ``X | None``, ``tuple[...]``
  (from a YAML list), ``list[...]`` (a list), ``dict[str, X]`` (a mapping). The dataclass is then built,
  so its ``__post_init__`` checks (ValueError / TypeError) become errors at the ``params:`` line. A rule's
  ``params`` are checked field by field and also applied over the stage's params (``dataclasses.replace``)
  so a combination that ``__post_init__`` rejects is caught here rather than during compression.
* A rule needs ``match`` with at least one of ``name`` / ``class``; ``skip: true`` and ``params`` in the
  same rule is an error. A ``convert`` stage, if present, must be the last stage.
* ``.json`` files use the same structure (parsed by the YAML parser so errors keep line numbers; tab
  indentation in JSON is accepted).

Every `RecipeError` about a recipe's content starts with ``FILE:LINE:`` (1-based line of the offending
key, or of the value / list item when that is more precise) and names the key path (``stages[0].epochs``);
its ``hint`` says what is expected. Recipes given as dicts (`parse_recipe_dict`) have no lines: their
messages start with ``SOURCE:`` only. Problems finding a file (missing, unreadable, unknown shipped
name) start with the path / name.

Public API: `load_recipe`, `parse_recipe_text`, `parse_recipe_dict`, `dump_recipe`, `recipe_to_dict`,
`list_shipped_recipes`, `recipe_dirs` (and `RECIPE_DIRS`, the search path for shipped recipes).

This module imports no TensorFlow: technique ``Params`` dataclasses come from the registry, whose
modules import Keras only inside their functions.
"""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import difflib
import enum
import math
import os
import re
import types as _pytypes
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin, get_type_hints

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

import tfcompress
from tfcompress.errors import RecipeError
from tfcompress.techniques import TECHNIQUES
from tfcompress.types import LayerMatch, LayerRule, Recipe, Stage

__all__ = [
    "RECIPE_DIRS",
    "RECIPE_SUFFIXES",
    "dump_recipe",
    "list_shipped_recipes",
    "load_recipe",
    "parse_recipe_dict",
    "parse_recipe_text",
    "recipe_dirs",
    "recipe_to_dict",
]

# Where shipped recipes live, searched in order: copies packaged inside tfcompress, then the repository's
# `recipes/` folder next to the package (a source checkout). Tests monkeypatch this tuple.
_PACKAGE_DIR = Path(tfcompress.__file__).resolve().parent
RECIPE_DIRS: tuple[Path, ...] = (_PACKAGE_DIR / "recipes", _PACKAGE_DIR.parent / "recipes")
RECIPE_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")

TOP_KEYS = ("name", "description", "stages")
STAGE_KEYS = ("technique", "epochs", "steps_per_epoch", "learning_rate", "batch_size", "params", "rules")
RULE_KEYS = ("match", "skip", "params")
MATCH_KEYS = ("name", "class")
LAST_TECHNIQUE = "convert"  # a stage with this technique must be the last one

_MAX_VALUES = 100_000  # alias expansion guard ("billion laughs")
_MAX_DEPTH = 64

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOAT_TAG = "tag:yaml.org,2002:float"

# PyYAML's YAML 1.1 float pattern needs a dot and a signed exponent (`1.0e-4`): `1e-4` and `1.0e5` would be
# strings. This one also takes the YAML 1.2 / JSON forms. Loader and dumper share it, so a string that
# looks like a float is quoted on dump.
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


def _use_float_resolver(cls: type) -> type:
    resolvers: dict[Any, list[Any]] = {}
    for first, entries in cls.yaml_implicit_resolvers.items():  # type: ignore[attr-defined]
        resolvers[first] = [(tag, _FLOAT_RE if tag == _FLOAT_TAG else rx) for tag, rx in entries]
    for first in "-+0123456789.":
        entries = resolvers.setdefault(first, [])
        if not any(tag == _FLOAT_TAG for tag, _ in entries):
            entries.insert(0, (_FLOAT_TAG, _FLOAT_RE))
    cls.yaml_implicit_resolvers = resolvers  # type: ignore[attr-defined]
    return cls


@_use_float_resolver
class _Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2-style float resolver; an alias (*name) gets its own position."""

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        event = self.peek_event()
        node = copy.copy(super().compose_node(parent, index))  # shares the anchored node's value
        node.start_mark, node.end_mark = event.start_mark, event.end_mark
        return node


class _FlowMap(dict):
    """A mapping dumped in flow style: `{name: ^logits$}`."""


class _FlowList(list):
    """A list dumped in flow style: `[3, 3]`."""


@_use_float_resolver
class _Dumper(yaml.SafeDumper):
    """SafeDumper with the same float resolver, and flow style for small values."""


_Dumper.add_representer(
    str,  # PyYAML writes NEL / LS / PS raw in plain and single-quoted scalars and reads them back as breaks
    lambda d, data: d.represent_scalar(
        "tag:yaml.org,2002:str", data, style='"' if any(c in data for c in "\x85\u2028\u2029") else None
    ),
)
_Dumper.add_representer(_FlowMap, lambda d, data: d.represent_mapping(_MAP_TAG, data.items(), flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, data: d.represent_sequence(_SEQ_TAG, data, flow_style=True))


# ----------------------------------------------------------------- errors


def _error(source: str, line: int | None, message: str, hint: str = "") -> RecipeError:
    where = f"{source}:{line}" if line is not None else source
    return RecipeError(f"{where}: {message}", hint)


def _suggest(word: str, choices: typing.Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(x: Any) -> str:
    """What a value is, for 'got ...' in messages."""
    try:
        return _describe_value(x)
    except Exception:  # an int too long to print, a broken __repr__
        return f"a value of type {type(x).__name__}"


def _describe_value(x: Any) -> str:
    if isinstance(x, dict):
        return "a mapping"
    if isinstance(x, list):
        return "a list"
    if x is None:
        return "null"
    if isinstance(x, bool):
        return f"{str(x).lower()} (a boolean)"
    if isinstance(x, str):
        return f"the string {_short(x)!r}"
    if isinstance(x, int):
        return f"{_short(str(x))} (an integer)"
    if isinstance(x, float):
        return f"{x!r} (a number)"
    return f"{_short(repr(x))} (of type {type(x).__name__})"


# ----------------------------------------------------------------- located values


@dataclasses.dataclass
class _V:
    """A value from the recipe with where it came from.

    `value` is a scalar, a list of _V, or a dict of str -> _V. `line` is the value's line, `key_line` the
    line of its key when it is a mapping value (None for dict input).
    """

    value: Any
    line: int | None
    key_line: int | None = None

    @property
    def at(self) -> int | None:
        """The line to report: the key's, else the value's."""
        return self.key_line if self.key_line is not None else self.line


def _plain(v: _V) -> Any:
    """A located value back to plain Python."""
    if isinstance(v.value, list):
        return [_plain(i) for i in v.value]
    if isinstance(v.value, dict):
        return {k: _plain(i) for k, i in v.value.items()}
    return v.value


class _Reader:
    """Turns a YAML node tree (or plain Python data) into _V trees, rejecting duplicates and oddities."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.count = 0
        self.active: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, line: int | None, message: str, hint: str = "") -> typing.NoReturn:
        raise _error(self.source, line, message, hint)

    def _enter(self, line: int | None, path: str, depth: int) -> None:
        self.count += 1
        if self.count > _MAX_VALUES:
            self.fail(line, f"{path or 'recipe'}: too many values (more than {_MAX_VALUES}, aliases included)",
                      "a recipe is a short list of stages; check for aliases that expand recursively")
        if depth > _MAX_DEPTH:
            self.fail(line, f"{path or 'recipe'}: nested more than {_MAX_DEPTH} levels deep",
                      "a recipe needs only a few levels: stages > stage > rules > rule > match")

    def _scalar(self, node: ScalarNode, path: str) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except Exception as e:  # bad tag, invalid date, !!int "x", ...
            detail = getattr(e, "problem", None) or str(e)
            self.fail(node.start_mark.line + 1, f"{path or 'recipe'}: cannot read value {_short(node.value)!r}: "
                      f"{_short(str(detail), 120)}", "write plain strings, numbers, true/false or null")

    def node(self, node: Node, path: str, depth: int = 0, key_line: int | None = None) -> _V:
        line = node.start_mark.line + 1
        self._enter(line, path, depth)
        if isinstance(node, ScalarNode):
            return _V(self._scalar(node, path), line, key_line)
        if id(node.value) in self.active:  # aliases share the anchored node's value
            self.fail(line, f"{path or 'recipe'}: recursive alias (a value that contains itself)",
                      "an alias (*name) must not refer to a mapping or list that encloses it")
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            self.fail(line, f"{path or 'recipe'}: unsupported YAML tag {node.tag!r}", "remove the tag (!...)")
        self.active.add(id(node.value))
        try:
            if isinstance(node, SequenceNode):
                items = [self.node(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node.value)]
                return _V(items, line, key_line)
            return _V(self._mapping(node, path, depth), line, key_line)
        finally:
            self.active.discard(id(node.value))

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, _V]:
        out: dict[str, _V] = {}
        key_lines: dict[str, int] = {}
        merged: list[dict[str, _V]] = []
        for key_node, value_node in node.value:
            kline = key_node.start_mark.line + 1
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node, path, depth, kline))
                continue
            if not isinstance(key_node, ScalarNode):
                self.fail(kline, f"{path or 'recipe'}: a key must be a plain string, got a "
                          f"{'list' if isinstance(key_node, SequenceNode) else 'mapping'}",
                          "keys are names such as `technique` or `epochs`")
            key = self._scalar(key_node, path)
            if not isinstance(key, str):
                self.fail(kline, f"{path or 'recipe'}: key {key_node.value!r} must be a string, got {_show(key)}",
                          "quote the key, or fix the indentation")
            child = f"{path}.{key}" if path else key
            if key in out:
                self.fail(kline, f"{child}: duplicate key {key!r} (first given at line {key_lines[key]})",
                          "YAML would silently keep only the last value: remove one of them")
            out[key] = self.node(value_node, child, depth + 1, key_line=kline)
            key_lines[key] = kline
        for source in merged:  # explicit keys win, then earlier merge sources
            for key, value in source.items():
                out.setdefault(key, value)
        return out

    def _merge_sources(self, node: Node, path: str, depth: int, line: int) -> list[dict[str, _V]]:
        v = self.node(node, f"{path}.<<" if path else "<<", depth + 1, key_line=line)
        if isinstance(v.value, dict):
            return [v.value]
        if isinstance(v.value, list) and all(isinstance(i.value, dict) for i in v.value):
            return [i.value for i in v.value]
        self.fail(line, f"{path or 'recipe'}: the merge key '<<' needs a mapping or a list of mappings, got "
                  f"{_show(v.value)}", "write `<<: *anchor` where the anchor names a mapping")

    def python(self, obj: Any, path: str, depth: int = 0) -> _V:
        self._enter(None, path, depth)
        if isinstance(obj, Mapping) or isinstance(obj, (list, tuple)):
            if id(obj) in self.active:
                self.fail(None, f"{path or 'recipe'}: recursive structure (a value that contains itself)",
                          "build the recipe from fresh dicts and lists")
            self.active.add(id(obj))
            try:
                if isinstance(obj, (list, tuple)):
                    return _V([self.python(i, f"{path}[{n}]", depth + 1) for n, i in enumerate(obj)], None)
                out: dict[str, _V] = {}
                for key, value in obj.items():
                    if not isinstance(key, str):
                        self.fail(None, f"{path or 'recipe'}: key {_short(repr(key))} must be a string",
                                  "keys are names such as 'technique' or 'epochs'")
                    out[key] = self.python(value, f"{path}.{key}" if path else key, depth + 1)
                return _V(out, None)
            finally:
                self.active.discard(id(obj))
        return _V(obj, None)


def _compose(text: str, source: str) -> _V | None:
    """Parse YAML text into a located tree (None for an empty document)."""
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = ", ".join(p for p in (e.context, e.problem) if p) or "syntax error"
        hint = ("indent with spaces, not tabs" if "'\\t'" in problem else
                "fix the syntax: indent with spaces, and quote strings that contain ': ' or start with a special "
                "character")
        raise _error(source, mark.line + 1 if mark else 1, f"invalid YAML: {problem}", hint) from None
    except yaml.YAMLError as e:  # ReaderError: characters YAML does not allow
        position = getattr(e, "position", 0) or 0
        reason = getattr(e, "reason", None) or str(e)
        raise _error(source, text.count("\n", 0, position) + 1, f"invalid YAML: {_short(str(reason), 120)}",
                     "remove control characters from the file") from None
    except RecursionError:
        raise _error(source, 1, "invalid YAML: nested too deeply", "a recipe needs only a few levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return None
    try:
        return _Reader(source).node(node, "")
    except RecursionError:
        raise _error(source, 1, "recipe nested too deeply", "a recipe needs only a few levels") from None


# ----------------------------------------------------------------- typed conversion of params


class _Mismatch(Exception):
    def __init__(self, v: _V, path: str, expected: str) -> None:
        super().__init__(expected)
        self.v = v
        self.path = path
        self.expected = expected


_NONE = type(None)


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is _pytypes.UnionType


def _describe(tp: Any) -> str:
    """A type hint in words: 'an integer', 'one of 'a', 'b'', 'a list of 2 values (...)'."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return "any value"
    if tp is _NONE or tp is None:
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _is_union(origin):
        parts = [_describe(a) for a in args if a is not _NONE]
        if _NONE in args:
            parts.append("null")
        return " or ".join(parts)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if origin is tuple or tp is tuple:
        if not args:
            return "a list"
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of values, each {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence) or tp is list:
        return f"a list of values, each {_describe(args[0])}" if args else "a list"
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) or tp is dict:
        if len(args) == 2:
            return f"a mapping of {_describe(args[0])} keys to values, each {_describe(args[1])}"
        return "a mapping"
    return f"a {getattr(tp, '__name__', str(tp))}"


def _coerce(v: _V, tp: Any, path: str) -> Any:
    """Check `v` against the type hint `tp` and convert it (YAML list -> tuple for tuple hints)."""
    x = v.value
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any or tp is object:
        return _plain(v)
    if tp is _NONE or tp is None:
        if x is None:
            return None
        raise _Mismatch(v, path, "null")
    if origin is Literal:
        for choice in args:
            if type(x) is type(choice) and x == choice:
                return choice
        raise _Mismatch(v, path, _describe(tp))
    if _is_union(origin):
        if x is None:
            if _NONE in args:
                return None
            raise _Mismatch(v, path, _describe(tp))
        failures = []
        for alt in (a for a in args if a is not _NONE):
            try:
                return _coerce(v, alt, path)
            except _Mismatch as e:
                failures.append(e)
        deeper = [e for e in failures if e.v is not v]
        if len(deeper) == 1 and len(failures) == 1:
            raise deeper[0]
        raise _Mismatch(v, path, _describe(tp))
    if tp is bool:
        if isinstance(x, bool):
            return x
        raise _Mismatch(v, path, _describe(tp))
    if tp is int:
        if isinstance(x, int) and not isinstance(x, bool):
            return int(x)
        raise _Mismatch(v, path, _describe(tp))
    if tp is float:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            if isinstance(x, float) and math.isnan(x):
                raise _Mismatch(v, path, "a number (not NaN)")
            try:
                return float(x)
            except OverflowError:
                raise _Mismatch(v, path, "a number (within float range)") from None
        raise _Mismatch(v, path, _describe(tp))
    if tp is str:
        if isinstance(x, str):
            return x
        raise _Mismatch(v, path, _describe(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(x, tp):
            return x
        for member in tp:
            if type(x) is type(member.value) and x == member.value:
                return member
        raise _Mismatch(v, path, _describe(tp))
    if origin is tuple or tp is tuple:
        if not isinstance(x, list):
            raise _Mismatch(v, path, _describe(tp))
        if not args:
            return tuple(_plain(i) for i in x)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(i, args[0], f"{path}[{n}]") for n, i in enumerate(x))
        if len(x) != len(args):
            raise _Mismatch(v, path, _describe(tp))
        return tuple(_coerce(i, a, f"{path}[{n}]") for n, (i, a) in enumerate(zip(x, args)))
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence) or tp is list:
        if not isinstance(x, list):
            raise _Mismatch(v, path, _describe(tp))
        item = args[0] if args else Any
        return [_coerce(i, item, f"{path}[{n}]") for n, i in enumerate(x)]
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping) or tp is dict:
        if not isinstance(x, dict):
            raise _Mismatch(v, path, _describe(tp))
        key_tp, value_tp = args if len(args) == 2 else (Any, Any)
        return {
            _coerce(_V(k, i.at), key_tp, f"{path}.{k}"): _coerce(i, value_tp, f"{path}.{k}") for k, i in x.items()
        }
    if isinstance(tp, type):
        if isinstance(x, tp):
            return x
        raise _Mismatch(v, path, _describe(tp))
    return _plain(v)  # a typing construct this parser does not know: passed as is


# ----------------------------------------------------------------- validation


@dataclasses.dataclass
class _TechniqueInfo:
    params_type: type
    hints: dict[str, Any]
    fields: tuple[str, ...]


class _Validator:
    """Checks a located tree and builds the Recipe."""

    def __init__(self, source: str, registry: Mapping[str, Any]) -> None:
        self.source = source
        self.registry = registry
        self.techniques: dict[str, _TechniqueInfo] = {}

    def fail(self, line: int | None, message: str, hint: str = "") -> typing.NoReturn:
        raise _error(self.source, line, message, hint)

    # -- helpers

    def check_keys(self, m: dict[str, _V], valid: tuple[str, ...], where: str) -> None:
        for key, v in m.items():
            if key not in valid:
                self.fail(v.at, f"{where}: unknown key {_short(key)!r}{_suggest(key, valid)}",
                          f"valid keys: {', '.join(valid)}")

    def require(self, m: dict[str, _V], key: str, owner: _V, path: str, hint: str) -> _V:
        if key not in m:
            self.fail(owner.line, f"{path}: missing required key {key!r}", hint)
        return m[key]

    def integer(self, m: dict[str, _V], key: str, path: str, minimum: int, default: int | None,
                nullable: bool, hint: str) -> int | None:
        if key not in m:
            return default
        v = m[key]
        if v.value is None and nullable:
            return None
        x = v.value
        if isinstance(x, bool) or not isinstance(x, int) or x < minimum:
            self.fail(v.at, f"{path}.{key}: expected an integer >= {minimum}{' or null' if nullable else ''}, "
                      f"got {_show(x)}", hint)
        return int(x)

    def string(self, v: _V, path: str, nonempty: bool, hint: str) -> str:
        if not isinstance(v.value, str) or (nonempty and not v.value.strip()):
            self.fail(v.at, f"{path}: expected a {'non-empty ' if nonempty else ''}string, got {_show(v.value)}", hint)
        return v.value

    # -- the recipe

    def recipe(self, root: _V | None) -> Recipe:
        if root is None:
            self.fail(1, "the recipe is empty", "write a mapping with `name:` and `stages:` (see docs/recipes.md)")
        if not isinstance(root.value, dict):
            self.fail(root.line, f"the recipe must be a mapping with 'name' and 'stages', got {_show(root.value)}",
                      "start the file with `name: my-recipe` and `stages:` (see docs/recipes.md)")
        top = root.value
        self.check_keys(top, TOP_KEYS, "top level")
        name = self.string(self.require(top, "name", root, "top level", "add `name: my-recipe`"), "name", True,
                           "give the recipe a name, e.g. `name: prune-50`")
        description = ""
        if "description" in top and top["description"].value is not None:
            description = self.string(top["description"], "description", False, "quote the description")
        stages_v = self.require(top, "stages", root, "top level",
                                "add `stages:` with a list of stages, e.g. `- technique: prune`")
        if not isinstance(stages_v.value, list):
            self.fail(stages_v.at, f"stages: expected a list of stages, got {_show(stages_v.value)}",
                      "write each stage as a list item: `- technique: NAME`")
        if not stages_v.value:
            self.fail(stages_v.at, "stages: the list is empty", "add at least one stage, e.g. `- technique: prune`")
        stages = tuple(self.stage(v, f"stages[{i}]") for i, v in enumerate(stages_v.value))
        for i, (stage, v) in enumerate(zip(stages, stages_v.value)):
            if stage.technique == LAST_TECHNIQUE and i != len(stages) - 1:
                self.fail(v.value["technique"].at,
                          f"stages[{i}].technique: the {LAST_TECHNIQUE!r} stage must be the last stage "
                          f"(it is stage {i + 1} of {len(stages)})",
                          f"move the {LAST_TECHNIQUE!r} stage to the end of `stages`; keep only one")
        return Recipe(name=name, stages=stages, description=description, source=self.source)

    def technique(self, tv: _V, path: str) -> _TechniqueInfo:
        name = tv.value
        valid = ", ".join(self.registry)
        if not isinstance(name, str):
            self.fail(tv.at, f"{path}: expected a technique name, got {_show(name)}", f"valid techniques: {valid}")
        if name not in self.registry:
            self.fail(tv.at, f"{path}: unknown technique {_short(name)!r}{_suggest(name, self.registry)}",
                      f"valid techniques: {valid}")
        if name in self.techniques:
            return self.techniques[name]
        try:
            ptype = self.registry[name].params_type
        except Exception as e:  # the technique's module is missing or broken
            self.fail(tv.at, f"{path}: technique {name!r} is not available: cannot load its parameters "
                      f"({type(e).__name__}: {_short(str(e), 120)})",
                      "its module failed to import: check the installation, or use another technique")
        if not (isinstance(ptype, type) and dataclasses.is_dataclass(ptype)):
            self.fail(tv.at, f"{path}: technique {name!r} is not available: its Params is not a dataclass",
                      "this is a bug in the technique module")
        try:
            hints = get_type_hints(ptype)
        except Exception as e:
            self.fail(tv.at, f"{path}: technique {name!r} is not available: cannot read the types of its "
                      f"Params ({type(e).__name__}: {_short(str(e), 120)})", "this is a bug in the technique module")
        fields = tuple(f.name for f in dataclasses.fields(ptype) if f.init)
        info = self.techniques[name] = _TechniqueInfo(ptype, hints, fields)
        return info

    def stage(self, v: _V, path: str) -> Stage:
        if not isinstance(v.value, dict):
            self.fail(v.line, f"{path}: expected a mapping with 'technique', got {_show(v.value)}",
                      "write each stage as `- technique: NAME` followed by its keys")
        m = v.value
        self.check_keys(m, STAGE_KEYS, path)
        tv = self.require(m, "technique", v, path, f"add `technique:` (one of: {', '.join(self.registry)})")
        info = self.technique(tv, f"{path}.technique")
        technique = tv.value
        epochs = self.integer(m, "epochs", path, 0, 0, False, "epochs is the number of fine-tuning epochs (0 = none)")
        steps = self.integer(m, "steps_per_epoch", path, 1, None, True,
                             "steps_per_epoch limits each epoch; null = the whole data set")
        lr = self.learning_rate(m, path)
        batch_size = self.integer(m, "batch_size", path, 1, 128, False, "batch_size is a positive integer")
        params_v = m.get("params")
        overrides = self.param_values(info, params_v, f"{path}.params", technique)
        try:
            params = info.params_type(**overrides)
        except (ValueError, TypeError) as e:
            self.fail(params_v.at if params_v is not None else v.line,
                      f"{path}.params: invalid parameters for {technique!r}: {_short(str(e), 200)}",
                      f"the technique rejects this combination of values; parameters: "
                      f"{', '.join(info.fields) or 'none'}")
        rules = self.rules(m.get("rules"), f"{path}.rules", info, params, technique)
        return Stage(technique=technique, params=params, epochs=epochs, steps_per_epoch=steps, learning_rate=lr,
                     batch_size=batch_size, rules=rules, line=v.line)

    def learning_rate(self, m: dict[str, _V], path: str) -> float | None:
        v = m.get("learning_rate")
        if v is None or v.value is None:
            return None
        x = v.value
        try:
            ok = not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x) and x > 0
        except OverflowError:  # an int too large for a float
            ok = False
        if not ok:
            self.fail(v.at, f"{path}.learning_rate: expected a number > 0 or null, got {_show(x)}",
                      "e.g. `learning_rate: 1.0e-4`; null = the technique's default")
        return float(x)

    def param_values(self, info: _TechniqueInfo, pv: _V | None, path: str, technique: str) -> dict[str, Any]:
        if pv is None or pv.value is None:
            return {}
        valid = ", ".join(info.fields) or "(none: this technique takes no parameters)"
        if not isinstance(pv.value, dict):
            self.fail(pv.at, f"{path}: expected a mapping of {technique!r} parameters, got {_show(pv.value)}",
                      f"valid parameters: {valid}")
        out: dict[str, Any] = {}
        for key, v in pv.value.items():
            if key not in info.fields:
                self.fail(v.at, f"{path}: unknown parameter {_short(key)!r} for technique {technique!r}"
                          f"{_suggest(key, info.fields)}", f"valid parameters: {valid}")
            try:
                out[key] = _coerce(v, info.hints.get(key, Any), f"{path}.{key}")
            except _Mismatch as e:
                got = _show(e.v.value)
                hint = f"{e.path.rsplit('.', 1)[-1] if e.v is v else e.path} takes {e.expected}"
                if "string" in e.expected and not isinstance(e.v.value, (str, list, dict)):
                    hint += " (quote the value to make it a string)"
                self.fail(e.v.at, f"{e.path}: expected {e.expected}, got {got}", hint)
        return out

    def rules(self, rv: _V | None, path: str, info: _TechniqueInfo, stage_params: Any,
              technique: str) -> tuple[LayerRule, ...]:
        if rv is None or rv.value is None:
            return ()
        if not isinstance(rv.value, list):
            self.fail(rv.at, f"{path}: expected a list of rules, got {_show(rv.value)}",
                      "write each rule as a list item: `- match: {name: REGEX}`")
        out = []
        for i, v in enumerate(rv.value):
            rpath = f"{path}[{i}]"
            if not isinstance(v.value, dict):
                self.fail(v.line, f"{rpath}: expected a mapping with 'match', got {_show(v.value)}",
                          "write a rule as `- match: {name: REGEX}` with `skip: true` or `params: {...}`")
            m = v.value
            self.check_keys(m, RULE_KEYS, rpath)
            mv = self.require(m, "match", v, rpath, "add `match: {name: REGEX}` and/or `{class: REGEX}`")
            match = self.match(mv, f"{rpath}.match")
            skip = False
            if "skip" in m:
                sv = m["skip"]
                if not isinstance(sv.value, bool):
                    self.fail(sv.at, f"{rpath}.skip: expected true or false, got {_show(sv.value)}",
                              "`skip: true` leaves matching layers untouched by this stage")
                skip = sv.value
            params_v = m.get("params")
            if skip and params_v is not None and params_v.value is not None:
                self.fail(params_v.at, f"{rpath}: a rule cannot both skip layers ('skip: true') and set 'params'",
                          "remove `params` (skipped layers are left alone) or remove `skip: true`")
            overrides = self.param_values(info, params_v, f"{rpath}.params", technique)
            if overrides:
                try:
                    dataclasses.replace(stage_params, **overrides)
                except (ValueError, TypeError) as e:
                    self.fail(params_v.at, f"{rpath}.params: invalid parameters for {technique!r} (applied over "
                              f"the stage's): {_short(str(e), 200)}", "fix the rule's values")
            out.append(LayerRule(match=match, skip=skip, params=overrides, line=v.line))
        return tuple(out)

    def match(self, mv: _V, path: str) -> LayerMatch:
        hint = "e.g. `match: {name: \"^logits$\"}` or `match: {class: \"Conv2D\"}` (Python regexes, re.search)"
        if not isinstance(mv.value, dict):
            self.fail(mv.at, f"{path}: expected a mapping with 'name' and/or 'class', got {_show(mv.value)}", hint)
        m = mv.value
        self.check_keys(m, MATCH_KEYS, path)
        name = self.regex(m.get("name"), f"{path}.name")
        class_name = self.regex(m.get("class"), f"{path}.class")
        if name is None and class_name is None:
            self.fail(mv.at, f"{path}: needs 'name' and/or 'class'", hint)
        return LayerMatch(name=name, class_name=class_name)

    def regex(self, v: _V | None, path: str) -> str | None:
        if v is None or v.value is None:
            return None
        if not isinstance(v.value, str):
            self.fail(v.at, f"{path}: expected a regular expression (a string), got {_show(v.value)}",
                      "quote the value")
        try:
            re.compile(v.value)
        except re.error as e:
            self.fail(v.at, f"{path}: invalid regular expression {_short(v.value)!r}: {e}",
                      "match values are Python regexes (re.search): escape special characters with \\")
        except Exception as e:  # OverflowError (huge repeat), RecursionError
            self.fail(v.at, f"{path}: invalid regular expression {_short(v.value)!r}: {type(e).__name__}: "
                      f"{_short(str(e), 120)}", "simplify the regular expression")
        return v.value


# ----------------------------------------------------------------- public API


def _registry(registry: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return TECHNIQUES if registry is None else registry


def parse_recipe_text(text: str, source: str = "<string>", registry: Mapping[str, Any] | None = None) -> Recipe:
    """Parse and validate a recipe from YAML (or JSON) text.

    Args:
        text: the document.
        source: what to call it in messages (a file path); a name ending in `.json` also accepts tab
            indentation.
        registry: technique name -> entry with `.name` and `.params_type` (default: `TECHNIQUES`).

    Raises:
        RecipeError: `SOURCE:LINE: key: problem`, with a hint.
    """
    if not isinstance(text, str):
        raise RecipeError(f"{source}: expected recipe text, got {type(text).__name__}", "pass the file's content")
    if source.lower().endswith(".json"):
        text = text.replace("\t", " ")  # JSON allows tab indentation, YAML does not; raw tabs only occur there
    root = _compose(text, source)
    return _Validator(source, _registry(registry)).recipe(root)


def parse_recipe_dict(data: Any, source: str = "<dict>", registry: Mapping[str, Any] | None = None) -> Recipe:
    """Validate a recipe given as plain Python data (dicts, lists, scalars); messages start with `SOURCE:`."""
    try:
        root = _Reader(source).python(data, "")
    except RecursionError:
        raise _error(source, None, "recipe nested too deeply", "a recipe needs only a few levels") from None
    return _Validator(source, _registry(registry)).recipe(root)


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


def _load_file(path: Path, registry: Mapping[str, Any] | None) -> Recipe:
    hint = f"shipped recipes: {', '.join(list_shipped_recipes()) or '(none)'}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found", f"check the path; {hint}") from None
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: recipe is not UTF-8 text ({e.reason} at byte {e.start})",
                          "save the file as UTF-8") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read recipe: {e.strerror or e}", "check the path and permissions") from None
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
        f"{text}: no shipped recipe of that name{_suggest(text, names)}",
        f"shipped recipes: {', '.join(names) or '(none)'}; or pass a path to a .yaml / .json file",
    )


# ----------------------------------------------------------------- dumping


def _out(x: Any) -> Any:
    """A params value as YAML-able plain data (tuples -> flow lists, enums -> values)."""
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
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _out(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if hasattr(x, "item"):  # numpy scalars
        return _out(x.item())
    raise TypeError(f"cannot write {type(x).__name__} value {x!r} to a recipe")


def _same(a: Any, b: Any) -> bool:
    try:
        return isinstance(a, bool) == isinstance(b, bool) and type(a == b) is bool and a == b
    except Exception:
        return False


def _params_out(params: Any) -> dict[str, Any]:
    """A stage's params: the fields that differ from the dataclass defaults."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return {str(k): _out(v) for k, v in params.items()}
    if not (dataclasses.is_dataclass(params) and not isinstance(params, type)):
        raise TypeError(f"stage params must be a dataclass instance or a mapping, got {type(params).__name__}")
    out = {}
    for f in dataclasses.fields(params):
        if not f.init:
            continue
        value = getattr(params, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if default is not dataclasses.MISSING and _same(value, default):
            continue
        out[f.name] = _out(value)
    return out


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain data in the file format (accepted by `parse_recipe_dict`)."""
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
    out: dict[str, Any] = {"name": recipe.name}
    if recipe.description:
        out["description"] = recipe.description
    out["stages"] = stages
    return out


def _flow(x: Any, key: str | None = None) -> Any:
    """Mark `match:` mappings and lists of scalars for flow style: `{name: ^logits$}`, `[3, 3]`."""
    if isinstance(x, dict):
        items = {k: _flow(v, k) for k, v in x.items()}
        return _FlowMap(items) if key == "match" else items
    if isinstance(x, list):
        if x and all(i is None or isinstance(i, (bool, int, float, str)) for i in x):
            return _FlowList(x)
        return [_flow(i) for i in x]
    return x


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML text that `parse_recipe_text` reads back to an equal Recipe.

    Stage params list only the fields that differ from the technique's defaults; `line` / `source` are
    not written (they come from wherever the text is parsed).
    """
    return yaml.dump(_flow(recipe_to_dict(recipe)), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)

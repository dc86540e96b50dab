"""Recipe text -> a tree of located values: YAML composition with line numbers and its guards.

`compose` parses YAML (or JSON) text with PyYAML's composer and turns the node tree into `Located`
values (value + line), refusing what a recipe never needs: duplicate keys (YAML would keep the last
one silently), non-string keys, tags other than the standard ones, recursive aliases, and alias
expansion beyond `MAX_VALUES` values ("billion laughs"). The work is bounded before it starts: text
over `MAX_RECIPE_BYTES` is refused unparsed, composition stops at `MAX_NODES` nodes, integers of more
than `MAX_INT_DIGITS` digits are never converted, and strings holding NUL are refused. Floats follow
YAML 1.2 / JSON (`1e-4` is a float). `from_python` builds the same tree from plain Python data (no lines). `dump_yaml` writes
plain data back with the same float resolver, so it reads back equal.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import difflib
import re
import typing
from typing import Any, Mapping

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tfcompress.errors import RecipeError

MAX_RECIPE_BYTES = 1 << 20  # 1 MiB: shipped recipes are under 1 KiB; PyYAML needs ~1 s and ~100 MB per MiB
MAX_NODES = 20_000  # YAML nodes composed (aliases not expanded): a recipe of 100 stages needs ~5,000
_SURROGATE = re.compile("[\ud800-\udfff]")  # "\\ud800" escapes decode to these; no UTF-8 or JSON holds them
MAX_VALUES = 100_000  # alias expansion guard ("billion laughs")
MAX_DEPTH = 64
MAX_INT_DIGITS = 100  # no recipe value comes near; int() of a long digit string is quadratic
_INT_LIMIT = 10**MAX_INT_DIGITS

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_INT_TAG = "tag:yaml.org,2002:int"

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
    """SafeLoader with the YAML 1.2-style float resolver; an alias (*name) gets its own position.

    Composition stops with `_TooManyNodes` after `MAX_NODES` nodes, before the rest is even scanned.
    """

    nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooManyNodes(self.peek_event().start_mark)
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        event = self.peek_event()
        node = copy.copy(super().compose_node(parent, index))  # shares the anchored node's value
        node.start_mark, node.end_mark = event.start_mark, event.end_mark
        return node


class _TooManyNodes(Exception):
    """More than MAX_NODES YAML nodes (args: the mark where composition stopped)."""


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


def error(source: str, line: int | None, message: str, hint: str = "") -> RecipeError:
    where = f"{source}:{line}" if line is not None else source
    return RecipeError(f"{where}: {message}", hint)


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)]
    return f" (did you mean {close[0]!r}?)" if close else ""


def short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(x: Any) -> str:
    """What a value is, for 'got ...' in messages."""
    try:
        return _describe_value(x)
    except Exception:  # an int too long to print, a broken __repr__
        return f"a value of type {type(x).__name__}"


def _repr(x: Any) -> str:
    """`repr(x)`, shortened; never raises (an int too long to print, a broken __repr__)."""
    try:
        return short(repr(x))
    except Exception:
        return f"<{type(x).__name__}>"


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
        return f"the string {short(x)!r}"
    if isinstance(x, int):
        return f"{short(str(x))} (an integer)"
    if isinstance(x, float):
        return f"{x!r} (a number)"
    if isinstance(x, datetime.date):
        return f"{x.isoformat()} (a date)"
    return f"{short(repr(x))} (of type {type(x).__name__})"


# ----------------------------------------------------------------- located values


@dataclasses.dataclass
class Located:
    """A value from the recipe with where it came from.

    `value` is a scalar, a list of Located, or a dict of str -> Located. `line` is the value's line, `key_line` the
    line of its key when it is a mapping value (None for dict input).
    """

    value: Any
    line: int | None
    key_line: int | None = None

    @property
    def at(self) -> int | None:
        """The line to report: the key's, else the value's."""
        return self.key_line if self.key_line is not None else self.line


class _Reader:
    """Turns a YAML node tree (or plain Python data) into Located trees, rejecting duplicates and oddities."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.count = 0
        self.active: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, line: int | None, message: str, hint: str = "") -> typing.NoReturn:
        raise error(self.source, line, message, hint)

    def _enter(self, line: int | None, path: str, depth: int) -> None:
        self.count += 1
        if self.count > MAX_VALUES:
            self.fail(line, f"{path or 'recipe'}: too many values (more than {MAX_VALUES}, aliases included)",
                      "a recipe is a short list of stages; check for aliases that expand recursively")
        if depth > MAX_DEPTH:
            self.fail(line, f"{path or 'recipe'}: nested more than {MAX_DEPTH} levels deep",
                      "a recipe needs only a few levels: stages > stage > rules > rule > match")

    def _scalar(self, node: ScalarNode, path: str, what: str = "value") -> Any:
        line = node.start_mark.line + 1
        if node.tag == _INT_TAG and sum(c.isalnum() for c in node.value) > MAX_INT_DIGITS:
            self._too_long(line, path, what)
        try:
            value = self.constructor.construct_object(node, deep=True)
        except Exception as e:  # bad tag, invalid date, !!int "x", ...
            detail = getattr(e, "problem", None) or str(e)
            self.fail(line, f"{path or 'recipe'}: cannot read value {short(node.value)!r}: "
                      f"{short(str(detail), 120)}", "write plain strings, numbers, true/false or null")
        return self.check(value, line, path, what)

    def _too_long(self, line: int | None, path: str, what: str) -> typing.NoReturn:
        self.fail(line, f"{path or 'recipe'}: the {what} is an integer of more than {MAX_INT_DIGITS} digits",
                  "far outside the range of any recipe value: check the number")

    def check(self, value: Any, line: int | None, path: str, what: str = "value") -> Any:
        """`value` (a scalar or key) unless it is a string holding NUL or a lone surrogate, or an integer of absurd
        length."""
        if isinstance(value, str) and "\x00" in value:
            self.fail(line, f"{path or 'recipe'}: the {what} {short(value)!r} contains a NUL character",
                      "recipe strings are names, regexes and words: remove the \\0")
        if isinstance(value, str) and _SURROGATE.search(value):
            self.fail(line, f"{path or 'recipe'}: the {what} {short(value)!r} holds a lone surrogate (not Unicode text)",
                      "write the character itself, or a valid \\U escape")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT_LIMIT:
            self._too_long(line, path, what)
        return value

    def node(self, node: Node, path: str, depth: int = 0, key_line: int | None = None) -> Located:
        line = node.start_mark.line + 1
        self._enter(line, path, depth)
        if isinstance(node, ScalarNode):
            return Located(self._scalar(node, path), line, key_line)
        if id(node.value) in self.active:  # aliases share the anchored node's value
            self.fail(line, f"{path or 'recipe'}: recursive alias (a value that contains itself)",
                      "an alias (*name) must not refer to a mapping or list that encloses it")
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            self.fail(line, f"{path or 'recipe'}: unsupported YAML tag {node.tag!r}", "remove the tag (!...)")
        self.active.add(id(node.value))
        try:
            if isinstance(node, SequenceNode):
                items = [self.node(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node.value)]
                return Located(items, line, key_line)
            return Located(self._mapping(node, path, depth), line, key_line)
        finally:
            self.active.discard(id(node.value))

    def _mapping(self, node: MappingNode, path: str, depth: int) -> dict[str, Located]:
        out: dict[str, Located] = {}
        key_lines: dict[str, int] = {}
        merged: list[dict[str, Located]] = []
        for key_node, value_node in node.value:
            kline = key_node.start_mark.line + 1
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(value_node, path, depth, kline))
                continue
            if not isinstance(key_node, ScalarNode):
                self.fail(kline, f"{path or 'recipe'}: a key must be a plain string, got a "
                          f"{'list' if isinstance(key_node, SequenceNode) else 'mapping'}",
                          "keys are names such as `technique` or `epochs`")
            key = self._scalar(key_node, path, "key")
            if not isinstance(key, str):
                self.fail(kline, f"{path or 'recipe'}: key {key_node.value!r} must be a string, got {show(key)}",
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

    def _merge_sources(self, node: Node, path: str, depth: int, line: int) -> list[dict[str, Located]]:
        v = self.node(node, f"{path}.<<" if path else "<<", depth + 1, key_line=line)
        if isinstance(v.value, dict):
            return [v.value]
        if isinstance(v.value, list) and all(isinstance(i.value, dict) for i in v.value):
            return [i.value for i in v.value]
        self.fail(line, f"{path or 'recipe'}: the merge key '<<' needs a mapping or a list of mappings, got "
                  f"{show(v.value)}", "write `<<: *anchor` where the anchor names a mapping")

    def python(self, obj: Any, path: str, depth: int = 0) -> Located:
        self._enter(None, path, depth)
        if isinstance(obj, Mapping) or isinstance(obj, (list, tuple)):
            if id(obj) in self.active:
                self.fail(None, f"{path or 'recipe'}: recursive structure (a value that contains itself)",
                          "build the recipe from fresh dicts and lists")
            self.active.add(id(obj))
            try:
                if isinstance(obj, (list, tuple)):
                    return Located([self.python(i, f"{path}[{n}]", depth + 1) for n, i in enumerate(obj)], None)
                out: dict[str, Located] = {}
                for key, value in obj.items():
                    if not isinstance(key, str):
                        self.fail(None, f"{path or 'recipe'}: key {_repr(key)} must be a string, got {show(key)}",
                                  "keys are names such as 'technique' or 'epochs'")
                    self.check(key, None, path, "key")
                    out[key] = self.python(value, f"{path}.{key}" if path else key, depth + 1)
                return Located(out, None)
            finally:
                self.active.discard(id(obj))
        return Located(self.check(obj, None, path), None)


def check_size(size: int, source: str, unit: str = "bytes") -> None:
    """Refuse a recipe of `size` (bytes, or characters: each is at least one byte) over `MAX_RECIPE_BYTES`."""
    if size > MAX_RECIPE_BYTES:
        raise RecipeError(f"{source}: recipe is too large: {size:,} {unit}, the limit is {MAX_RECIPE_BYTES:,} bytes",
                          "a recipe is a short list of stages (shipped ones are under 1 KiB): check the file")


def compose(text: str, source: str) -> Located | None:
    """Parse YAML text into a located tree (None for an empty document).

    Raises:
        RecipeError: text over `MAX_RECIPE_BYTES` (refused before parsing), invalid YAML, more than
            `MAX_NODES` nodes, or a value the `_Reader` refuses.
    """
    check_size(len(text), source, "characters")
    check_size(len(text.encode("utf-8", "surrogatepass")), source)
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
    except _TooManyNodes as e:
        mark = e.args[0]
        raise error(source, mark.line + 1, f"too many values (more than {MAX_NODES:,} YAML nodes)",
                    "a recipe is a short list of stages: check for generated or pasted data") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = ", ".join(p for p in (e.context, e.problem) if p) or "syntax error"
        hint = ("indent with spaces, not tabs" if "'\\t'" in problem else
                "fix the syntax: indent with spaces, and quote strings that contain ': ' or start with a special "
                "character")
        raise error(source, mark.line + 1 if mark else 1, f"invalid YAML: {problem}", hint) from None
    except yaml.YAMLError as e:  # ReaderError: characters YAML does not allow
        position = getattr(e, "position", 0) or 0
        reason = getattr(e, "reason", None) or str(e)
        raise error(source, text.count("\n", 0, position) + 1, f"invalid YAML: {short(str(reason), 120)}",
                     "remove control characters from the file") from None
    except RecursionError:
        raise error(source, 1, "invalid YAML: nested too deeply", "a recipe needs only a few levels") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return None
    try:
        return _Reader(source).node(node, "")
    except RecursionError:
        raise error(source, 1, "recipe nested too deeply", "a recipe needs only a few levels") from None


def from_python(data: Any, source: str) -> Located:
    """The located tree of plain Python data (dicts, lists / tuples, scalars); no lines."""
    try:
        return _Reader(source).python(data, "")
    except RecursionError:
        raise error(source, None, "recipe nested too deeply", "a recipe needs only a few levels") from None


# ----------------------------------------------------------------- writing


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


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Plain recipe data as YAML text that `compose` reads back to the same values."""
    return yaml.dump(_flow(dict(data)), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)

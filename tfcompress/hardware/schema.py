"""Pydantic pieces the hardware JSON documents share: strict field types, the kernel key, one-line errors.

    doc = parse(ProfileDoc, data, where="p.json", hint="rebuild it")   # TfcompressError on a bad field:
    # "p.json: 'entries[3].ms' is not a time in ms: 'fast' (rebuild it)"

Our own documents (`Closed`) forbid unknown keys; parts of foreign formats that
legitimately carry more than we read derive from `Open`. Numbers are strict (a
string or a bool is not a number), containers lax (JSON arrays become tuples),
and every number is range-checked here, so a document that parses can be used:
times are finite and at most `MAX_MS`, shapes fit the int32 fields of a .tflite,
thread counts are 1..`MAX_THREADS`, names hold no control characters.

    text = read_document(path, what="device profile", hint="rebuild it")    # bounded, regular files only
    data = parse_json(text, where=str(path), hint="rebuild it")             # one-line errors, no RecursionError
"""

from __future__ import annotations

import json
import os
import reprlib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from tfcompress.errors import TfcompressError
from tfcompress.export.input_files import MAX_DOCUMENT_BYTES, read_input
from tfcompress.hardware.kernels import KernelKey

__all__ = ["Closed", "Open", "Int", "Int32", "Count", "Threads", "Str", "Name", "Number", "Ms", "MAX_MS",
           "MAX_THREADS", "KeyDoc", "is_name", "parse", "error_from", "read_document", "parse_json", "short_repr"]

MAX_MS = 1e7
"""The longest time a document may record: 1e7 ms (about 2.8 hours) for one kernel or model invoke."""

MAX_THREADS = 1024
"""Most threads a profile may record."""

_INT32 = 2**31

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = 4
_SHORT.maxlevel = 2


def short_repr(value: Any) -> str:
    """repr() bounded in length and depth: error messages quote a bad value, never a whole document."""
    return _SHORT.repr(value)


Int = Annotated[int, Strict()]
Int32 = Annotated[int, Strict(), Field(ge=-_INT32, le=_INT32 - 1)]
"""A shape dimension, channel count, kernel size or stride: an int32 field of a .tflite."""
Count = Annotated[int, Strict(), Field(ge=0, le=2**53)]
"""A number of runs or models."""
Threads = Annotated[int, Strict(), Field(ge=1, le=MAX_THREADS)]
Str = Annotated[str, Strict()]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]


def _as_ms(value: Any, handler: ValidatorFunctionWrapHandler) -> float:
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("ms", "is not a time in ms: {value}", {"value": short_repr(value)}) from None


Ms = Annotated[float, Strict(), Field(ge=0, le=MAX_MS, allow_inf_nan=False), WrapValidator(_as_ms)]
"""A time in ms: a finite number, 0 <= ms <= MAX_MS."""


def is_name(name: str) -> bool:
    """Whether `name` is a valid device / model name (see `Name`)."""
    return 0 < len(name) <= 256 and not any(ord(c) < 32 or ord(c) == 127 for c in name)


def _as_name(value: Any, handler: ValidatorFunctionWrapHandler) -> str:
    name = handler(value)
    if not is_name(name):
        raise PydanticCustomError(
            "name", "is not a name (1-256 characters, no NUL or other control characters): {value}",
            {"value": short_repr(value)},
        )
    return name


Name = Annotated[str, Strict(), WrapValidator(_as_name)]
"""A device or model name: 1-256 characters, none of them NUL or another control character."""


class Closed(BaseModel):
    """A document of ours: unknown keys are errors (a typo is not silently dropped)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Open(BaseModel):
    """Part of a format written by others: keys we do not read are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class KeyDoc(Closed):
    """A `KernelKey` as JSON (`KernelKey.to_json`)."""

    op: Str
    dtype: Str
    in_shape: tuple[Int32, ...]
    out_shape: tuple[Int32, ...]
    cin: Int32 = 0
    cout: Int32 = 0
    kernel: tuple[Int32, Int32] = (0, 0)
    stride: tuple[Int32, Int32] = (0, 0)
    padding: Str = ""
    activation: Str = ""
    extra: tuple[Int32, ...] = ()

    def key(self) -> KernelKey:
        return KernelKey(**self.model_dump())


_PHRASES: dict[str, str] = {
    "int_type": "is not an integer",
    "string_type": "is not a string",
    "float_type": "is not a number",
    "bool_type": "is not true or false",
    "finite_number": "is not a finite number",
    "tuple_type": "is not a list",
    "list_type": "is not a list",
    "dict_type": "is not an object",
    "model_type": "is not an object",
    "model_attributes_type": "is not an object",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def error_from(exc: ValidationError, where: str, hint: str) -> TfcompressError:
    """One line naming `where` and the key path of the first problem (and how many more there are)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = _path(first["loc"])
    kind = first["type"]
    if kind == "missing":
        what = f"missing {path!r}"
    elif kind == "extra_forbidden":
        what = f"unknown key {path!r}"
    elif kind in _PHRASES:
        what = f"{path!r} {_PHRASES[kind]}: {short_repr(first['input'])}"
    elif kind in ("ms", "name"):
        what = f"{path!r} {first['msg']}"
    else:
        what = f"{path!r}: {first['msg'][0].lower()}{first['msg'][1:]}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return TfcompressError(f"{where}: {what}{more}", hint)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, *, where: str, hint: str) -> M:
    """`model` validated from parsed JSON; a TfcompressError naming `where` and the key path otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error_from(exc, where, hint) from None


def read_document(path: str | os.PathLike[str], *, what: str, hint: str) -> str:
    """The text of a JSON / CSV document: a regular file of at most `MAX_DOCUMENT_BYTES`, UTF-8.

    Raises:
        TfcompressError: missing, not a regular file, too large, or not text
            (e.g. a .tflite passed where a profile goes).
    """
    raw = read_input(path, what=what, cap=MAX_DOCUMENT_BYTES, hint=hint)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        is_what = "a TFLite model" if raw[4:8] == b"TFL3" else "not a text file"
        raise TfcompressError(f"{Path(path)} is {is_what}, not a {what}", hint) from None


def parse_json(text: str, *, where: str, hint: str) -> Any:
    """`json.loads(text)`, with every way it can fail as one TfcompressError naming `where`.

    Besides syntax errors: NaN / Infinity literals, integers of thousands of
    digits, and nesting deeper than the interpreter's recursion limit.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise TfcompressError(
            f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", hint
        ) from None
    except RecursionError:
        raise TfcompressError(f"{where} is not a JSON document tfcompress reads: nested too deeply", hint) from None
    except ValueError as exc:  # integers over sys.get_int_max_str_digits(), NaN / Infinity
        why = "it holds an integer of thousands of digits" if "digits" in str(exc) else str(exc)
        raise TfcompressError(f"{where} is not a JSON document tfcompress reads: {why}", hint) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")

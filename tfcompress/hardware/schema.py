"""Pydantic pieces the hardware JSON documents share: strict field types, the kernel key, one-line errors.

    doc = parse(ProfileDoc, data, where="p.json", hint="rebuild it")   # TfcompressError on a bad field:
    # "p.json: 'entries[3].ms' is not a time in ms: 'fast' (rebuild it)"

Our own documents (`Closed`) forbid unknown keys; parts of foreign formats that
legitimately carry more than we read derive from `Open`. Numbers are strict (a
string or a bool is not a number), containers lax (JSON arrays become tuples).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from tfcompress.errors import TfcompressError
from tfcompress.hardware.kernels import KernelKey

__all__ = ["Closed", "Open", "Int", "Str", "Number", "Ms", "KeyDoc", "parse", "error_from"]

Int = Annotated[int, Strict()]
Str = Annotated[str, Strict()]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]


def _as_ms(value: Any, handler: ValidatorFunctionWrapHandler) -> float:
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("ms", "is not a time in ms: {value}", {"value": repr(value)}) from None


Ms = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False), WrapValidator(_as_ms)]
"""A time in ms: a finite number >= 0."""


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
    in_shape: tuple[Int, ...]
    out_shape: tuple[Int, ...]
    cin: Int = 0
    cout: Int = 0
    kernel: tuple[Int, Int] = (0, 0)
    stride: tuple[Int, Int] = (0, 0)
    padding: Str = ""
    activation: Str = ""
    extra: tuple[Int, ...] = ()

    def key(self) -> KernelKey:
        return KernelKey(self.op, self.dtype, self.in_shape, self.out_shape, self.cin, self.cout, self.kernel,
                         self.stride, self.padding, self.activation, self.extra)


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
        what = f"{path!r} {_PHRASES[kind]}: {first['input']!r}"
    elif kind == "ms":
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

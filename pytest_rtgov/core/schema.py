"""Validating decoded data against a typed schema (msgspec), with readable errors.

One role: :func:`convert` turns builtin data (decoded JSON or TOML) into the typed
value a schema declares (msgspec Structs or dataclasses whose fields carry
``Annotated[..., msgspec.Meta(...)]`` constraints), and turns msgspec's
``ValidationError`` into the project's own error, which names the file, the key
path and what was expected there::

    run.json: at $.tests[0].samples[0].cpu_ns: expected an integer >= 0 (got -1)

The expectation is the ``description`` of the field's ``msgspec.Meta`` when it has
one (the same text an editor shows from the published JSON Schema), else words made
from the field's type (:func:`describe`). The place is the innermost object field
on the error's path: an error inside a list of strings names the list.
Pure: no disk.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from pytest_rtgov.errors import RtgovError

__all__ = [
    "ErrorFactory",
    "convert",
    "describe",
    "missing_key",
    "one_of",
    "require_keys",
    "shown",
]

T = TypeVar("T")
ErrorFactory = Callable[[str, str, str], RtgovError]  # (source, place, expected) -> error

_MISSING = object()
_AT = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_FIELD = re.compile(r"^Object (?P<kind>missing required|contains unknown) field `(?P<name>.+)`$")
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
Segment = str | int | None  # a field name, a list index, or a value in a dict (any key)


def convert(data: Any, type_: type[T], *, source: str, error: ErrorFactory, root: str = "$") -> T:
    """``data`` as ``type_``, validated; raises ``error(source, place, expected)``.

    ``root`` starts every place: ``"$"`` gives JSON paths (``$.tests[0].nodeid``),
    ``""`` gives TOML key paths (``gates[0].max``). ``data`` is never mutated.
    """
    try:
        return msgspec.convert(data, type_)
    except msgspec.ValidationError as exc:
        raise _explain(str(exc), data, type_, source, error, root) from None


def _explain(
    message: str, data: Any, type_: Any, source: str, error: ErrorFactory, root: str
) -> RtgovError:
    match = _AT.match(message)
    assert match is not None  # the pattern matches any text
    text, segments = match["message"], _segments(match["path"] or "$")
    field = _FIELD.match(text)
    info = mi.type_info(type_)
    if field and field["kind"] == "contains unknown":
        name = field["name"]
        allowed = sorted(_fields(_walk(info, segments)))
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return error(
            source,
            _render(root, [*segments, name]),
            f"one of the keys {', '.join(allowed)} (unknown key {name!r}{hint})",
        )
    if field:
        segments.append(field["name"])
    place, at = _place(info, segments)
    got = _MISSING if field and len(place) == len(segments) else _value_at(data, place)
    return error(source, _render(root, place), f"{describe(at)} (got {shown(got)})")


def _segments(path: str) -> list[Segment]:
    """``$.a[0].b[...]`` as ``["a", 0, "b", None]``."""
    return [
        name if name else (None if index == "..." else int(index))
        for name, index in _SEGMENT.findall(path[1:])
    ]


def _render(root: str, segments: list[Segment]) -> str:
    text = root
    for segment in segments:
        if isinstance(segment, str):
            text = f"{text}.{segment}" if text else segment
        else:
            text += "[...]" if segment is None else f"[{segment}]"
    return text


def _unwrap(info: mi.Type) -> mi.Type:
    return info.type if isinstance(info, mi.Metadata) else info


def _step(info: mi.Type, segment: Segment) -> mi.Type | None:
    """The type one segment further in, or None where ``info`` has no such part."""
    inner = _unwrap(info)
    if isinstance(inner, mi.UnionType):
        steps = (_step(member, segment) for member in inner.types)
        return next((s for s in steps if s is not None), None)
    if isinstance(segment, str):
        if isinstance(inner, (mi.StructType, mi.DataclassType)):
            fields = {f.encode_name: f.type for f in inner.fields}
            return fields.get(segment)
        return None
    if segment is None:
        return inner.value_type if isinstance(inner, mi.DictType) else None
    if isinstance(inner, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return inner.item_type
    return None


def _walk(info: mi.Type, segments: list[Segment]) -> mi.Type:
    for segment in segments:
        info = _step(info, segment) or mi.AnyType()
    return info


def _fields(info: mi.Type) -> list[str]:
    inner = _unwrap(info)
    if isinstance(inner, mi.UnionType):
        return [name for member in inner.types for name in _fields(member)]
    if isinstance(inner, (mi.StructType, mi.DataclassType)):
        return [f.encode_name for f in inner.fields]
    return []


def _is_object(info: mi.Type) -> bool:
    return isinstance(_unwrap(info), (mi.StructType, mi.DataclassType))


def _place(info: mi.Type, segments: list[Segment]) -> tuple[list[Segment], mi.Type]:
    """The innermost field or object on the path, and its type."""
    best: tuple[list[Segment], mi.Type] = ([], info)
    current: mi.Type | None = info
    for i, segment in enumerate(segments):
        current = _step(current, segment) if current is not None else None
        if current is None:
            break
        if isinstance(segment, str) or _is_object(current):
            best = (segments[: i + 1], current)
    return best


def _value_at(data: Any, segments: list[Segment]) -> Any:
    for segment in segments:
        if isinstance(segment, str) and isinstance(data, dict):
            data = data.get(segment, _MISSING)
        elif isinstance(segment, int) and isinstance(data, (list, tuple)) and segment < len(data):
            data = data[segment]
        else:
            break
    return data


def shown(value: Any, limit: int = 120) -> str:
    """``repr`` for a message: a huge integer as its number of digits (a 400-digit
    threshold), a long value cut to ``limit`` characters, a missing key as such."""
    if value is _MISSING:
        return "'<missing>'"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"a {len(str(abs(value)))}-digit integer"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(info: mi.Type) -> str:
    """What a value of this type is, in words: ``an integer >= 0 or null``."""
    if isinstance(info, mi.Metadata):
        description = (info.extra_json_schema or {}).get("description")
        return str(description) if description else describe(info.type)
    if isinstance(info, mi.UnionType):
        members = sorted(info.types, key=lambda t: isinstance(t, mi.NoneType))
        return " or ".join(describe(t) for t in members)
    if isinstance(info, mi.IntType):
        return _bounded("an integer", info.ge, info.gt, info.le, info.lt, integer=True)
    if isinstance(info, mi.FloatType):
        return _bounded("a number", info.ge, info.gt, info.le, info.lt, integer=False)
    if isinstance(info, mi.StrType):
        return "a non-empty string" if info.min_length else "a string"
    if isinstance(info, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        item = _unwrap(info.item_type)
        if isinstance(item, mi.StrType):
            return "a list of non-empty strings" if item.min_length else "a list of strings"
        return "a list"
    if isinstance(info, mi.DictType):
        return "an object of strings" if isinstance(info.value_type, mi.StrType) else "an object"
    if isinstance(info, mi.LiteralType):
        return " or ".join(repr(v) for v in info.values)
    simple = {mi.BoolType: "true or false", mi.NoneType: "null", mi.AnyType: "any value"}
    return simple.get(type(info), "an object")


def _bounded(noun: str, ge: Any, gt: Any, le: Any, lt: Any, *, integer: bool) -> str:
    if integer:  # strict bounds of an integer as inclusive ones
        ge = gt + 1 if gt is not None else ge
        le = lt - 1 if lt is not None else le
        gt = lt = None
    if ge is not None and le is not None:
        return f"{noun} from {_number(ge)} to {_number(le)}"
    if ge is not None and lt is not None:
        return f"{noun} from {_number(ge)} to below {_number(lt)}"
    pairs = ((">=", ge), (">", gt), ("<=", le), ("<", lt))
    bounds = [f"{op} {_number(v)}" for op, v in pairs if v is not None]
    return f"{noun} {' and '.join(bounds)}" if bounds else noun


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"



def one_of(*choices: str) -> msgspec.Meta:
    """A string constraint: exactly one of ``choices`` (``\\Z``: no trailing newline)."""
    words = ", ".join(repr(c) for c in choices)
    return msgspec.Meta(
        pattern=f"^(?:{'|'.join(map(re.escape, choices))})\\Z",
        description=words if len(choices) == 1 else f"one of {words}",
    )


def require_keys(
    data: Any, type_: Any, *, source: str, error: ErrorFactory, root: str = "$"
) -> None:
    """Check the keys ``data`` must hold though ``type_`` has defaults for them.

    msgspec takes a field with a default as optional; a class that wants some keys
    of its file format present whatever Python callers may leave out names them in
    a ``required_keys`` ClassVar. Run after :func:`convert` succeeded (the shapes
    are then right); every object at every depth is checked.
    """
    _require(data, _plan(type_), (root,), source, error)


# (class, its required keys, its children: (field, is a list, plan of the child))
_Plan = tuple[Any, frozenset[str], tuple[tuple[str, bool, Any], ...]]
_PLANS: dict[Any, _Plan] = {}


def _plan(type_: Any) -> _Plan:
    if type_ not in _PLANS:
        _PLANS[type_] = (type_, frozenset(), ())  # a placeholder against recursion
        info = _unwrap(mi.type_info(type_))
        assert isinstance(info, (mi.StructType, mi.DataclassType))
        children = []
        for f in info.fields:
            inner, many = _without_none(f.type), False
            if isinstance(inner, (mi.ListType, mi.VarTupleType)):
                inner, many = _without_none(inner.item_type), True
            if isinstance(inner, (mi.StructType, mi.DataclassType)):
                children.append((f.encode_name, many, _plan(inner.cls)))
        required = frozenset(getattr(type_, "required_keys", ()))
        _PLANS[type_] = (type_, required, tuple(children))
    return _PLANS[type_]


def _without_none(info: mi.Type) -> mi.Type:
    inner = _unwrap(info)
    if isinstance(inner, mi.UnionType):
        members = [t for t in inner.types if not isinstance(t, mi.NoneType)]
        return _unwrap(members[0]) if len(members) == 1 else inner
    return inner


def _require(
    data: Any, plan: _Plan, path: tuple[Any, ...], source: str, error: ErrorFactory
) -> None:
    cls, required, children = plan
    if required and not required <= data.keys():
        key, place = min(required - data.keys()), _path_text(path)
        raise missing_key(cls, key, source=source, place=place, error=error)
    for name, many, child in children:
        value = data.get(name)
        if value is None:
            continue
        if not many:
            _require(value, child, (path, name), source, error)
        elif child[1] or child[2]:
            for i, item in enumerate(value):
                _require(item, child, (path, name, i), source, error)


def _path_text(path: tuple[Any, ...]) -> str:
    """``(("$",), "tests", 3)`` as ``$.tests[3]``."""
    parent, *rest = path
    text = parent if isinstance(parent, str) else _path_text(parent)
    for part in rest:
        text = f"{text}[{part}]" if isinstance(part, int) else f"{text}.{part}"
    return text


def missing_key(
    type_: Any, key: str, *, source: str, place: str, error: ErrorFactory
) -> RtgovError:
    """The error for a key the data must hold though ``type_`` has a default for it."""
    info = _step(mi.type_info(type_), key) or mi.AnyType()
    return error(source, f"{place}.{key}", f"{describe(info)} (got {shown(_MISSING)})")

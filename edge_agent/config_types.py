"""Field types and the validator behind the configuration structs (msgspec, not pydantic).

The configuration is a tree of frozen :class:`msgspec.Struct` classes (:class:`Model`).
msgspec converts and bounds-checks single values in C, but stops at the first error; a gateway's
``check-config`` must list *every* problem by field. So :func:`validate` walks the tree itself:
each field is converted on its own (``msgspec.convert``, non-strict so environment strings such
as ``"1884"`` become numbers), problems are collected with their location, ``type`` picks the
source struct, and each struct's :meth:`Model.problems` adds the checks between fields.
Per-field checks msgspec cannot express (the id rule, files that must exist, finite floats) ride
in ``Meta(extra={"check": fn})``.

Why not pydantic: on a gateway it cost about 15 MB of RSS (the library plus the compiled
models) for a file read once at start and on reload; msgspec is already loaded for the wire
contract.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Literal, Self, Union

import msgspec

from shared.ids import ID_MAX_LENGTH, is_valid_id

ID_RULE: Final = (
    f"ids are 1-{ID_MAX_LENGTH} characters of A-Z a-z 0-9 _ . : - starting with a letter or "
    "digit (no '/', '+', '#', spaces)"
)

#: A location in the configuration: ``("sources", 0, "port")``.
Loc = tuple[str | int, ...]
#: Problems found, each with its location and a message.
Problems = list[tuple[Loc, str]]
#: A per-field check: returns a message for a bad value, None for a good one.
Check = Callable[[Any], "str | None"]


def check(fn: Check) -> msgspec.Meta:
    """Annotate a field with a check msgspec cannot express."""
    return msgspec.Meta(extra={"check": fn})


def _id_problem(value: str) -> str | None:
    return None if is_valid_id(value) else f"{value!r}: {ID_RULE}"


def _file_problem(value: Path) -> str | None:
    return None if value.is_file() else f"path does not point to a file (got {str(value)!r})"


def _finite_problem(value: float) -> str | None:
    return None if math.isfinite(value) else f"must be a finite number (got {value!r})"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable_problem(value: str) -> str | None:
    if _CONTROL.search(value) is None:
        return None
    return f"must be printable text, without control characters (got {value!r})"


#: An identifier under the shared rule (:mod:`shared.ids`): safe in topics, tags and queries.
IdStr = Annotated[str, check(_id_problem)]
#: Printable text without control characters, as the wire contract's ``Text``.
Text = Annotated[str, msgspec.Meta(max_length=256), check(_printable_problem)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
FilePath = Annotated[Path, check(_file_problem)]
FiniteFloat = Annotated[float, check(_finite_problem)]


class Secret:
    """A password or token: its value never shows in ``repr``, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Model(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Frozen, and unknown keys are errors (a typo must not silently become a default).

    Build one with :meth:`from_mapping` (or :func:`validate`), which checks every field;
    the plain constructor checks nothing.
    """

    #: Field names whose values never appear in messages.
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    def problems(self) -> Problems:
        """Checks across fields, run once every field is valid; locations are relative."""
        return []

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Validate ``values`` into this struct; :class:`ConfigInvalid` lists every problem."""
        problems: Problems = []
        out = validate(cls, values, (), problems)
        if problems:
            raise ConfigInvalid(problems)
        return typing.cast(Self, out)


class ConfigInvalid(ValueError):
    """Every problem :func:`validate` found, by location."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in problems))


def format_loc(loc: Loc) -> str:
    """``("sources", 0, "port")`` -> ``sources[0].port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(config)"


# -- the validator ----------------------------------------------------------------------------


class _Invalid:
    """The value of a field that failed (its problem is already recorded)."""


INVALID: Final = _Invalid()
_NONE_TYPE: Final = type(None)


def _dec_hook(tp: type, obj: object) -> object:
    if tp is Path and isinstance(obj, str):
        return Path(obj)
    if tp is Secret and isinstance(obj, str):
        return Secret(obj)
    if tp in (Path, Secret):
        raise TypeError(f"must be a string (got {type(obj).__name__})")
    raise NotImplementedError(tp)  # pragma: no cover - only the types above are declared


_hints: dict[type, tuple[dict[str, Any], frozenset[str]]] = {}


def _fields_of(cls: type[Model]) -> tuple[dict[str, Any], frozenset[str]]:
    """The struct's field types (with their ``Annotated`` metadata) and its required fields."""
    known = _hints.get(cls)
    if known is None:
        every = typing.get_type_hints(cls, include_extras=True)
        infos = msgspec.structs.fields(cls)
        known = _hints[cls] = (
            {f.name: every[f.name] for f in infos},
            frozenset(f.name for f in infos if f.required),
        )
    return known


def _field_types(cls: type[Model]) -> dict[str, Any]:
    return _fields_of(cls)[0]


def _split(tp: Any) -> tuple[Any, list[msgspec.Meta]]:
    """``Annotated[T, Meta...]`` -> ``(T, [Meta...])``."""
    metas: list[msgspec.Meta] = []
    while typing.get_origin(tp) is Annotated:
        metas.extend(m for m in tp.__metadata__ if isinstance(m, msgspec.Meta))
        tp = tp.__origin__
    return tp, metas


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Model)


def _models_in(tp: Any) -> list[type[Model]] | None:
    """The structs of ``Model``, ``Model | None`` or a union of Models; None for a leaf type."""
    args = _union_args(tp)
    arms = [tp] if args is None else [a for a in args if a is not _NONE_TYPE]
    return arms if arms and all(_is_model(a) for a in arms) else None


def _tag_of(cls: type[Model]) -> str:
    (tag,) = typing.get_args(_field_types(cls)["type"])
    return str(tag)


def validate(tp: Any, value: object, loc: Loc, problems: Problems, secret: bool = False) -> Any:
    """``value`` converted to ``tp``, or :data:`INVALID` with its problems added."""
    base, metas = _split(tp)
    models = _models_in(base)
    if models is not None:
        if value is None and _union_args(base) and _NONE_TYPE in typing.get_args(base):
            return None
        return _validate_struct(models, value, loc, problems)
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        if _models_in(_split(item)[0]) is not None:
            return _validate_list(item, metas, value, loc, problems)
    if typing.get_origin(base) is dict and isinstance(value, Mapping):
        return _validate_table(base, value, loc, problems, secret)
    return _validate_leaf(tp, value, loc, problems, secret)


def _validate_table(
    tp: Any, value: Mapping[object, object], loc: Loc, problems: Problems, secret: bool
) -> Any:
    """A TOML inline table of one value type (``headers``, ``value_map``), key by key."""
    _, item = typing.get_args(tp)
    out = {str(k): validate(item, v, (*loc, str(k)), problems, secret) for k, v in value.items()}
    return INVALID if any(v is INVALID for v in out.values()) else out


def _validate_list(
    item: Any, metas: list[msgspec.Meta], value: object, loc: Loc, problems: Problems
) -> Any:
    if not isinstance(value, list):
        problems.append((loc, f"must be a list of tables (got {_kind(value)})"))
        return INVALID
    min_length = max((m.min_length or 0 for m in metas), default=0)
    if len(value) < min_length:
        entries = "entry" if min_length == 1 else "entries"
        problems.append((loc, f"needs at least {min_length} {entries}"))
        return INVALID
    out = [validate(item, v, (*loc, i), problems) for i, v in enumerate(value)]
    return INVALID if any(v is INVALID for v in out) else out


def _pick(models: list[type[Model]], value: Mapping[str, Any], loc: Loc, problems: Problems) -> Any:
    """The struct for ``value``: the only one, or the one its ``type`` names."""
    if len(models) == 1:
        return models[0]
    tags = {_tag_of(m): m for m in models}
    tag = value.get("type")
    if tag is None:
        problems.append(((*loc, "type"), "Field required"))
        return INVALID
    if not isinstance(tag, str):  # a list or table is no type name (and is unhashable)
        message = f"must be a string, one of {', '.join(repr(t) for t in tags)}"
        problems.append(((*loc, "type"), f"{message} (got {_kind(tag)})"))
        return INVALID
    if tag not in tags:
        problems.append(((*loc, "type"), _one_of(list(tags), tag)))
        return INVALID
    return tags[tag]


def _validate_struct(models: list[type[Model]], value: object, loc: Loc, problems: Problems) -> Any:
    if not isinstance(value, Mapping):
        problems.append((loc, f"must be a table (got {_kind(value)})"))
        return INVALID
    cls = _pick(models, value, loc, problems)
    if cls is INVALID:
        return INVALID
    hints, required = _fields_of(cls)
    before = len(problems)
    problems.extend(
        ((*loc, str(key)), "Extra inputs are not permitted") for key in value if key not in hints
    )
    problems.extend(((*loc, name), "Field required") for name in required if name not in value)
    fields = {
        name: validate(tp, value[name], (*loc, name), problems, name in cls.secret_fields)
        for name, tp in hints.items()
        if name in value
    }
    if len(problems) > before:
        return INVALID
    obj = cls(**fields)
    found = obj.problems()
    problems.extend(((*loc, *where), msg) for where, msg in found)
    return INVALID if found else obj


def _validate_leaf(tp: Any, value: object, loc: Loc, problems: Problems, secret: bool) -> Any:
    try:
        out = msgspec.convert(value, tp, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        message = _explain(str(exc), tp, value)
        if not secret and isinstance(value, str | int | float | bool) and len(repr(value)) <= 80:
            message += f" (got {value!r})"
        problems.append((loc, message))
        return INVALID
    problem = _check_value(tp, out)
    if problem is not None:
        problems.append((loc, problem))
        return INVALID
    return out


def _check_value(tp: Any, value: object) -> str | None:
    """The first problem the ``check`` annotations in ``tp`` find with ``value`` (converted)."""
    if value is None:
        return None
    base, metas = _split(tp)
    for meta in metas:
        fn = (meta.extra or {}).get("check")
        if fn is not None and (problem := fn(value)) is not None:
            return str(problem)
    args = _union_args(base)
    if args is not None:
        for arm in args:
            if arm is not _NONE_TYPE and (problem := _check_value(arm, value)) is not None:
                return problem
        return None
    return None


_TYPE_WORDS: Final = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "nothing",
}
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]+)`(?:, got `(?P<got>[^`]+)`)?(?P<rest>.*)$")


def _kind(value: object) -> str:
    names = {bool: "bool", int: "int", float: "float", str: "str", list: "array", dict: "object"}
    return _TYPE_WORDS.get(names.get(type(value), ""), type(value).__name__)


def _choices(tp: Any) -> list[object] | None:
    base, _ = _split(tp)
    if typing.get_origin(base) is list:
        return _choices(typing.get_args(base)[0])
    arms = [a for a in (_union_args(base) or (base,)) if a is not _NONE_TYPE]
    out: list[object] = []
    for annotated in arms:
        arm, _ = _split(annotated)
        if typing.get_origin(arm) is Literal:
            out.extend(typing.get_args(arm))
        elif isinstance(arm, type) and issubclass(arm, Enum):
            out.extend(m.value for m in arm)
        else:
            return None
    return out


def _one_of(choices: list[object], got: object) -> str:
    return "must be one of " + ", ".join(repr(c) for c in choices) + f" (got {got!r})"


def _explain(message: str, tp: Any, value: object) -> str:
    """msgspec's terse message, in words a gateway's installer reads without the docs."""
    message = message.split(" - at `$", 1)[0]
    choices = _choices(tp) if message.startswith("Invalid enum value") else None
    if choices is not None:
        return "must be one of " + ", ".join(repr(c) for c in choices)
    match = _EXPECTED.match(message)
    if match is None:
        return message
    wants = [_TYPE_WORDS.get(w.strip(), w.strip()) for w in match["want"].split("|")]
    text = "must be " + " or ".join(w for w in wants if w != "nothing")
    rest = match["rest"].strip()
    if rest:
        text += " " + rest.replace("matching regex", "matching")
    return text

"""Typed, path-tracking access to parsed TOML, so every complaint names its field and line.

A :class:`Table` wraps one TOML table and knows its key path (``lines[1].products[0]``). Reading
a field checks its type and range; :meth:`Table.done` then refuses keys nobody read, which is
how a typo (``rate_pr_h``) becomes an error instead of a silently ignored setting.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final, TypeVar

from firmware_sim.errors import ScenarioError
from firmware_sim.scenario.toml_lines import LineIndex
from shared.ids import is_valid_id

T = TypeVar("T")
_MISSING: Final[Any] = object()
_HHMM: Final = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)\Z")


class Context:
    """What every error needs: the file name and where its keys are."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.index = LineIndex(text)

    def error(self, field: str, reason: str) -> ScenarioError:
        return ScenarioError(
            reason, field=field, line=self.index.line_of(field), source=self.source
        )


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class Table:
    def __init__(self, data: dict[str, Any], path: str, ctx: Context) -> None:
        self.data = data
        self.path = path
        self.ctx = ctx
        self._read: set[str] = set()

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> ScenarioError:
        return self.ctx.error(self.field(key), reason)

    def has(self, key: str) -> bool:
        return key in self.data

    def _raw(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(key, "is required")
        return default

    def string(self, key: str, default: Any = _MISSING, *, choices: Any = None) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_type_name(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(sorted(choices))}; got {value!r}")
        return value

    def ident(self, key: str, default: Any = _MISSING) -> Any:
        value = self.string(key, default)
        if value is not None and not is_valid_id(value):
            raise self.error(
                key,
                f"{value!r} is not a valid id (1-64 of A-Z a-z 0-9 _ . : -, starting with a "
                "letter or digit)",
            )
        return value

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
    ) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {_type_name(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, "must be finite")
        if ge is not None and value < ge:
            raise self.error(key, f"must be >= {ge:g}, got {value:g}")
        if gt is not None and value <= gt:
            raise self.error(key, f"must be > {gt:g}, got {value:g}")
        if le is not None and value > le:
            raise self.error(key, f"must be <= {le:g}, got {value:g}")
        return value

    def integer(
        self, key: str, default: Any = _MISSING, *, ge: int | None = None, le: int | None = None
    ) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_type_name(value)}")
        if ge is not None and value < ge:
            raise self.error(key, f"must be >= {ge}, got {value}")
        if le is not None and value > le:
            raise self.error(key, f"must be <= {le}, got {value}")
        return value

    def numbers(self, key: str, default: Any = _MISSING, *, length: int | None = None) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise self.error(key, "must be an array of numbers")
        if length is not None and len(value) != length:
            raise self.error(key, f"must have {length} numbers, got {len(value)}")
        if not all(math.isfinite(v) for v in value):
            raise self.error(key, "must hold finite numbers")
        return tuple(float(v) for v in value)

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be an array of strings")
        return tuple(value)

    def hhmm(self, key: str) -> int:
        """A time of day ``HH:MM`` (``24:00`` allowed) as minutes after midnight."""
        value = self.string(key)
        m = _HHMM.match(value)
        if not m or (m.group(1) == "24" and m.group(2) != "00"):
            raise self.error(key, f"must be a time of day HH:MM, got {value!r}")
        return int(m.group(1)) * 60 + int(m.group(2))

    def table(self, key: str, *, required: bool = False) -> Table | None:
        value = self._raw(key, _MISSING if required else None)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {_type_name(value)}")
        return Table(value, self.field(key), self.ctx)

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]`` or ``key = [{...}, ...]``); missing = empty."""
        value = self._raw(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, "must be an array of tables")
        return [Table(v, f"{self.field(key)}[{i}]", self.ctx) for i, v in enumerate(value)]

    def each(self, key: str, build: Callable[[Table], T]) -> tuple[T, ...]:
        out = []
        for t in self.tables(key):
            out.append(build(t))
            t.done()
        return tuple(out)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise self.error(unknown[0], f"unknown field {unknown[0]!r}")

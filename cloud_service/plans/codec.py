"""Plan books to and from TOML files and JSON bodies (one data shape for both).

``{"skus": [...], "production": [...], "demand": [...], "receipts": [...], "shifts": [...],
"timezone": "..."}``: times as ISO-8601 strings (naive ones in ``timezone``, default UTC), TOML
dates and times, or integer epoch ms (``start``/``end`` or ``start_ms``/``end_ms``; a receipt's
``due`` or ``due_ms``). ``shifts`` is the recurring form of ``production``
(:mod:`cloud_service.plans.shifts`). Problems come back together in one :class:`PlanError`,
with paths such as ``demand[3].end`` (shape first: unknown or missing fields and bad times;
then values, overlaps and duplicates). Export writes the explicit form with UTC ISO
times, which reads back to an equal book.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud_service.plans.errors import PlanError
from cloud_service.plans.model import (
    DemandTarget,
    PlanBook,
    ProductionTarget,
    ScheduledReceipt,
    SkuPolicy,
)
from cloud_service.plans.shifts import expand_shifts
from cloud_service.plans.times import TimeFormatError, to_iso, to_ms

_Problems = list[tuple[str, str]]
_Part = type[SkuPolicy] | type[ProductionTarget] | type[DemandTarget] | type[ScheduledReceipt]
_PERIOD: Final = ("start", "end")

#: Per section: its class, the required fields, the optional ones, and its required times
#: (each given as ``name`` or ``name_ms``).
_SECTIONS: Final[dict[str, tuple[_Part, tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    "skus": (
        SkuPolicy,
        ("site", "sku"),
        ("location", "lead_time_h", "safety_stock", "service_level", "review_h"),
        (),
    ),
    "production": (ProductionTarget, ("site", "line", "quantity"), ("sku", "period"), _PERIOD),
    "demand": (DemandTarget, ("site", "sku", "quantity"), ("location",), _PERIOD),
    "receipts": (
        ScheduledReceipt,
        ("site", "sku", "quantity"),
        ("location", "reference"),
        ("due",),
    ),
}
_TOP: Final = frozenset({*_SECTIONS, "shifts", "timezone"})
#: The problem reported for arrays or tables nested deeper than the parser's recursion limit.
TOO_DEEP: Final = "nested too deeply"


def plan_from_data(data: object, source: str = "plan") -> PlanBook:
    """A validated book from parsed TOML or JSON; :class:`PlanError` lists every problem."""
    if not isinstance(data, Mapping):
        raise PlanError(source, [("(root)", "must be a table/object")])
    problems: _Problems = [(str(k), "unknown section") for k in data if k not in _TOP]
    tz = _timezone(data.get("timezone", "UTC"), problems)
    parts: dict[str, list[Any]] = {name: [] for name in _SECTIONS}
    for name in (*_SECTIONS, "shifts"):
        items = data.get(name, [])
        if not isinstance(items, list):
            problems.append((name, "must be a list of tables"))
            continue
        for i, item in enumerate(items):
            path = f"{name}[{i}]"
            if not isinstance(item, Mapping):
                problems.append((path, "must be a table/object"))
                continue
            try:
                if name == "shifts":
                    parts["production"] += expand_shifts(item, tz)
                else:
                    parts[name].append(_part(name, item, tz))
            except PlanError as exc:
                problems += [(f"{path}.{p}", m) for p, m in exc.problems]
    if problems:
        raise PlanError(source, problems)
    try:
        return PlanBook(
            skus=tuple(parts["skus"]),
            production=tuple(parts["production"]),
            demand=tuple(parts["demand"]),
            receipts=tuple(parts["receipts"]),
        )
    except PlanError as exc:
        raise PlanError(source, exc.problems) from None


def _part(name: str, item: Mapping[str, Any], tz: tzinfo) -> object:
    cls, required, optional, times = _SECTIONS[name]
    known = {*required, *optional, *times, *(f"{t}_ms" for t in times)}
    problems: _Problems = [(str(k), "unknown field") for k in item if k not in known]
    problems += [(k, "required") for k in required if item.get(k) is None]
    kwargs: dict[str, Any] = {k: item[k] for k in (*required, *optional) if item.get(k) is not None}
    for edge in times:
        given = [k for k in (edge, f"{edge}_ms") if k in item]
        if len(given) != 1:
            problems.append((edge, "required" if not given else f"give {edge} or {edge}_ms"))
            continue
        try:
            kwargs[f"{edge}_ms"] = to_ms(item[given[0]], tz)
        except TimeFormatError as exc:
            problems.append((given[0], str(exc)))
    if problems:
        raise PlanError(name, problems)
    return cls(**kwargs)


def _timezone(value: object, problems: _Problems) -> tzinfo:
    if value in ("UTC", "Z"):
        return UTC
    try:
        if isinstance(value, str):
            return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # e.g. "Europe" is a directory there
        pass
    problems.append(("timezone", f"not an IANA time zone (Europe/Berlin, UTC): {value!r}"))
    return UTC


def plan_to_data(book: PlanBook) -> dict[str, list[dict[str, Any]]]:
    """The explicit form (no ``shifts``), times as UTC ISO-8601, absent values (and empty
    receipt references) omitted."""
    skus = [_drop_none({
        "site": p.site, "sku": p.sku, "location": p.location, "lead_time_h": p.lead_time_h,
        "safety_stock": p.safety_stock, "service_level": p.service_level, "review_h": p.review_h,
    }) for p in book.skus]  # fmt: skip
    production = [_drop_none({
        "site": t.site, "line": t.line, "sku": t.sku, "start": to_iso(t.start_ms),
        "end": to_iso(t.end_ms), "quantity": t.quantity, "period": t.period,
    }) for t in book.production]  # fmt: skip
    demand = [_drop_none({
        "site": t.site, "sku": t.sku, "location": t.location, "start": to_iso(t.start_ms),
        "end": to_iso(t.end_ms), "quantity": t.quantity,
    }) for t in book.demand]  # fmt: skip
    receipts = [_drop_none({
        "site": r.site, "sku": r.sku, "location": r.location, "due": to_iso(r.due_ms),
        "quantity": r.quantity, "reference": r.reference or None,
    }) for r in book.receipts]  # fmt: skip
    return {"skus": skus, "production": production, "demand": demand, "receipts": receipts}


def _drop_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}


# -- JSON -----------------------------------------------------------------------------------


def parse_plan_json(text: str | bytes, source: str = "request body") -> PlanBook:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(source, [("(syntax)", str(exc))]) from None
    except RecursionError:
        raise PlanError(source, [("(syntax)", TOO_DEEP)]) from None
    return plan_from_data(data, source)


def plan_to_json(book: PlanBook, *, indent: int | None = None) -> str:
    return json.dumps(plan_to_data(book), indent=indent, ensure_ascii=False)


# -- TOML -----------------------------------------------------------------------------------


def parse_plan_toml(text: str, source: str = "plan") -> PlanBook:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(source, [("(syntax)", str(exc))]) from None
    except RecursionError:
        raise PlanError(source, [("(syntax)", TOO_DEEP)]) from None
    return plan_from_data(data, source)


def load_plan(path: Path) -> PlanBook:
    """Read a TOML plan file (``.json`` files are read as JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PlanError(str(path), [("(file)", message)]) from None
    if path.suffix.lower() == ".json":
        return parse_plan_json(text, str(path))
    return parse_plan_toml(text, str(path))


def plan_to_toml(book: PlanBook) -> str:
    """``[[skus]]``, ``[[production]]``, ``[[demand]]`` and ``[[receipts]]`` tables (tomllib
    reads it back)."""
    lines = ["# Flightdeck plan book (times in UTC)"]
    for section, rows in plan_to_data(book).items():
        for row in rows:
            lines += ["", f"[[{section}]]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in row.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        # A JSON string is a TOML basic string when no surrogate escape can occur.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return repr(value)  # finite by validation; repr is exact and TOML syntax
    raise TypeError(f"no TOML form for {type(value).__name__}")

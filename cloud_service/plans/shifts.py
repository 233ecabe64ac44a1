"""The compact, recurring form of production targets: a shift pattern over some days.

A planner does not write 63 ``[[production]]`` tables for three shifts over three weeks::

    [[shifts]]
    site = "plant-1"
    line = "L1"
    quantity = 1200            # per shift
    from = 2025-06-02          # first day, in the plan's timezone
    days = 21
    weekdays = ["mon", "tue", "wed", "thu", "fri"]   # optional: skip the weekend
    times = ["06:00-14:00", "14:00-22:00", "22:00-06:00"]   # an end <= start ends next day

Expansion uses wall-clock times in the plan's timezone, so a shift keeps its hours across a
daylight-saving change (and lasts 7 or 9 hours that night).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Final

from cloud_service.plans.errors import PlanError
from cloud_service.plans.model import ProductionTarget
from cloud_service.plans.times import to_ms

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KEYS: Final = frozenset(
    {"site", "line", "quantity", "sku", "period", "from", "days", "weekdays", "times"}
)
MAX_DAYS: Final = 400
MAX_SHIFTS_A_DAY: Final = 48

_Problems = list[tuple[str, str]]


def expand_shifts(item: Mapping[str, Any], tz: tzinfo) -> list[ProductionTarget]:
    """The production targets of one ``[[shifts]]`` table; :class:`PlanError` by field."""
    problems: _Problems = [(k, "unknown field") for k in item if k not in KEYS]
    problems += [(k, "required") for k in ("site", "line", "quantity", "from", "times")
                 if item.get(k) is None]  # fmt: skip
    first = _first_day(item.get("from"), problems)
    days = item.get("days", 1)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        problems.append(("days", f"must be an integer from 1 to {MAX_DAYS}"))
    weekdays = _weekdays(item.get("weekdays", list(WEEKDAYS)), problems)
    spans = _spans(item.get("times"), problems)
    if not problems:
        assert first is not None
        overnight = any(end <= begin for begin, end in spans)
        if (date.max - first).days < days - 1 + overnight:  # no day past the calendar's end
            problems.append(("from", f"{days} day(s) of these shifts run past {date.max}"))
    if problems:
        raise PlanError("shifts", problems)
    assert first is not None
    targets: list[ProductionTarget] = []
    for n in range(days):
        day = first + timedelta(days=n)
        if day.weekday() not in weekdays:
            continue
        for begin, end in spans:
            end_day = day + timedelta(days=1) if end <= begin else day
            target = ProductionTarget(
                site=item["site"], line=item["line"],
                start_ms=to_ms(datetime.combine(day, begin, tz)),
                end_ms=to_ms(datetime.combine(end_day, end, tz)),
                quantity=item["quantity"], sku=item.get("sku"), period=item.get("period", "shift"),
            )  # fmt: skip
            targets.append(target)
    return targets


def _first_day(value: object, problems: _Problems) -> date | None:
    if isinstance(value, datetime):
        problems.append(("from", "a date (2025-06-02), not a date and time"))
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    if value is not None:
        problems.append(("from", f"not a date (2025-06-02): {value!r}"))
    return None


def _weekdays(value: object, problems: _Problems) -> set[int]:
    if not isinstance(value, list) or not value:
        problems.append(("weekdays", f"a non-empty list of {', '.join(WEEKDAYS)}"))
        return set()
    found = set()
    for i, name in enumerate(value):
        if isinstance(name, str) and name.lower()[:3] in WEEKDAYS:
            found.add(WEEKDAYS.index(name.lower()[:3]))
        else:
            problems.append((f"weekdays[{i}]", f"not a weekday: {name!r}"))
    return found


def _spans(value: object, problems: _Problems) -> list[tuple[time, time]]:
    if value is None:
        return []
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SHIFTS_A_DAY:
        problems.append(("times", f'a list of 1-{MAX_SHIFTS_A_DAY} "HH:MM-HH:MM"'))
        return []
    spans = []
    for i, text in enumerate(value):
        try:
            begin, end = str(text).split("-")
            spans.append((time.fromisoformat(begin.strip()), time.fromisoformat(end.strip())))
        except ValueError:
            problems.append((f"times[{i}]", f'not "HH:MM-HH:MM": {text!r}'))
    return spans

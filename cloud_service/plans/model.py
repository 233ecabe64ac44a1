"""The plan book: SKU replenishment policies, production and demand targets, and scheduled
receipts (open purchase orders, transfers in transit): pure values.

Analytics and alert rules ask it, per reading, "what is this SKU's safety stock?", "what
should this line be making now?", "how much demand was planned since the last reading?", for
thousands of SKUs. So a book validates once and indexes once when built: a policy is one
dict lookup, a target a bisection in the periods of its (site, line) or (site, sku), the
receipts still to come a bisection in the due times of their (site, sku, location).

Location rule (policies, demand and receipts alike): a query for a location uses that location's
entries when there are any, else the site-wide entries (``location=None``); a query without
a location uses the site-wide entries only.
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from cloud_service.plans.errors import PlanError
from shared.ids import is_valid_id

MAX_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last ISO-8601 instant
MAX_REFERENCE: Final = 256  # characters of a receipt's reference (PO number, transfer id)

_Problems = list[tuple[str, str]]
_T = TypeVar("_T", "ProductionTarget", "DemandTarget")


def _ids(problems: _Problems, **values: str | None) -> None:
    for name, value in values.items():
        if value is not None and not is_valid_id(value):
            problems.append(
                (name, f"invalid id {value!r}: 1-64 of A-Z a-z 0-9 _ . : - starting alnum")
            )


def _non_negative(problems: _Problems, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append((name, f"must be a number, not {type(value).__name__}"))
        elif not math.isfinite(value) or value < 0:
            problems.append((name, f"must be finite and >= 0, got {value!r}"))


def _period(problems: _Problems, start_ms: int, end_ms: int) -> None:
    before = len(problems)
    _instant(problems, "start_ms", start_ms)
    _instant(problems, "end_ms", end_ms)
    if len(problems) == before and end_ms <= start_ms:
        problems.append(("end_ms", f"must be after start_ms ({start_ms}), got {end_ms}"))


def _instant(problems: _Problems, name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append((name, f"must be an integer epoch ms, not {type(value).__name__}"))
    elif not 0 <= value <= MAX_MS:
        problems.append((name, f"must be between 0 (1970) and {MAX_MS} (9999), got {value}"))


def _raise(kind: str, problems: _Problems) -> None:
    if problems:
        raise PlanError(kind, problems)


def _as_floats(obj: object, *names: str) -> None:
    """Store validated numbers as floats, so ``1`` from JSON and ``1.0`` read back agree."""
    for name in names:
        object.__setattr__(obj, name, float(getattr(obj, name)))


@dataclass(frozen=True, slots=True)
class SkuPolicy:
    """Replenishment parameters of one SKU at one site (location optional)."""

    site: str
    sku: str
    location: str | None = None
    lead_time_h: float = 0.0
    safety_stock: float = 0.0
    service_level: float = 0.95
    review_h: float = 0.0

    def __post_init__(self) -> None:
        problems: _Problems = []
        _ids(problems, site=self.site, sku=self.sku, location=self.location)
        _non_negative(
            problems,
            lead_time_h=self.lead_time_h,
            safety_stock=self.safety_stock,
            review_h=self.review_h,
        )
        level = self.service_level
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
            problems.append(("service_level", f"must be between 0 and 1 (exclusive), got {level}"))
        _raise("sku policy", problems)
        _as_floats(self, "lead_time_h", "safety_stock", "service_level", "review_h")


@dataclass(frozen=True, slots=True)
class ProductionTarget:
    """A line should make ``quantity`` (of ``sku``, or of anything when None) in [start, end)."""

    site: str
    line: str
    start_ms: int
    end_ms: int
    quantity: float
    sku: str | None = None
    period: str = "shift"

    def __post_init__(self) -> None:
        problems: _Problems = []
        _ids(problems, site=self.site, line=self.line, sku=self.sku, period=self.period)
        _period(problems, self.start_ms, self.end_ms)
        _non_negative(problems, quantity=self.quantity)
        _raise("production target", problems)
        _as_floats(self, "quantity")


@dataclass(frozen=True, slots=True)
class DemandTarget:
    """Planned demand (consumption) of a SKU in [start, end)."""

    site: str
    sku: str
    start_ms: int
    end_ms: int
    quantity: float
    location: str | None = None

    def __post_init__(self) -> None:
        problems: _Problems = []
        _ids(problems, site=self.site, sku=self.sku, location=self.location)
        _period(problems, self.start_ms, self.end_ms)
        _non_negative(problems, quantity=self.quantity)
        _raise("demand target", problems)
        _as_floats(self, "quantity")


@dataclass(frozen=True, slots=True)
class ScheduledReceipt:
    """Stock expected to arrive: an open purchase order or a transfer in transit, due at
    ``due_ms``. ``reference`` (PO number, transfer id) is free text, may be empty."""

    site: str
    sku: str
    due_ms: int
    quantity: float
    location: str | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        problems: _Problems = []
        _ids(problems, site=self.site, sku=self.sku, location=self.location)
        _instant(problems, "due_ms", self.due_ms)
        q = self.quantity
        if isinstance(q, bool) or not isinstance(q, int | float):
            problems.append(("quantity", f"must be a number, not {type(q).__name__}"))
        elif not math.isfinite(q) or q <= 0:
            problems.append(("quantity", f"must be finite and > 0, got {q!r}"))
        _reference(problems, self.reference)
        _raise("scheduled receipt", problems)
        _as_floats(self, "quantity")


def _reference(problems: _Problems, value: object) -> None:
    if not isinstance(value, str):
        problems.append(("reference", f"must be a string, not {type(value).__name__}"))
    elif len(value) > MAX_REFERENCE:
        problems.append(("reference", f"at most {MAX_REFERENCE} characters, got {len(value)}"))
    elif any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        # Control characters and lone surrogates: no TOML string, UTF-8 or SQL text holds them.
        problems.append(("reference", "no control characters or lone surrogates"))


class _Receipts:
    """The receipts of one (site, sku, location) sorted by due time (ties in book order)."""

    __slots__ = ("dues", "receipts")

    def __init__(self, receipts: Iterable[ScheduledReceipt]) -> None:
        self.receipts = sorted(receipts, key=lambda r: r.due_ms)
        self.dues = [r.due_ms for r in self.receipts]

    def after(self, after_ms: int | None) -> list[ScheduledReceipt]:
        if after_ms is None:
            return list(self.receipts)
        return self.receipts[bisect_right(self.dues, after_ms) :]


class _Timeline:
    """Periods of one key sorted by start, with running max of ends (overlaps allowed)."""

    __slots__ = ("ends", "max_end", "prefix", "starts", "targets")

    def __init__(self, targets: Iterable[ProductionTarget | DemandTarget]) -> None:
        self.targets = sorted(targets, key=lambda t: (t.start_ms, t.end_ms))
        self.starts = [t.start_ms for t in self.targets]
        self.ends = [t.end_ms for t in self.targets]  # sorted too when periods do not overlap
        self.max_end: list[int] = []
        self.prefix = [0.0]
        for t in self.targets:
            self.max_end.append(max(self.max_end[-1], t.end_ms) if self.max_end else t.end_ms)
            self.prefix.append(self.prefix[-1] + t.quantity)

    def containing(self, now_ms: int) -> list[ProductionTarget | DemandTarget]:
        found = []
        j = bisect_right(self.starts, now_ms) - 1
        while j >= 0 and self.max_end[j] > now_ms:
            if self.targets[j].end_ms > now_ms:
                found.append(self.targets[j])
            j -= 1
        found.reverse()
        return found

    def pro_rata(self, start_ms: int, end_ms: int) -> float:
        """Planned quantity in [start, end), each period spread evenly (no overlaps here)."""
        if end_ms <= start_ms:
            return 0.0
        first = bisect_right(self.ends, start_ms)  # first period ending after start
        stop = bisect_left(self.starts, end_ms)  # first period starting at or after end
        if first >= stop:
            return 0.0
        total = self.prefix[stop] - self.prefix[first]
        head, tail = self.targets[first], self.targets[stop - 1]
        if head.start_ms < start_ms:
            total -= head.quantity * (start_ms - head.start_ms) / (head.end_ms - head.start_ms)
        if tail.end_ms > end_ms:
            total -= tail.quantity * (tail.end_ms - end_ms) / (tail.end_ms - tail.start_ms)
        return max(total, 0.0)


class _Index:
    __slots__ = ("demand", "policies", "production", "receipts")

    def __init__(self, book: PlanBook) -> None:
        problems: _Problems = []
        self.policies: dict[tuple[str, str, str | None], SkuPolicy] = {}
        where: dict[tuple[str, str, str | None], int] = {}
        for i, policy in enumerate(book.skus):
            key = (policy.site, policy.sku, policy.location)
            if key in where:
                problems.append((f"skus[{i}]", f"duplicate of skus[{where[key]}] {key}"))
            where[key] = i
            self.policies[key] = policy
        production: defaultdict[tuple[str, str], list[ProductionTarget]] = defaultdict(list)
        for target in book.production:
            production[(target.site, target.line)].append(target)
        self.production = {key: _Timeline(items) for key, items in production.items()}
        demand: defaultdict[tuple[str, str, str | None], list[DemandTarget]] = defaultdict(list)
        for demand_target in book.demand:
            demand[(demand_target.site, demand_target.sku, demand_target.location)].append(
                demand_target
            )
        self.demand = {key: _Timeline(items) for key, items in demand.items()}
        receipts: defaultdict[tuple[str, str, str | None], list[ScheduledReceipt]] = defaultdict(
            list
        )
        referenced: dict[tuple[str, str, str | None, str], int] = {}
        for i, receipt in enumerate(book.receipts):
            receipts[(receipt.site, receipt.sku, receipt.location)].append(receipt)
            if receipt.reference:  # one order counted twice would hide a real stockout
                ref = (receipt.site, receipt.sku, receipt.location, receipt.reference)
                if ref in referenced:
                    problems.append(
                        (f"receipts[{i}]", f"duplicate of receipts[{referenced[ref]}] {ref}")
                    )
                else:
                    referenced[ref] = i
        self.receipts = {key: _Receipts(items) for key, items in receipts.items()}
        # Overlaps would count one quantity twice: refuse them per (line, sku) and per SKU.
        _overlaps(problems, "production", book.production, lambda t: (t.site, t.line, t.sku))
        _overlaps(problems, "demand", book.demand, lambda t: (t.site, t.sku, t.location))
        _raise("plan book", problems)


def _overlaps(
    problems: _Problems,
    name: str,
    items: Sequence[_T],
    key: Callable[[_T], tuple[str | None, ...]],
) -> None:
    groups: defaultdict[tuple[str | None, ...], list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[key(item)].append(i)
    for indices in groups.values():
        indices.sort(key=lambda i: items[i].start_ms)
        for a, b in itertools.pairwise(indices):
            if items[b].start_ms < items[a].end_ms:
                problems.append((f"{name}[{b}].start_ms", f"overlaps {name}[{a}]"))


_PARTS: Final = (
    ("skus", SkuPolicy),
    ("production", ProductionTarget),
    ("demand", DemandTarget),
    ("receipts", ScheduledReceipt),
)


@dataclass(frozen=True, slots=True)
class PlanBook:
    """The whole plan: validated and indexed once when built, then read concurrently."""

    skus: tuple[SkuPolicy, ...] = ()
    production: tuple[ProductionTarget, ...] = ()
    demand: tuple[DemandTarget, ...] = ()
    receipts: tuple[ScheduledReceipt, ...] = ()
    _index: _Index = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        problems: _Problems = []
        for name, cls in _PARTS:
            value = tuple(getattr(self, name))
            object.__setattr__(self, name, value)
            problems += [
                (f"{name}[{i}]", f"must be a {cls.__name__}, not {type(item).__name__}")
                for i, item in enumerate(value)
                if not isinstance(item, cls)
            ]
        _raise("plan book", problems)
        object.__setattr__(self, "_index", _Index(self))

    def policy(self, site: str, sku: str, location: str | None = None) -> SkuPolicy | None:
        """The policy of ``sku`` at ``location`` if there is one, else its site-wide policy."""
        policies = self._index.policies
        if location is not None and (found := policies.get((site, sku, location))):
            return found
        return policies.get((site, sku, None))

    def production_at(self, site: str, line: str, now_ms: int) -> list[ProductionTarget]:
        """The targets of ``line`` whose period contains ``now_ms`` (start <= now < end)."""
        timeline = self._index.production.get((site, line))
        if timeline is None:
            return []
        return [t for t in timeline.containing(now_ms) if isinstance(t, ProductionTarget)]

    def demand_at(
        self, site: str, sku: str, now_ms: int, location: str | None = None
    ) -> DemandTarget | None:
        """The demand period of ``sku`` containing ``now_ms``, if any."""
        timeline = self._demand(site, sku, location)
        if timeline is None:
            return None
        found = timeline.containing(now_ms)
        return found[0] if found and isinstance(found[0], DemandTarget) else None

    def demand_between(
        self, site: str, sku: str, start_ms: int, end_ms: int, location: str | None = None
    ) -> float:
        """Planned demand in [start, end): each period's quantity spread evenly over it."""
        timeline = self._demand(site, sku, location)
        return 0.0 if timeline is None else timeline.pro_rata(start_ms, end_ms)

    def _demand(self, site: str, sku: str, location: str | None) -> _Timeline | None:
        demand = self._index.demand
        if location is not None and (found := demand.get((site, sku, location))):
            return found
        return demand.get((site, sku, None))

    def receipts_for(
        self, site: str, sku: str, location: str | None = None, *, after_ms: int | None = None
    ) -> list[ScheduledReceipt]:
        """Scheduled receipts of ``sku`` at ``location`` (its own if it has any, else the
        site-wide ones), sorted by due time; with ``after_ms``, only those due after it."""
        receipts = self._index.receipts
        found = None
        if location is not None:
            found = receipts.get((site, sku, location))
        if found is None:
            found = receipts.get((site, sku, None))
        return [] if found is None else found.after(after_ms)

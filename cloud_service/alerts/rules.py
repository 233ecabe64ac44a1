"""Rule definitions (pydantic, loaded from TOML for a first start) and their pure evaluation.

A rule names a built-in type (what it looks at), conditions on that type's metrics combined
with ``match = "any"`` (OR) or ``"all"`` (AND), durations ("for 10 minutes" before raising,
``clear_for`` before clearing), a severity and a scope (sites, gateways, SKUs, lines,
locations, signals; empty means all). :func:`evaluate` turns a ``ConditionInputs`` snapshot
into one ``ConditionState`` per rule and subject, true or false, with figures and words.

```toml
[[rules]]
id = "stockout"
type = "stockout_risk"
severity = "critical"
for = "10 minutes"
scope = { sites = ["plant-1"] }
when = [{ metric = "margin_p10_h", op = "<", value = 0, deadband = 2 }]
```
"""

from __future__ import annotations

import math
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from cloud_service.alerts.errors import RuleError
from cloud_service.alerts.explain import DEFAULT_CONDITIONS, METRICS, Candidate, candidates
from cloud_service.alerts.inputs import ConditionInputs
from cloud_service.alerts.records import AlertKey, ConditionState, RuleType
from shared.ids import check_id
from shared.messages import Severity

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86_400.0}
_UNIT_NAMES: Final = {
    "sec": "s", "secs": "s", "second": "s", "seconds": "s", "mins": "min", "minute": "min",
    "minutes": "min", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "day": "d", "days": "d",
}  # fmt: skip
_PART: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10 minutes"``, ``"1h30m"``, ``"2 days"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like '10 minutes'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text, pos, seconds = value.strip().lower(), 0, 0.0
        while pos < len(text):
            m = _PART.match(text, pos)
            unit = _UNIT_NAMES.get(m.group(2), m.group(2)) if m else ""
            if m is None or unit not in _UNITS:
                raise ValueError(f"not a duration: {value!r} (try '90s', '10 minutes', '1h30m')")
            seconds += float(m.group(1)) * _UNITS[unit]
            pos = m.end()
        if not text:
            raise ValueError("empty duration")
    else:
        raise ValueError("a duration is a number of seconds or text like '10 minutes'")
    if not (math.isfinite(seconds) and 0 <= seconds <= 366 * 86_400):
        raise ValueError("durations are between 0 and 366 days")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
_Ids = frozenset[str]
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Model):
    """``metric op value``; an active alert stays active until the value is ``deadband``
    past the threshold on the good side (hysteresis against flapping)."""

    metric: str
    op: Literal["<", "<=", ">", ">="]
    value: float = Field(allow_inf_nan=False)
    deadband: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    def check(self, metrics: dict[str, float | None]) -> tuple[bool, bool, float | None]:
        """(raise holds, hold holds, the value) for these metrics."""
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(v):
            return False, False, None
        relaxed = (
            self.value + self.deadband if self.op in ("<", "<=") else self.value - self.deadband
        )
        test = _OPS[self.op]
        return test(v, self.value), test(v, relaxed), v


class Scope(_Model):
    sites: _Ids = frozenset()
    gateways: _Ids = frozenset()
    skus: _Ids = frozenset()
    lines: _Ids = frozenset()
    locations: _Ids = frozenset()
    signals: _Ids = frozenset()

    @field_validator("*")
    @classmethod
    def _ids(cls, value: _Ids) -> _Ids:
        return frozenset(check_id(v, "scope") for v in value)

    def covers(self, c: Candidate) -> bool:
        if self.sites and c.site not in self.sites:
            return False
        for field, wanted in (("gateway", self.gateways), ("sku", self.skus),
                              ("line", self.lines), ("location", self.locations),
                              ("signal", self.signals)):  # fmt: skip
            if wanted and c.scope.get(field) not in wanted:
                return False
        return True


class Rule(_Model):
    id: str
    type: RuleType
    severity: Severity = Severity.WARNING
    match: Literal["any", "all"] = "any"  # OR / AND of the conditions
    on_delay_s: Duration = Field(default=0.0, alias="for")
    off_delay_s: Duration = Field(default=0.0, alias="clear_for")
    when: tuple[Condition, ...] = ()  # empty: the type's default conditions
    scope: Scope = Scope()
    ack_required: bool = True
    enabled: bool = True
    description: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_id(value, "rule")

    @model_validator(mode="after")
    def _metrics(self) -> Rule:
        known = METRICS[self.type]
        for c in self.when:
            if c.metric not in known:
                raise ValueError(
                    f"{self.type.value} has no metric {c.metric!r}; it has {sorted(known)}"
                )
        return self

    def conditions(self) -> tuple[Condition, ...]:
        if self.when:
            return self.when
        return tuple(
            Condition(metric=m, op=op, value=v, deadband=d)  # type: ignore[arg-type]
            for m, op, v, d in DEFAULT_CONDITIONS[self.type]
        )


class _RuleFile(_Model):
    rules: list[Rule] = []


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Rules from TOML text (``[[rules]]`` tables); :class:`RuleError` lists every problem."""
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(source, [("(syntax)", str(exc))]) from None
    except RecursionError:  # arrays or tables nested deeper than the parser can go
        raise RuleError(source, [("(syntax)", "nested too deeply")]) from None
    return rules_from_data(data, source)


def rules_from_data(data: object, source: str) -> list[Rule]:
    """Rules from decoded data (TOML, or rows of the metadata store turned into dicts)."""
    try:
        rules = TypeAdapter(_RuleFile).validate_python(data).rules
    except ValidationError as exc:
        problems = [(".".join(map(str, e["loc"])) or "(root)", e["msg"]) for e in exc.errors()]
        raise RuleError(source, problems) from None
    seen: set[str] = set()
    for i, r in enumerate(rules):
        if r.id in seen:
            raise RuleError(source, [(f"rules.{i}.id", f"duplicate rule id {r.id!r}")])
        seen.add(r.id)
    return rules


DEFAULT_RULES: Final = Path(__file__).with_name("default_rules.toml")


def load_rules(path: Path = DEFAULT_RULES) -> list[Rule]:
    """Rules from a TOML file; without one, the rules a new installation starts with."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(str(path), [("(file)", exc.strerror or str(exc))]) from None
    return parse_rules(text, str(path))


def evaluate(rules: Sequence[Rule], inputs: ConditionInputs) -> list[ConditionState]:
    """Every enabled rule on every subject in its scope: one state each, true or false."""
    out: list[ConditionState] = []
    for rule in rules:
        if rule.enabled:
            conds = rule.conditions()
            out.extend(
                _state(rule, conds, c)
                for c in candidates(rule.type, inputs)
                if rule.scope.covers(c)
            )
    return out


def orphaned(
    rules: Sequence[Rule],
    inputs: ConditionInputs,
    tracked: Mapping[AlertKey, RuleType],
    evaluated: Iterable[AlertKey] = (),
) -> dict[AlertKey, str]:
    """Tracked keys no rule of ``rules`` evaluates any more, each with the reason.

    Its rule is gone (removed or renamed), disabled or of another type now, or the subject is
    in ``inputs`` but outside the rule's scope. A subject missing from ``inputs`` altogether
    is not judged (the shell may observe only some subjects). ``evaluated``: the keys of
    :func:`evaluate` on the same arguments, which are not orphans.
    """
    by_id = {r.id: r for r in rules}
    done = set(evaluated)
    out: dict[AlertKey, str] = {}
    unseen: dict[str, list[AlertKey]] = {}
    for key, rule_type in tracked.items():
        rule = by_id.get(key.rule)
        if rule is None:
            out[key] = f"rule {key.rule!r} no longer exists"
        elif not rule.enabled:
            out[key] = f"rule {key.rule!r} is disabled"
        elif rule.type != rule_type:
            out[key] = f"rule {key.rule!r} is now of type {rule.type.value}"
        elif key not in done:
            unseen.setdefault(rule.id, []).append(key)
    for rule_id, keys in unseen.items():
        rule = by_id[rule_id]
        present = {(c.site, c.subject): c for c in candidates(rule.type, inputs)}
        for key in keys:
            c = present.get((key.site, key.subject))
            if c is not None and not rule.scope.covers(c):
                out[key] = f"{key.subject} at {key.site} is out of the scope of rule {rule.id!r}"
    return out


def _state(rule: Rule, conds: Iterable[Condition], c: Candidate) -> ConditionState:
    checks = [(cond, *cond.check(c.metrics)) for cond in conds]
    combine = any if rule.match == "any" else all
    raise_met = combine(r for _, r, _, _ in checks)
    hold_met = raise_met or combine(h for _, _, h, _ in checks)
    title, message, action = c.words()
    reason = ("; " if rule.match == "any" else " and ").join(
        f"{cond.metric} = {_num(v)} ({cond.op} {cond.value:g}: {'yes' if r else 'no'})"
        for cond, r, _, v in checks
    )
    figures = {k: v for k, v in c.metrics.items() if v is not None and math.isfinite(v)}
    return ConditionState(
        key=AlertKey(rule.id, c.site, c.subject),
        rule_type=rule.type,
        raise_met=raise_met,
        hold_met=hold_met,
        severity=rule.severity,
        title=title,
        message=message,
        action=action,
        figures=figures,
        reason=reason,
        gateway=c.gateway,
        on_delay_ms=int(rule.on_delay_s * 1000),
        off_delay_ms=int(rule.off_delay_s * 1000),
        ack_required=rule.ack_required,
    )


def _num(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.4g}"

"""Alert rules in the metadata store: seeded once from TOML, then replaced whole, with history.

The TOML file (``[alerts] rules_file``, else ``default_rules.toml``) is only the first start's
rules: :meth:`SqlRuleStore.seed_if_empty` stores them when the store has never held rules, and
from then on the store is the truth (changed through the API or ``cloud-service rules import``).
A rule set changes as a unit, in one transaction that also appends who changed it, when, and
the rules before and after to ``alert_rule_changes``. Rows are validated again when loaded, so
a row edited by hand into something invalid is a :class:`RuleError` naming the field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import delete, desc, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloud_service.alerts.errors import RuleError
from cloud_service.alerts.records import iso
from cloud_service.alerts.rules import Rule, rules_from_data
from cloud_service.metadata.guard import guard
from cloud_service.metadata.schema import alert_rule_changes, alert_rules

SOURCE: Final = "metadata store"
SEED_ACTOR: Final = "seed"
#: Serialises rule changes on PostgreSQL ("fdru"); SQLite serialises on its write lock.
_RULES_LOCK: Final = 0x66647275

JsonRule = dict[str, Any]


def rule_to_data(rule: Rule) -> JsonRule:
    """The rule as JSON data (TOML keys: ``for``, ``clear_for``), scope ids sorted."""
    data = rule.model_dump(mode="json", by_alias=True)
    data["scope"] = {k: sorted(v) for k, v in data["scope"].items()}
    return data


def rules_to_toml(rules: Sequence[Rule]) -> str:
    """A rule file (``[[rules]]`` tables, defaults left out) that :func:`parse_rules` reads."""
    lines = ["# Flightdeck alert rules (docs/alerts.md); durations in seconds"]
    for rule in rules:
        data = rule.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        head = {"id": rule.id, "type": rule.type.value, "severity": rule.severity.value}
        if "scope" in data:
            data["scope"] = {k: sorted(v) for k, v in data["scope"].items() if v}
        lines += ["", "[[rules]]"]
        for key, value in (head | data).items():
            if key == "when" and len(value) > 1:
                items = "".join(f"\n  {_toml_value(v)}," for v in value)
                lines.append(f"when = [{items}\n]")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string is a TOML basic string, but for DEL (TOML wants it escaped too).
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One row of the history: the rule set before and after, as JSON data."""

    id: int
    at_ms: int
    actor: str
    before: list[JsonRule]
    after: list[JsonRule]

    @property
    def added(self) -> list[str]:
        old = {r["id"] for r in self.before}
        return [r["id"] for r in self.after if r["id"] not in old]

    @property
    def removed(self) -> list[str]:
        new = {r["id"] for r in self.after}
        return [r["id"] for r in self.before if r["id"] not in new]

    @property
    def changed(self) -> list[str]:
        old = {r["id"]: r for r in self.before}
        return [r["id"] for r in self.after if r["id"] in old and old[r["id"]] != r]

    @property
    def reordered(self) -> bool:
        new = {r["id"] for r in self.after}
        old = {r["id"] for r in self.before}
        return [r["id"] for r in self.before if r["id"] in new] != [
            r["id"] for r in self.after if r["id"] in old
        ]

    def as_json(self) -> dict[str, Any]:
        """As the API serves it: the ids added, removed and changed, and both sets."""
        return {
            "id": self.id,
            "at": iso(self.at_ms),
            "actor": self.actor,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "reordered": self.reordered,
            "before": self.before,
            "after": self.after,
        }


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SqlRuleStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], int] = _wall_ms) -> None:
        self.engine = engine
        self.clock = clock
        self._backend = engine.dialect.name

    async def load(self) -> list[Rule]:
        """The stored rules in order ([] before the first seed); a bad row: :class:`RuleError`."""
        with guard("rule load", self._backend):
            async with self.engine.connect() as conn:
                bodies = await _bodies(conn)
        return _validate(bodies)

    async def replace(self, rules: Sequence[Rule], *, actor: str) -> None:
        """Make ``rules`` the stored set, atomically, and record the change as ``actor``."""
        after = [rule_to_data(r) for r in _unique(rules)]
        with guard("rule replace", self._backend):
            async with self.engine.begin() as conn:
                await self._lock(conn)
                await self._write(conn, after, actor)

    async def seed_if_empty(self, rules: Sequence[Rule], *, actor: str = SEED_ACTOR) -> list[Rule]:
        """First start: store ``rules`` unless the store has ever held rules; the stored set.

        "Ever": a history row counts, so rules an operator deleted are not brought back by
        the next start. Two workers seeding at once: one stores, the other loads its rules.
        """
        after = [rule_to_data(r) for r in _unique(rules)]
        try:
            with guard("rule seed", self._backend):
                async with self.engine.begin() as conn:
                    await self._lock(conn)
                    changes = await conn.scalar(select(alert_rule_changes.c.id).limit(1))
                    stored = await conn.scalar(select(alert_rules.c.id).limit(1))
                    if after and changes is None and stored is None:
                        await self._write(conn, after, actor)
        except IntegrityError:  # a worker without our lock (or an older one) stored them first
            pass
        return await self.load()

    async def history(self, limit: int = 100) -> list[RuleChange]:
        """The latest changes, newest first."""
        with guard("rule history", self._backend):
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    select(alert_rule_changes).order_by(desc(alert_rule_changes.c.id)).limit(limit)
                )
                return [
                    RuleChange(r.id, r.at_ms, r.actor, json.loads(r.before), json.loads(r.after))
                    for r in rows
                ]

    async def _lock(self, conn: AsyncConnection) -> None:
        """Serialise rule changes: the history's ``before`` is what the change replaced."""
        if self._backend == "postgresql":
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_RULES_LOCK})"))
        else:  # SQLite: a write as the first statement takes the write lock before any read
            await conn.execute(update(alert_rules).where(alert_rules.c.id == "").values(body=""))

    async def _write(self, conn: AsyncConnection, after: list[JsonRule], actor: str) -> None:
        now = self.clock()
        rows = (await conn.execute(select(alert_rules).order_by(alert_rules.c.position))).all()
        before = [json.loads(r.body) for r in rows]
        old = {r.id: r for r in rows}
        new_rows: list[dict[str, Any]] = []
        for position, data in enumerate(after):
            row = {"id": data["id"], "position": position, "updated_ms": now, "updated_by": actor,
                   "body": json.dumps(data, sort_keys=True)}  # fmt: skip
            prev = old.get(data["id"])
            if prev is not None and json.loads(prev.body) == data:  # unchanged: keep who and when
                row |= {"updated_ms": prev.updated_ms, "updated_by": prev.updated_by}
            new_rows.append(row)
        await conn.execute(delete(alert_rules))
        if new_rows:
            await conn.execute(insert(alert_rules), new_rows)
        await conn.execute(
            insert(alert_rule_changes).values(
                at_ms=now,
                actor=actor,
                before=json.dumps(before),
                after=json.dumps(after),
            )
        )


async def _bodies(conn: AsyncConnection) -> list[tuple[str, str]]:
    result = await conn.execute(
        select(alert_rules.c.id, alert_rules.c.body).order_by(alert_rules.c.position)
    )
    return [(r.id, r.body) for r in result]


def _validate(bodies: list[tuple[str, str]]) -> list[Rule]:
    data: list[object] = []
    for i, (rule_id, body) in enumerate(bodies):
        try:
            data.append(json.loads(body))
        except ValueError as exc:
            raise RuleError(
                SOURCE, [(f"rules.{i}", f"row {rule_id!r}: not JSON ({exc})")]
            ) from None
    rules = rules_from_data({"rules": data}, SOURCE)
    for i, ((rule_id, _), rule) in enumerate(zip(bodies, rules, strict=True)):
        if rule.id != rule_id:
            raise RuleError(SOURCE, [(f"rules.{i}.id", f"{rule.id!r} stored as {rule_id!r}")])
    return rules


def _unique(rules: Sequence[Rule]) -> Sequence[Rule]:
    """The same check as a rule file's: one rule per id."""
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.id in seen:
            raise RuleError("rules to store", [(f"rules.{i}.id", f"duplicate rule id {rule.id!r}")])
        seen.add(rule.id)
    return rules

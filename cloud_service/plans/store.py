"""The plan book in the metadata store: replaced whole, in one transaction, and loaded whole.

A plan changes as a unit (a planner publishes a new version): readers see the old book or
the new one, never half of each. Thousands of rows go in as executemany batches.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_service.metadata.guard import guard
from cloud_service.metadata.schema import plan_demand, plan_production, plan_receipts, plan_skus
from cloud_service.plans.model import (
    DemandTarget,
    PlanBook,
    ProductionTarget,
    ScheduledReceipt,
    SkuPolicy,
)

_COLUMNS = {
    plan_skus: ("site", "sku", "location", "lead_time_h", "safety_stock", "service_level",
                "review_h"),
    plan_production: ("site", "line", "sku", "period", "start_ms", "end_ms", "quantity"),
    plan_demand: ("site", "sku", "location", "start_ms", "end_ms", "quantity"),
    plan_receipts: ("site", "sku", "location", "due_ms", "quantity", "reference"),
}  # fmt: skip


class SqlPlanStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._backend = engine.dialect.name

    async def replace(self, book: PlanBook) -> None:
        """Make ``book`` the stored plan, atomically."""
        parts: list[tuple[Any, tuple[Any, ...]]] = [
            (plan_skus, book.skus),
            (plan_production, book.production),
            (plan_demand, book.demand),
            (plan_receipts, book.receipts),
        ]
        with guard("plan replace", self._backend):
            async with self.engine.begin() as conn:
                for table, items in parts:
                    await conn.execute(delete(table))
                    rows = [_row(i, item, _COLUMNS[table]) for i, item in enumerate(items)]
                    if rows:
                        await conn.execute(insert(table), rows)

    async def load(self) -> PlanBook:
        """The stored plan (empty before the first :meth:`replace`)."""
        with guard("plan load", self._backend):
            async with self.engine.connect() as conn:
                skus = await conn.execute(select(plan_skus).order_by(plan_skus.c.position))
                production = await conn.execute(
                    select(plan_production).order_by(plan_production.c.position)
                )
                demand = await conn.execute(select(plan_demand).order_by(plan_demand.c.position))
                receipts = await conn.execute(
                    select(plan_receipts).order_by(plan_receipts.c.position)
                )
                return PlanBook(
                    skus=tuple(SkuPolicy(**_fields(r, plan_skus)) for r in skus),
                    production=tuple(
                        ProductionTarget(**_fields(r, plan_production)) for r in production
                    ),
                    demand=tuple(DemandTarget(**_fields(r, plan_demand)) for r in demand),
                    receipts=tuple(ScheduledReceipt(**_fields(r, plan_receipts)) for r in receipts),
                )


def _row(position: int, item: object, columns: tuple[str, ...]) -> dict[str, Any]:
    return {"position": position, **{c: getattr(item, c) for c in columns}}


def _fields(row: Any, table: Any) -> dict[str, Any]:
    mapping = row._mapping
    return {c: mapping[c] for c in _COLUMNS[table]}

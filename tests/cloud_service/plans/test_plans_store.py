"""The plan book in the metadata store, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from cloud_service.metadata import MetadataStore
from cloud_service.metadata.schema import plan_demand, plan_receipts
from cloud_service.plans import (
    DemandTarget,
    PlanBook,
    ProductionTarget,
    ScheduledReceipt,
    SkuPolicy,
)
from cloud_service.plans.store import SqlPlanStore

H = 3_600_000
T0 = 1_790_000_000_000


def a_book(n: int) -> PlanBook:
    return PlanBook(
        skus=tuple(SkuPolicy("p1", f"S{i}", "W1" if i % 2 else None, lead_time_h=i / 3,
                             safety_stock=0.1 * i, service_level=0.99, review_h=24)
                   for i in range(n)),
        production=(ProductionTarget("p1", "L1", T0, T0 + 8 * H, 1200.5),
                    ProductionTarget("p1", "L1", T0, T0 + 24 * H, 300, sku="S1", period="day")),
        demand=tuple(DemandTarget("p1", f"S{i}", T0, T0 + 24 * H, 7 * i, "W1" if i % 3 else None)
                     for i in range(n)),
        receipts=tuple(ScheduledReceipt("p1", f"S{i % 7}", T0 + (n - i) * H, 1 + i / 4,
                                        "W1" if i % 2 else None, f"PO-{i}" if i % 3 else "")
                       for i in range(n)),
    )  # fmt: skip


async def test_an_empty_store_has_an_empty_book(metadata: MetadataStore) -> None:
    assert await SqlPlanStore(metadata.engine).load() == PlanBook()


async def test_a_book_is_stored_and_loaded_unchanged_in_order(metadata: MetadataStore) -> None:
    store = SqlPlanStore(metadata.engine)
    book = a_book(2_000)
    await store.replace(book)
    loaded = await store.load()
    assert loaded == book
    assert loaded.policy("p1", "S7", "W1") == book.skus[7]
    assert loaded.demand_between("p1", "S2", T0, T0 + 12 * H, "W1") == 7.0
    assert loaded.receipts_for("p1", "S3", "W1") == book.receipts_for("p1", "S3", "W1")
    due = [r.due_ms for r in loaded.receipts_for("p1", "S3", "W1", after_ms=T0 + 1000 * H)]
    assert due == sorted(due)
    assert len(due) == len([r for r in book.receipts if r.sku == "S3" and r.location == "W1"
                            and r.due_ms > T0 + 1000 * H])  # fmt: skip
    assert due


async def test_a_receipt_reference_is_kept_as_written(metadata: MetadataStore) -> None:
    store = SqlPlanStore(metadata.engine)
    references = ("", "PO 4711 / Müller GmbH – 'Eilt'", "€" * 256, "x")
    book = PlanBook(
        receipts=tuple(ScheduledReceipt("p1", "A", T0 + i, 5, reference=text)
                       for i, text in enumerate(references)),
    )  # fmt: skip
    await store.replace(book)
    loaded = await store.load()
    assert loaded == book
    assert [r.reference for r in loaded.receipts] == list(references)


async def test_replace_swaps_the_whole_book(metadata: MetadataStore) -> None:
    store = SqlPlanStore(metadata.engine)
    await store.replace(a_book(50))
    smaller = a_book(3)
    await store.replace(smaller)
    assert await store.load() == smaller
    await store.replace(PlanBook())
    assert await store.load() == PlanBook()
    async with metadata.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(plan_demand)) == 0
        assert await conn.scalar(select(func.count()).select_from(plan_receipts)) == 0


async def test_readers_see_the_old_book_or_the_new_never_a_mix(metadata: MetadataStore) -> None:
    store = SqlPlanStore(metadata.engine)
    old, new = a_book(300), a_book(301)
    await store.replace(old)

    async def read_while_writing() -> set[int]:
        seen = set()
        for _ in range(15):
            seen.add(len((await store.load()).skus))
            await asyncio.sleep(0)
        return seen

    seen, _ = await asyncio.gather(read_while_writing(), store.replace(new))
    assert seen <= {300, 301}
    assert await store.load() == new

"""Which production line refills which stock, read from the plan.

A stock level that a line refills falls by consumption and rises by output: consumption can
only be recovered net of that output, and the projection must count the output planned ahead.
The plan says what a line makes; a line whose targets name exactly one SKU feeds that SKU's
stock at its site. A line making several SKUs on one counter cannot be split by SKU, so its
stocks are left as they are (and their consumption is underestimated while it produces: the
docs say so).
"""

from __future__ import annotations

from cloud_service.analytics.depletion import PlannedOutput
from cloud_service.plans.model import PlanBook


def single_product_lines(book: PlanBook) -> dict[tuple[str, str], str]:
    """``(site, line) -> sku`` for every line whose targets all name the same one SKU."""
    skus: dict[tuple[str, str], set[str | None]] = {}
    for t in book.production:
        skus.setdefault((t.site, t.line), set()).add(t.sku)
    return {key: next(iter(s)) for key, s in skus.items() if len(s) == 1 and None not in s}  # type: ignore[misc]


def planned_output(
    book: PlanBook, site: str, line: str, now_ms: int, sku: str | None = None
) -> list[PlannedOutput]:
    """The line's targets from now on (the running one pro rata for what is left of it);
    with ``sku``, only that SKU's (a line counted per SKU)."""
    out = []
    for t in book.production:
        if t.site != site or t.line != line or t.end_ms <= now_ms:
            continue
        if sku is not None and t.sku != sku:
            continue
        start = max(t.start_ms, now_ms)
        qty = t.quantity * (t.end_ms - start) / (t.end_ms - t.start_ms)
        if qty > 0:
            out.append(PlannedOutput(start, t.end_ms, qty))
    return out

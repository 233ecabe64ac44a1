"""The MES's production orders: released from the plan each scheduled day, worked in order.

Each line works its open orders first in, first out; an order is *released* when the plan puts
it on the line, *in_progress* from its first piece, *completed* when its good quantity is
reached. Unfinished orders carry over to the next day, which is how a stoppage shows up as a
plan deviation. Completed orders are kept for a bounded history so a long run does not grow
without limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from firmware_sim.core.calendar import iso_day


class OrderStatus(StrEnum):
    RELEASED = "released"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


@dataclass(slots=True)
class ProductionOrder:
    id: str
    line: str
    sku: str
    quantity: int
    day: str  # the plan day it was released for, YYYY-MM-DD
    released_ms: int
    started_ms: int | None = None
    completed_ms: int | None = None
    good: int = 0
    scrap: int = 0

    @property
    def status(self) -> OrderStatus:
        if self.completed_ms is not None:
            return OrderStatus.COMPLETED
        if self.started_ms is not None:
            return OrderStatus.IN_PROGRESS
        return OrderStatus.RELEASED

    @property
    def remaining(self) -> int:
        return max(0, self.quantity - self.good)


class OrderBook:
    def __init__(self, keep_completed: int = 500) -> None:
        self._open: dict[str, deque[ProductionOrder]] = {}
        self._done: dict[str, deque[ProductionOrder]] = {}
        self._by_id: dict[str, ProductionOrder] = {}
        self._keep = keep_completed
        self._last_day: dict[str, tuple[str, int]] = {}  # line -> (day, orders released that day)

    def release(self, t_ms: int, line: str, sku: str, quantity: int) -> ProductionOrder:
        day = iso_day(t_ms)
        last_day, count = self._last_day.get(line, ("", 0))
        n = count + 1 if last_day == day else 1
        self._last_day[line] = (day, n)
        order = ProductionOrder(
            id=f"PO-{line}-{day.replace('-', '')}-{n:02d}",
            line=line,
            sku=sku,
            quantity=quantity,
            day=day,
            released_ms=t_ms,
        )
        self._open.setdefault(line, deque()).append(order)
        self._by_id[order.id] = order
        return order

    def current(self, line: str) -> ProductionOrder | None:
        queue = self._open.get(line)
        return queue[0] if queue else None

    def record(self, order: ProductionOrder, t_ms: int, *, good: int, scrap: int) -> None:
        if order.started_ms is None:
            order.started_ms = t_ms
        order.good += good
        order.scrap += scrap

    def complete(self, order: ProductionOrder, t_ms: int) -> None:
        queue = self._open[order.line]
        queue.remove(order)
        order.completed_ms = t_ms
        done = self._done.setdefault(order.line, deque())
        done.append(order)
        if len(done) > self._keep:
            del self._by_id[done.popleft().id]

    def get(self, order_id: str) -> ProductionOrder | None:
        return self._by_id.get(order_id)

    def orders(
        self, *, line: str | None = None, status: OrderStatus | None = None
    ) -> list[ProductionOrder]:
        """Orders, oldest release first: every kept completed one, then the open ones."""
        lines = [line] if line is not None else sorted(set(self._open) | set(self._done))
        out = [
            o
            for name in lines
            for o in (*self._done.get(name, ()), *self._open.get(name, ()))
            if status is None or o.status is status
        ]
        return sorted(out, key=lambda o: (o.released_ms, o.id))

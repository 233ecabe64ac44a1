"""One ``async with`` protocol for every simulated server: tests and the demo treat them alike."""

from __future__ import annotations

from typing import Self


class AsyncServer:
    """Subclasses implement ``start``/``stop``; ``async with`` runs them around a block."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

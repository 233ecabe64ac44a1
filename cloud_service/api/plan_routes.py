"""``/api/v1/plans``: read the plan book, or replace it whole (JSON, or a TOML file as is).

``PUT`` validates everything before storing anything (422 lists each bad field), replaces
the stored book in one transaction, then tells the running analytics (``on_plans_changed``).
Replacing needs an ``admin`` key; a key restricted to sites reads those sites' entries only.
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
# their dependencies are local to the factory below.

import dataclasses
import logging
from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from cloud_service.api.auth import Guards, Principal
from cloud_service.plans.codec import parse_plan_json, parse_plan_toml, plan_to_json, plan_to_toml
from cloud_service.plans.errors import PlanError
from cloud_service.plans.model import PlanBook
from cloud_service.plans.store import SqlPlanStore

log = logging.getLogger(__name__)

TOML: Final = "application/toml"
MAX_BODY: Final = 64 * 1024 * 1024

_BOOK_SCHEMA: Final = {
    "type": "object",
    "properties": {s: {"type": "array", "items": {"type": "object"}}
                   for s in ("skus", "production", "demand", "shifts", "receipts")}
    | {"timezone": {"type": "string"}},
}  # fmt: skip


def plan_router(
    plans: SqlPlanStore,
    on_changed: Callable[[PlanBook], None] | None,
    guards: Guards,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/plans", tags=["plans"])

    @router.get("", responses={200: {"content": {"application/json": {}, TOML: {}}}})
    async def get_plans(
        request: Request, who: Annotated[Principal, Depends(guards.read)]
    ) -> Response:
        """The stored plan book (``Accept: application/toml`` for the file form); the key's
        sites' entries only when it is restricted to sites."""
        book = _of_sites(await plans.load(), who)
        if TOML in request.headers.get("accept", ""):
            return Response(plan_to_toml(book), media_type=TOML)
        return Response(plan_to_json(book), media_type="application/json")

    @router.put(
        "",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": _BOOK_SCHEMA}, TOML: {"schema": {"type": "string"}}
        }}},
    )  # fmt: skip
    async def put_plans(
        request: Request, who: Annotated[Principal, Depends(guards.admin)]
    ) -> dict[str, Any]:
        """Replace the plan book (JSON, or ``Content-Type: application/toml``)."""
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise PlanError("request body", [("(body)", f"larger than {MAX_BODY} bytes")])
        book = _parse(raw, request.headers.get("content-type", ""))
        await plans.replace(book)
        log.info(
            "plan book replaced by %s: %d SKU policies, %d production and %d demand targets",
            who.actor, len(book.skus), len(book.production), len(book.demand),
        )  # fmt: skip
        if on_changed is not None:
            try:
                on_changed(book)
            except Exception:  # the book is stored; a failing listener must not say otherwise
                log.exception("on_plans_changed failed; the new plan book is stored")
        return {"skus": len(book.skus), "production": len(book.production),
                "demand": len(book.demand), "receipts": len(book.receipts)}  # fmt: skip

    return router


def _parse(raw: bytes, content_type: str) -> PlanBook:
    try:
        if content_type.startswith(TOML):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PlanError("request body", [("(body)", str(exc))]) from None
            return parse_plan_toml(text, "request body")
        return parse_plan_json(raw)
    except RecursionError:  # e.g. [[[[...]]]]: the parsers recurse once per level
        raise PlanError("request body", [("(syntax)", "nested too deeply")]) from None


def _of_sites(book: PlanBook, who: Principal) -> PlanBook:
    """The entries of the sites ``who`` may see (the whole book for every site)."""
    if who.every_site:
        return book
    return dataclasses.replace(
        book,
        skus=tuple(p for p in book.skus if who.sees(p.site)),
        production=tuple(t for t in book.production if who.sees(t.site)),
        demand=tuple(d for d in book.demand if who.sees(d.site)),
        receipts=tuple(r for r in book.receipts if who.sees(r.site)),
    )

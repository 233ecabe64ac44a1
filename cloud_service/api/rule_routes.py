"""``/api/v1/rules``: read the alert rules, replace them whole (JSON or a TOML rule file as
is), and read who changed them when.

``PUT`` validates every rule before storing anything (422 lists each bad field), replaces the
stored rules in one transaction recorded with the actor ``api:<key name>``, then tells the
running monitor (``on_rules_changed``). Replacing needs an ``admin`` key; reading, a key for
every site (a rule may name any site).
"""

# No ``from __future__ import annotations``: FastAPI reads these signatures at runtime, and
# their dependencies are local to the factory below.

import json
import logging
import tomllib
from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import JSONResponse, Response

from cloud_service.alerts.errors import RuleError
from cloud_service.alerts.rule_store import SqlRuleStore, rule_to_data, rules_to_toml
from cloud_service.alerts.rules import Rule, rules_from_data
from cloud_service.api.auth import Guards, Principal
from cloud_service.api.problems import problem

log = logging.getLogger(__name__)

TOML: Final = "application/toml"
MAX_BODY: Final = 4 * 1024 * 1024
SOURCE: Final = "request body"

_RULES_SCHEMA: Final = {
    "type": "object",
    "required": ["rules"],
    "properties": {"rules": {"type": "array", "items": {"type": "object"}}},
}
_INVALID: Final = {
    "description": "Invalid rules: `errors` lists each field (`rules.2.when.0.metric`)",
    "content": {"application/problem+json": {}},
}


def rule_router(
    rules: SqlRuleStore,
    on_changed: Callable[[list[Rule]], None] | None,
    guards: Guards,
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/rules", tags=["rules"])

    @router.get("", responses={200: {"content": {"application/json": {}, TOML: {}}}})
    async def get_rules(
        request: Request, _: Annotated[Principal, Depends(guards.service)]
    ) -> Response:
        """The stored rules, in order (``Accept: application/toml`` for a rule file)."""
        stored = await rules.load()
        if TOML in request.headers.get("accept", ""):
            return Response(rules_to_toml(stored), media_type=TOML)
        return JSONResponse({"rules": [rule_to_data(r) for r in stored]})

    @router.put(
        "",
        responses={422: _INVALID},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": _RULES_SCHEMA}, TOML: {"schema": {"type": "string"}}
        }}},
    )  # fmt: skip
    async def put_rules(
        request: Request, who: Annotated[Principal, Depends(guards.admin)]
    ) -> Response:
        """Replace every rule (JSON ``{"rules": [...]}``, or ``Content-Type: application/toml``)."""
        try:
            new = _parse(await request.body(), request.headers.get("content-type", ""))
        except RuleError as exc:
            errors = [{"field": path, "message": msg} for path, msg in exc.problems]
            return problem(422, "the rules are invalid", code="invalid-rules", errors=errors)
        await rules.replace(new, actor=who.actor)
        log.info("alert rules replaced by %s: %d rules", who.actor, len(new))
        if on_changed is not None:
            try:
                on_changed(new)
            except Exception:  # the rules are stored; a failing listener must not say otherwise
                log.exception("on_rules_changed failed; the new rules are stored")
        return JSONResponse({"rules": len(new)})

    @router.get("/history")
    async def get_history(
        _: Annotated[Principal, Depends(guards.service)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, list[dict[str, Any]]]:
        """Who changed the rules and when, newest first: ids added, removed and changed, and
        the rules before and after."""
        return {"changes": [c.as_json() for c in await rules.history(limit)]}

    return router


def _parse(raw: bytes, content_type: str) -> list[Rule]:
    try:
        return _rules(raw, content_type)
    except RecursionError:  # e.g. [[[[...]]]]: the parsers recurse once per level
        raise RuleError(SOURCE, [("(syntax)", "nested too deeply")]) from None


def _rules(raw: bytes, content_type: str) -> list[Rule]:
    if len(raw) > MAX_BODY:
        raise RuleError(SOURCE, [("(body)", f"larger than {MAX_BODY} bytes")])
    try:
        if content_type.startswith(TOML):
            data: object = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise RuleError(SOURCE, [("(syntax)", str(exc))]) from None
    if isinstance(data, dict) and "rules" not in data:  # an empty body must not delete all
        raise RuleError(SOURCE, [("rules", "Field required (an empty list removes every rule)")])
    return rules_from_data(data, SOURCE)

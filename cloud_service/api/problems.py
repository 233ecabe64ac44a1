"""Every error of the API as RFC 9457 problem details, and the one place errors become HTTP.

The domain raises its own errors (``UnknownAlertError``, ``PlanError``, ``MetadataUnavailable``,
...); the handlers here choose the status: unknown → 404, refused transition → 409, invalid
input → 422, store down → 503. Bodies are ``{"type", "title", "status", "detail"}``, plus
``errors`` (field, message) for invalid input.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from cloud_service.alerts.errors import LifecycleError, UnknownAlertError
from cloud_service.errors import MetadataError, MetadataUnavailable
from cloud_service.plans.errors import PlanError

log = logging.getLogger(__name__)

MEDIA_TYPE: Final = "application/problem+json"
TYPE_PREFIX: Final = "urn:flightdeck:problem:"


def problem(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """``code`` names the problem (``unknown-alert``); without one the type is about:blank."""
    body = {
        "type": TYPE_PREFIX + code if code else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status, headers=dict(headers or {}), media_type=MEDIA_TYPE)


async def _http(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {401: "unauthorized", 403: "forbidden", 404: "not-found"}.get(exc.status_code)
    return problem(exc.status_code, str(exc.detail), code=code, headers=exc.headers)


async def _validation(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    return problem(422, "the request is invalid", code="invalid-request", errors=errors)


async def _lifecycle(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, LifecycleError)
    if isinstance(exc, UnknownAlertError):
        status, code = 404, "unknown-alert"
    elif exc.action == "shelve":  # the requested duration is outside what the policy allows
        status, code = 422, "invalid-shelving"
    else:
        status, code = 409, "refused-transition"
    return problem(status, str(exc), code=code, alert_id=exc.alert_id, action=exc.action)


async def _plan(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, PlanError)
    errors = [{"field": path, "message": msg} for path, msg in exc.problems]
    return problem(422, "the plan is invalid", code="invalid-plan", errors=errors)


async def _metadata(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, MetadataError)
    if isinstance(exc, MetadataUnavailable):
        log.warning("metadata store unavailable: %s", exc)
        return problem(503, "the metadata store is unavailable; try again", code="unavailable",
                       headers={"Retry-After": "5"})  # fmt: skip
    log.error("metadata store failed: %s", exc)
    return problem(500, "the metadata store failed", code="internal")


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.error("API request failed", exc_info=exc)
    return problem(500, "an unexpected error; see the service log", code="internal")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(LifecycleError, _lifecycle)
    app.add_exception_handler(PlanError, _plan)
    app.add_exception_handler(MetadataError, _metadata)
    app.add_exception_handler(Exception, _unexpected)  # starlette still re-raises it (logs)

"""The dashboard, served by the hub itself: static HTML/CSS/ES modules (no build step) under
``/dashboard/``, the few API routes it needs beyond the resource API under
``/api/v1/dashboard/``, and ``/`` redirecting to it. :func:`include_dashboard` is the one
hook ``create_app`` calls; it also adds the person-readable ``message`` to API errors
(:mod:`ringwatch.hub.i18n`)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ringwatch.hub.i18n import error_sentence, negotiate

# resolve(): in a strict editable install this module is a link into the build folder.
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"


def include_dashboard(app: FastAPI) -> None:
    """Mount the dashboard and its support routes on ``app``."""
    from ringwatch.hub.api.routes.dashboard_support import router

    app.include_router(router, prefix="/api/v1")
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/dashboard/")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return _with_message(request, await http_exception_handler(request, exc))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return _with_message(request, await request_validation_exception_handler(request, exc))


def _with_message(request: Request, response: Response) -> Response:
    """Add ``message`` (the detail as a sentence) when the request names a language; the
    English ``detail`` stays as it was."""
    header = request.headers.get("accept-language")
    if not header or not isinstance(response, JSONResponse):
        return response
    hub = getattr(request.app.state, "hub", None)
    default = getattr(getattr(hub, "settings", None), "language", "en")
    body = json.loads(bytes(response.body))
    if not isinstance(body, dict) or "detail" not in body:
        return response
    body["message"] = error_sentence(negotiate(header, default), body["detail"])
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-length", "content-type")
    }
    return JSONResponse(body, status_code=response.status_code, headers=headers)

"""The dashboard, served by the hub itself: static HTML/CSS/ES modules (no build step) under
``/dashboard/``, the few API routes it needs beyond the resource API under
``/api/v1/dashboard/``, and ``/`` redirecting to it. :func:`include_dashboard` is the one
hook ``create_app`` calls."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

# resolve(): in a strict editable install this module is a link into the build folder.
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"


def include_dashboard(app: FastAPI) -> None:
    """Mount the dashboard and its support routes on ``app``."""
    from ringwatch.hub.api.routes.dashboard_support import router

    app.include_router(router, prefix="/api/v1")
    app.mount("/dashboard", StaticFiles(directory=DASHBOARD_DIR, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

"""All routers under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from ringwatch.hub.api.routes.audit import router as audit
from ringwatch.hub.api.routes.events import router as events
from ringwatch.hub.api.routes.health import router as health
from ringwatch.hub.api.routes.incidents import router as incidents
from ringwatch.hub.api.routes.login import router as login
from ringwatch.hub.api.routes.media import router as media
from ringwatch.hub.api.routes.persons import router as persons
from ringwatch.hub.api.routes.sightings import router as sightings
from ringwatch.hub.api.routes.sites import router as sites
from ringwatch.hub.api.routes.users import router as users
from ringwatch.hub.api.routes.zones import router as zones

api_router = APIRouter()
for router in (login, users, sites, persons, sightings, events, audit, health, incidents):
    api_router.include_router(router)
api_router.include_router(zones)
api_router.include_router(media)  # issue 14: evidence media and case export

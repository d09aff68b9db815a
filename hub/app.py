"""``create_app(settings)``: the hub's FastAPI application. Nothing happens at import time;
the engine, migrations, config file, private broker and MQTT ingest are set up in the
lifespan and torn down in reverse order."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringwatch import __version__
from ringwatch.contract.messages import Event
from ringwatch.hub import crud
from ringwatch.hub.broker import PrivateMosquitto
from ringwatch.hub.clock import Clock, utc_now
from ringwatch.hub.crypto import TemplateCipher
from ringwatch.hub.db import SessionFactory, make_engine, migrate, session_factory
from ringwatch.hub.incident_runtime import IncidentRuntime
from ringwatch.hub.ingest import Ingestor, IngestStats
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.matching import Matcher
from ringwatch.hub.mqtt import (
    BrokerAddress,
    BrokerLogin,
    IngestWorker,
    MqttLink,
    ingest_subscriptions,
)
from ringwatch.hub.registry import FaceEmbedding, PhotoEnroller
from ringwatch.hub.security import LoginThrottle, TokenCodec
from ringwatch.hub.settings import HubSettings
from ringwatch.hub.zone_configs import ZoneConfigs, start_zone_link

log = logging.getLogger(__name__)


@dataclass
class Hub:
    """Everything a request or the ingest needs, built once per app."""

    settings: HubSettings
    config: HubConfig
    engine: Engine
    sessions: SessionFactory
    clock: Clock
    cipher: TemplateCipher
    matcher: Matcher
    tokens: TokenCodec
    stats: IngestStats
    models_dir: Path | None = None
    faces: FaceEmbedding | None = None
    worker: IngestWorker | None = None
    link: MqttLink | None = None
    broker: PrivateMosquitto | None = None
    broker_url: str | None = None
    incidents: IncidentRuntime | None = None
    zones: ZoneConfigs | None = None
    zone_link: MqttLink | None = None
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    _tmp: list[tempfile.TemporaryDirectory[str]] = field(default_factory=list)

    def enroller(self) -> PhotoEnroller:
        """The photo enroller; loads the face models on first use."""
        if self.faces is None:
            from ringwatch.models.faces import FacePipeline
            from ringwatch.models.manifest import default_models_dir

            self.faces = FacePipeline.from_models_dir(self.models_dir or default_models_dir())
        return PhotoEnroller(self.faces)

    def start(self, ingest: bool) -> None:
        migrate(self.engine)
        with self.sessions.begin() as session:
            crud.apply_config(session, self.config)
        self.incidents = IncidentRuntime(
            self.sessions,
            self.config.incidents,
            self.settings.colour_policy,
            self.clock,
            self._alert,
        )
        self.zones = ZoneConfigs(self.sessions, self.clock)
        if ingest:
            self._start_ingest()
        if self.config.incidents.timer_loop:
            self.incidents.start()

    def _alert(self, topic: str, payload: bytes) -> bool:
        """Publish a routed alert (False while there is no broker link: retried later)."""
        return self.link is not None and self.link.publish(topic, payload)

    def _start_ingest(self) -> None:
        url = self.settings.broker_url
        if url is None:
            tmp = tempfile.TemporaryDirectory(prefix="ringwatch-broker-")
            self._tmp.append(tmp)
            self.broker = PrivateMosquitto(Path(tmp.name)).start()
            url = self.broker.url
            log.info("started a private Mosquitto at %s", url)
        self.broker_url = url
        login = BrokerLogin.from_settings(self.settings) if self.broker is None else None
        cfg = self.config.ingest
        self.worker = IngestWorker(
            Ingestor(
                self.sessions,
                self.matcher,
                self.clock,
                self.stats,
                self._stored,
                self.settings.time_bounds(),
            ),
            self.clock,
            cfg.batch_size,
        )
        self.link = MqttLink(
            BrokerAddress.from_url(url),
            f"ringwatch-{cfg.worker}",
            ingest_subscriptions(cfg.group),
            self.worker.submit,
            cfg.session_expiry_s,
            login,
        )
        self.worker.attach(self.link)
        self.worker.start()
        self.link.start()
        assert self.zones is not None
        zone_id = f"ringwatch-{cfg.worker}-zones"
        self.zone_link = start_zone_link(
            self.zones, url, zone_id, cfg.session_expiry_s, zone_login(login)
        )

    def _stored(self, events: list[Event], now: dt.datetime, session: Session) -> None:
        if self.incidents is not None:
            self.incidents.on_stored(events, now, session)

    def stop(self) -> None:
        if self.incidents is not None:
            self.incidents.stop()
        if self.link is not None:
            self.link.stop()
        if self.zone_link is not None:
            self.zone_link.stop()
        if self.worker is not None:
            self.worker.stop()
        if self.broker is not None:
            self.broker.stop()
        for tmp in self._tmp:
            tmp.cleanup()
        self.engine.dispose()


ZONES_USER_SUFFIX = "-zones"


def zone_login(login: BrokerLogin | None) -> BrokerLogin | None:
    """The zone link's login: ``<user>-zones`` with the same password. A broker that binds
    client ids to user names (the shipped mosquitto.conf) would otherwise see the ingest
    and zone links as one client and make them knock each other off."""
    if login is None or login.username is None:
        return login
    return replace(login, username=login.username + ZONES_USER_SUFFIX)


def build_hub(
    settings: HubSettings,
    config: HubConfig | None = None,
    *,
    clock: Clock = utc_now,
    faces: FaceEmbedding | None = None,
    models_dir: Path | None = None,
) -> Hub:
    """The hub's parts, not yet started (no connections are made here). Refuses default or
    short secrets (:meth:`HubSettings.check_secrets`)."""
    settings.check_secrets()
    config = (config or HubConfig()).check("hub config")
    engine = make_engine(settings.database_url)
    cipher = TemplateCipher(settings.template_key)
    return Hub(
        settings=settings,
        config=config,
        engine=engine,
        sessions=session_factory(engine),
        clock=clock,
        cipher=cipher,
        matcher=Matcher(cipher, clock, config.matching),
        tokens=TokenCodec(settings.jwt_secret),
        stats=IngestStats(),
        models_dir=models_dir,
        faces=faces,
    )


def create_app(
    settings: HubSettings,
    config: HubConfig | None = None,
    *,
    clock: Clock = utc_now,
    faces: FaceEmbedding | None = None,
    models_dir: Path | None = None,
    ingest: bool = True,
) -> FastAPI:
    """The hub as an ASGI app. ``ingest=False`` serves the API without MQTT (tests, tools)."""
    from ringwatch.hub.api.guard import Guard, content_security_policy, inline_style_hashes
    from ringwatch.hub.api.main import api_router
    from ringwatch.hub.web import DASHBOARD_DIR, include_dashboard

    hub = build_hub(settings, config, clock=clock, faces=faces, models_dir=models_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.start(ingest)
        try:
            yield
        finally:
            hub.stop()

    app = FastAPI(
        title="Ringwatch hub",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
    )
    app.state.hub = hub
    app.include_router(api_router, prefix="/api/v1")
    include_dashboard(app)
    styles = inline_style_hashes(DASHBOARD_DIR.glob("*.html"))
    app.add_middleware(Guard, csp=content_security_policy(styles))
    return app

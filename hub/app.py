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
from typing import TYPE_CHECKING

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringwatch import __version__
from ringwatch.contract.messages import Event
from ringwatch.errors import ConfigError
from ringwatch.hub import crud
from ringwatch.hub.broker import PrivateMosquitto
from ringwatch.hub.clock import Clock, utc_now
from ringwatch.hub.crypto import TemplateCipher
from ringwatch.hub.db import SessionFactory, make_engine, migrate, session_factory
from ringwatch.hub.incident_runtime import IncidentRuntime
from ringwatch.hub.ingest import Ingestor, IngestStats
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.matching import Matcher
from ringwatch.hub.media import MediaRetention, MediaStore
from ringwatch.hub.metrics import HubMetrics, TimedMatcher, include_metrics
from ringwatch.hub.mqtt import (
    BrokerAddress,
    BrokerLogin,
    IngestWorker,
    MqttLink,
    ingest_subscriptions,
)
from ringwatch.hub.notify import notify_senders
from ringwatch.hub.registry import FaceEmbedding, PhotoEnroller
from ringwatch.hub.security import LoginThrottle, TokenCodec
from ringwatch.hub.settings import HubSettings
from ringwatch.hub.workers import Load, SqliteWorkerLock, WorkerBeat, sqlite_path
from ringwatch.hub.zone_configs import ZoneConfigs, start_zone_link

if TYPE_CHECKING:
    from ringwatch.hub.nats import NatsLink

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
    nats_link: NatsLink | None = None  # broker_kind nats: the JetStream consumer
    broker: PrivateMosquitto | None = None
    broker_url: str | None = None
    incidents: IncidentRuntime | None = None
    zones: ZoneConfigs | None = None
    zone_link: MqttLink | None = None
    metrics: HubMetrics | None = None  # issue 18: /metrics
    media: MediaStore | None = None  # issue 14: evidence clips and snapshots
    media_retention: MediaRetention | None = None
    beat: WorkerBeat | None = None
    sqlite_lock: SqliteWorkerLock | None = None
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    _tmp: list[tempfile.TemporaryDirectory[str]] = field(default_factory=list)

    def enroller(self) -> PhotoEnroller:
        """The photo enroller; loads the face models on first use."""
        if self.faces is None:
            from ringwatch.models.faces import FacePipeline
            from ringwatch.models.manifest import default_models_dir

            self.faces = FacePipeline.from_models_dir(self.models_dir or default_models_dir())
        return PhotoEnroller(
            self.faces, self.settings.enrol_min_quality, self.settings.enrol_min_face_px
        )

    def start(self, ingest: bool) -> None:
        path = sqlite_path(self.engine)
        if path is not None and self.sqlite_lock is None:  # SQLite: refuse a second worker
            self.sqlite_lock = SqliteWorkerLock(path)
            self.sqlite_lock.acquire(self.config.ingest.worker)
        migrate(self.engine)
        with self.sessions.begin() as session:
            crud.apply_config(session, self.config)
        self.matcher.warm(self.sessions)  # decrypted templates in memory before any face
        self.incidents = IncidentRuntime(
            self.sessions,
            self.config.incidents,
            self.settings.colour_policy,
            self.clock,
            self._alert,
            senders=notify_senders(self.settings, self.config.incidents),  # issue 14
            worker=self.config.ingest.worker,
        )
        self.zones = ZoneConfigs(self.sessions, self.clock)
        self._start_media()
        if ingest:
            self._start_ingest()
        self.beat = WorkerBeat(self.sessions, self.config.ingest.worker, self.clock, self._load)
        if self.config.incidents.timer_loop:
            self.incidents.start()
            self.beat.start()

    def _load(self) -> Load:
        queued, lag = (0, None) if self.worker is None else self.worker.lag()
        return Load(self.stats.snapshot().get("stored", 0), queued, lag)

    def _start_media(self) -> None:
        """Issue 14: the media folder and its retention (hub/media.py)."""
        self.media = MediaStore(self.settings.media_dir)
        retention = self.config.incidents.retention
        self.media_retention = MediaRetention(self.sessions, self.media, retention, self.clock)
        if self.config.incidents.timer_loop:
            self.media_retention.start()

    def _alert(self, topic: str, payload: bytes) -> bool:
        """Publish a routed alert: True only once the broker PUBACKed it; False (no link,
        link down, no PUBACK in time) leaves no queued copy, the dispatcher retries."""
        if self.link is not None:
            return self.link.publish_confirmed(topic, payload)
        return self.nats_link is not None and self.nats_link.publish(topic, payload)

    @property
    def ingest_connected(self) -> bool:
        link = self.link or self.nats_link
        return link is not None and link.connected.is_set()

    def _start_ingest(self) -> None:
        if self.settings.broker_kind == "nats":
            self._start_nats_ingest()
            return
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

    def _start_nats_ingest(self) -> None:
        """Pull from the JetStream work queue; device status and replies (zone configs)
        over MQTT 3.1.1 from one node's MQTT listener (``broker_url``)."""
        from ringwatch.hub.nats import NatsLink, parse_servers

        if self.settings.nats_url is None:
            raise ConfigError("hub settings: broker_kind nats needs nats_url (nats://host:port)")
        cfg = self.config.ingest
        self.broker_url = self.settings.nats_url
        self.worker = IngestWorker(
            Ingestor(self.sessions, self.matcher, self.clock, self.stats, self._stored),
            self.clock,
            cfg.batch_size,
        )
        self.nats_link = NatsLink(
            parse_servers(self.settings.nats_url),
            durable=cfg.group,
            on_message=self.worker.submit,
            name=f"ringwatch-{cfg.worker}",
            ack_wait_s=cfg.ack_wait_s,
            batch=cfg.batch_size,
        )
        self.worker.attach(self.nats_link)
        self.worker.start()
        self.nats_link.start()
        url = self.settings.broker_url
        if url is None:
            log.warning("broker_kind nats without broker_url: no zone-config pushes")
            return
        assert self.zones is not None
        login = BrokerLogin.from_settings(self.settings)
        zone_id = f"ringwatch-{cfg.worker}-zones"
        self.zone_link = start_zone_link(
            self.zones, url, zone_id, cfg.session_expiry_s, zone_login(login), protocol="3.1.1"
        )

    def _stored(self, events: list[Event], now: dt.datetime, session: Session) -> None:
        if self.metrics is not None:  # issue 18: ingest lag
            self.metrics.stored(events, now)
        if self.incidents is not None:
            self.incidents.on_stored(events, now, session)

    def stop(self) -> None:
        if self.media_retention is not None:
            self.media_retention.stop()
        if self.beat is not None:
            self.beat.stop()
        if self.incidents is not None:
            self.incidents.stop()
        if self.link is not None:
            self.link.stop()
        if self.nats_link is not None:
            self.nats_link.stop()
        if self.zone_link is not None:
            self.zone_link.stop()
        if self.worker is not None:
            self.worker.stop()
        if self.broker is not None:
            self.broker.stop()
        self.matcher.save_snapshot()  # the next start loads it instead of decrypting all
        for tmp in self._tmp:
            tmp.cleanup()
        self.engine.dispose()
        if self.sqlite_lock is not None:
            self.sqlite_lock.release()
            self.sqlite_lock = None


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
    matcher = TimedMatcher(cipher, clock, config.matching)  # issue 18: 1:N time in /metrics
    hub = Hub(
        settings=settings,
        config=config,
        engine=engine,
        sessions=session_factory(engine),
        clock=clock,
        cipher=cipher,
        matcher=matcher,
        tokens=TokenCodec(settings.jwt_secret),
        stats=IngestStats(),
        models_dir=models_dir,
        faces=faces,
    )
    hub.metrics = HubMetrics(hub.stats, hub.sessions, clock, config.ingest.worker)
    matcher.observe = hub.metrics.match_seconds.observe
    return hub


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
    assert hub.metrics is not None
    include_metrics(app, hub.metrics)  # issue 18
    styles = inline_style_hashes(DASHBOARD_DIR.glob("*.html"))
    app.add_middleware(Guard, csp=content_security_policy(styles))
    return app

"""``create_app(settings)``: the hub's FastAPI application. Nothing happens at import time;
:func:`build_hub` makes the frozen :class:`Hub` (engine, codecs, matcher; no connections),
and the lifespan opens the frozen :class:`Services` once (migrations, config file, private
broker, MQTT or NATS ingest, timers), each stop pushed on an exit stack as it starts, so
they are torn down in reverse order."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

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
from ringwatch.hub.db import SessionFactory, WriteTurns, make_engine, migrate, session_factory
from ringwatch.hub.incident_runtime import IncidentRuntime
from ringwatch.hub.ingest import Ingestor, IngestStats
from ringwatch.hub.intake import Intake
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
from ringwatch.hub.quarantine import GUARD_USER_SUFFIX, DynsecGuard, FloodWatch
from ringwatch.hub.registry import FaceEmbedding, PhotoEnroller
from ringwatch.hub.security import LoginThrottle, SharedLoginThrottle, TokenCodec
from ringwatch.hub.settings import HubSettings
from ringwatch.hub.workers import Load, SqliteWorkerLock, WorkerBeat, sqlite_path
from ringwatch.hub.zone_configs import ZoneConfigs, start_zone_link

if TYPE_CHECKING:
    from ringwatch.hub.nats import NatsLink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the lifespan starts, built once by :func:`open_services` and frozen; stopped in
    reverse order of starting by the lifespan's exit stack."""

    incidents: IncidentRuntime
    zones: ZoneConfigs
    media: MediaStore  # issue 14: evidence clips and snapshots
    media_retention: MediaRetention
    beat: WorkerBeat
    worker: IngestWorker | None = None
    intake: Intake | None = None  # malformed payloads: rejected on receipt, bulk dead letters
    link: MqttLink | None = None
    nats_link: NatsLink | None = None  # broker_kind nats: the JetStream consumer
    broker: PrivateMosquitto | None = None
    broker_url: str | None = None
    zone_link: MqttLink | None = None
    sqlite_lock: SqliteWorkerLock | None = None
    flood: FloodWatch | None = None  # flood quarantine (hub/quarantine.py)


@dataclass(frozen=True, eq=False)  # one hub is equal to itself only
class Hub:
    """The hub's parts made by :func:`build_hub` (no connections), frozen; the running
    :class:`Services` appear once the lifespan (or :meth:`start`) opened them, under the
    same attribute names the routes use (``hub.link``, ``hub.incidents``...)."""

    settings: HubSettings
    config: HubConfig
    engine: Engine
    sessions: SessionFactory
    clock: Clock
    cipher: TemplateCipher
    matcher: Matcher
    tokens: TokenCodec
    stats: IngestStats
    metrics: HubMetrics  # issue 18: /metrics
    models_dir: Path | None = None
    login_throttle: LoginThrottle | SharedLoginThrottle = field(default_factory=LoginThrottle)
    _faces: list[FaceEmbedding] = field(default_factory=list)  # loaded on first use
    _running: list[tuple[Services, ExitStack]] = field(default_factory=list)  # 0 or 1

    @property
    def faces(self) -> FaceEmbedding | None:
        return self._faces[0] if self._faces else None

    def enroller(self) -> PhotoEnroller:
        """The photo enroller; loads the face models on first use."""
        if not self._faces:
            from ringwatch.models.faces import FacePipeline
            from ringwatch.models.manifest import default_models_dir

            self._faces.append(
                FacePipeline.from_models_dir(self.models_dir or default_models_dir())
            )
        return PhotoEnroller(
            self._faces[0], self.settings.enrol_min_quality, self.settings.enrol_min_face_px
        )

    # -- the running services, None before start / after stop ------------------------------

    @property
    def services(self) -> Services | None:
        return self._running[0][0] if self._running else None

    @property
    def incidents(self) -> IncidentRuntime | None:
        return None if self.services is None else self.services.incidents

    @property
    def zones(self) -> ZoneConfigs | None:
        return None if self.services is None else self.services.zones

    @property
    def media(self) -> MediaStore | None:
        return None if self.services is None else self.services.media

    @property
    def media_retention(self) -> MediaRetention | None:
        return None if self.services is None else self.services.media_retention

    @property
    def beat(self) -> WorkerBeat | None:
        return None if self.services is None else self.services.beat

    @property
    def worker(self) -> IngestWorker | None:
        return None if self.services is None else self.services.worker

    @property
    def intake(self) -> Intake | None:
        return None if self.services is None else self.services.intake

    @property
    def link(self) -> MqttLink | None:
        return None if self.services is None else self.services.link

    @property
    def nats_link(self) -> NatsLink | None:
        return None if self.services is None else self.services.nats_link

    @property
    def broker(self) -> PrivateMosquitto | None:
        return None if self.services is None else self.services.broker

    @property
    def broker_url(self) -> str | None:
        return None if self.services is None else self.services.broker_url

    @property
    def zone_link(self) -> MqttLink | None:
        return None if self.services is None else self.services.zone_link

    @property
    def sqlite_lock(self) -> SqliteWorkerLock | None:
        return None if self.services is None else self.services.sqlite_lock

    @property
    def flood(self) -> FloodWatch | None:
        return None if self.services is None else self.services.flood

    @property
    def ingest_connected(self) -> bool:
        link = self.link or self.nats_link
        return link is not None and link.connected.is_set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, ingest: bool) -> None:
        """Open the services (what the lifespan does); a second start while running is a
        no-op, so a lifespan entered twice keeps one set (and one SQLite worker lock)."""
        if self._running:
            return
        stack = ExitStack()
        try:
            services = open_services(self, ingest, stack)
        except BaseException:
            stack.close()
            raise
        self._running.append((services, stack))

    def stop(self) -> None:
        """Stop the services in reverse order of starting, then the engine."""
        if self._running:
            _, stack = self._running.pop()
            stack.close()

    def _alert(self, topic: str, payload: bytes) -> bool:
        """Publish a routed alert: True only once the broker PUBACKed it; False (no link,
        link down, no PUBACK in time) leaves no queued copy, the dispatcher retries."""
        if self.link is not None:
            return self.link.publish_confirmed(topic, payload)
        return self.nats_link is not None and self.nats_link.publish(topic, payload)

    def _load(self) -> Load:
        queued, lag = (0, None) if self.worker is None else self.worker.lag()
        return Load(self.stats.snapshot().get("stored", 0), queued, lag)

    def _stored(self, events: list[Event], now: dt.datetime, session: Session) -> None:
        self.metrics.stored(events, now)  # issue 18: ingest lag
        if self.incidents is not None:
            self.incidents.on_stored(events, now, session)


def open_services(hub: Hub, ingest: bool, stack: ExitStack) -> Services:
    """Start the hub's services; each one's stop goes on ``stack`` as it starts, so closing
    the stack tears them down in reverse (the engine last)."""
    lock = None
    path = sqlite_path(hub.engine)
    if path is not None:  # SQLite: refuse a second worker
        lock = SqliteWorkerLock(path)
        lock.acquire(hub.config.ingest.worker)
        stack.callback(lock.release)  # last of all
    stack.callback(hub.engine.dispose)
    stack.callback(hub.matcher.save_snapshot)  # the next start loads it, not decrypting all
    migrate(hub.engine)
    with hub.sessions.begin() as session:
        crud.apply_config(session, hub.config)
    hub.matcher.warm(hub.sessions)  # decrypted templates in memory before any face
    incidents = IncidentRuntime(
        hub.sessions,
        hub.config.incidents,
        hub.settings.colour_policy,
        hub.clock,
        hub._alert,
        senders=notify_senders(hub.settings, hub.config.incidents),  # issue 14
        worker=hub.config.ingest.worker,
    )
    zones = ZoneConfigs(hub.sessions, hub.clock)
    media = MediaStore(hub.settings.media_dir)  # issue 14 (hub/media.py)
    retention = MediaRetention(hub.sessions, media, hub.config.incidents.retention, hub.clock)
    timers = hub.config.incidents.timer_loop
    if timers:
        retention.start()
        stack.callback(retention.stop)
    links = _start_ingest(hub, zones, stack) if ingest else {}
    beat = WorkerBeat(hub.sessions, hub.config.ingest.worker, hub.clock, hub._load)
    if timers:
        incidents.start()
        stack.callback(incidents.stop)
        beat.start()
        stack.callback(beat.stop)
    return Services(incidents, zones, media, retention, beat, sqlite_lock=lock, **links)


class _Links(TypedDict, total=False):
    worker: IngestWorker
    intake: Intake
    link: MqttLink
    nats_link: NatsLink
    broker: PrivateMosquitto
    broker_url: str
    zone_link: MqttLink
    flood: FloodWatch


def _start_ingest(hub: Hub, zones: ZoneConfigs, stack: ExitStack) -> _Links:
    if hub.settings.broker_kind == "nats":
        return _start_nats_ingest(hub, zones, stack)
    out: _Links = {}
    url = hub.settings.broker_url
    if url is None:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ringwatch-broker-"))
        out["broker"] = broker = PrivateMosquitto(Path(tmp)).start()
        stack.callback(broker.stop)
        url = broker.url
        log.info("started a private Mosquitto at %s", url)
    out["broker_url"] = url
    login = BrokerLogin.from_settings(hub.settings) if "broker" not in out else None
    cfg = hub.config.ingest
    turns = WriteTurns.for_engine(hub.engine)  # SQLite: the two hot writers take turns
    bounds = hub.settings.time_bounds()
    out["worker"] = worker = IngestWorker(
        Ingestor(hub.sessions, hub.matcher, hub.clock, hub.stats, hub._stored, bounds, turns),
        hub.clock,
        cfg.batch_size,
    )
    out["flood"] = flood = _flood_watch(hub, url, login, stack)
    out["intake"] = intake = Intake(
        hub.sessions, hub.clock, hub.stats, worker.submit, bounds, turns=turns, flood=flood
    )
    out["link"] = link = MqttLink(
        BrokerAddress.from_url(url),
        f"ringwatch-{cfg.worker}",
        ingest_subscriptions(cfg.group),
        intake.receive,
        cfg.session_expiry_s,
        login,
    )
    worker.attach(link)
    intake.attach(link)
    intake.start()
    stack.callback(intake.stop)
    worker.start()
    stack.callback(worker.stop)
    link.start()
    stack.callback(link.stop)
    zone_id = f"ringwatch-{cfg.worker}-zones"
    out["zone_link"] = zl = start_zone_link(
        zones, url, zone_id, cfg.session_expiry_s, zone_login(login)
    )
    stack.callback(zl.stop)
    return out


def _start_nats_ingest(hub: Hub, zones: ZoneConfigs, stack: ExitStack) -> _Links:
    """Pull from the JetStream work queue; device status and replies (zone configs)
    over MQTT 3.1.1 from one node's MQTT listener (``broker_url``)."""
    from ringwatch.hub.nats import NatsLink, parse_servers

    if hub.settings.nats_url is None:
        raise ConfigError("hub settings: broker_kind nats needs nats_url (nats://host:port)")
    cfg = hub.config.ingest
    out: _Links = {"broker_url": hub.settings.nats_url}
    turns = WriteTurns.for_engine(hub.engine)
    out["worker"] = worker = IngestWorker(
        Ingestor(hub.sessions, hub.matcher, hub.clock, hub.stats, hub._stored, turns=turns),
        hub.clock,
        cfg.batch_size,
    )
    out["flood"] = flood = _flood_watch(hub, None, None, stack)  # no broker ban on NATS
    out["intake"] = intake = Intake(
        hub.sessions, hub.clock, hub.stats, worker.submit, turns=turns, flood=flood
    )
    out["nats_link"] = nats_link = NatsLink(
        parse_servers(hub.settings.nats_url),
        durable=cfg.group,
        on_message=intake.receive,
        name=f"ringwatch-{cfg.worker}",
        ack_wait_s=cfg.ack_wait_s,
        batch=cfg.batch_size,
    )
    worker.attach(nats_link)
    intake.attach(nats_link)
    intake.start()
    stack.callback(intake.stop)
    worker.start()
    stack.callback(worker.stop)
    nats_link.start()
    stack.callback(nats_link.stop)
    url = hub.settings.broker_url
    if url is None:
        log.warning("broker_kind nats without broker_url: no zone-config pushes")
        return out
    login = BrokerLogin.from_settings(hub.settings)
    zone_id = f"ringwatch-{cfg.worker}-zones"
    out["zone_link"] = zl = start_zone_link(
        zones, url, zone_id, cfg.session_expiry_s, zone_login(login), protocol="3.1.1"
    )
    stack.callback(zl.stop)
    return out


ZONES_USER_SUFFIX = "-zones"


def _flood_watch(
    hub: Hub, url: str | None, login: BrokerLogin | None, stack: ExitStack
) -> FloodWatch:
    """The flood quarantine; with ``ingest.flood.at_broker`` it bans at the broker through
    the ``<broker_username>-guard`` login (Mosquitto's dynamic-security plugin)."""
    cfg = hub.config.ingest.flood
    guard = None
    own = [login, zone_login(login)]
    protected = {o.username for o in own if o is not None and o.username is not None}
    if cfg.at_broker:
        glogin = login.sibling(GUARD_USER_SUFFIX) if login is not None else None
        if url is None or glogin is None or glogin.username is None:
            raise ConfigError(
                "hub config: ingest.flood.at_broker needs an MQTT broker_url and a"
                " broker_username (the guard logs in as <broker_username>-guard)"
            )
        guard = DynsecGuard(url, glogin)
        protected.add(glogin.username)
    watch = FloodWatch(hub.sessions, hub.clock, cfg, guard, protected)
    watch.start()
    stack.callback(watch.stop)
    return watch


def zone_login(login: BrokerLogin | None) -> BrokerLogin | None:
    """The zone link's login: ``<user>-zones`` with the same password. A broker that binds
    client ids to user names (the shipped mosquitto.conf) would otherwise see the ingest
    and zone links as one client and make them knock each other off."""
    if login is None:
        return None
    return login.sibling(ZONES_USER_SUFFIX) or login


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
    sessions = session_factory(engine)
    stats = IngestStats()
    metrics = HubMetrics(stats, sessions, clock, config.ingest.worker)
    matcher.observe = metrics.match_seconds.observe
    return Hub(
        settings=settings,
        config=config,
        engine=engine,
        sessions=sessions,
        clock=clock,
        cipher=cipher,
        matcher=matcher,
        tokens=TokenCodec(settings.jwt_secret),
        stats=stats,
        metrics=metrics,
        models_dir=models_dir,
        login_throttle=SharedLoginThrottle(sessions),  # one for every worker on the database
        _faces=[] if faces is None else [faces],
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
    include_metrics(app, hub.metrics)  # issue 18
    styles = inline_style_hashes(DASHBOARD_DIR.glob("*.html"))
    app.add_middleware(Guard, csp=content_security_policy(styles))
    return app

"""``ringwatch demo``: the whole product on one machine, in one command.

It starts a private Mosquitto, the hub on SQLite (in a temporary folder), an edge agent as a
subprocess with two cameras (a campus gate playing the Hamilton clip with three rings drawn,
an e-bike shed playing a fire clip), and ``ringwatch sim sensors`` for the shed's bays with
an overheating bay; it creates a demo admin, enrols lin-manuel-miranda.png on the watch list
through the hub's API, and prints the dashboard's URL and login. Within about 30 s a
watch-list incident and a shed fire alarm are on the board.

``--check`` does the same without a browser: it waits (at most ``--timeout`` s) for both
incidents, prints one summary line and exits 0, or 1 with the reason. Every child process is
stopped on exit, Ctrl-C or SIGTERM. The hub never imports the edge runtime: the edge agent
and the sensor simulator run as ``ringwatch`` subprocesses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from types import FrameType, TracebackType
from typing import Any

from ringwatch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DEMO_FILES = (
    "faces/watchlist_demo/short_hamilton_clip.mp4",
    "faces/watchlist_demo/lin-manuel-miranda.png",
    "fire/video/firesense_test1.mp4",
)
DEMO_MODELS = ("yunet", "sface", "fire_smoke")
ADMIN = "demo-admin"
SHED, BAYS, FAULT = "shed-a", 4, "b3:overheating@5"
PERSON = {
    "display_name": "Lin-Manuel Miranda",
    "tier": "red",
    "reason": "Demo watch-list entry: a made-up case for the demonstration",
    "case_reference": "DEMO-2026-0001",
    "legal_basis": "Demonstration only (no real case)",
    "station_id": "st-demo",
}


def register(sub: Any) -> None:
    """Add ``ringwatch demo`` to the parser."""
    p = sub.add_parser("demo", help="run broker, hub, an edge box and shed sensors locally")
    p.add_argument("--data", type=Path, default=None, help="data folder (default ../shared/data)")
    p.add_argument("--models", type=Path, default=None, help="installed models folder")
    p.add_argument("--check", action="store_true", help="wait for both incidents, then exit")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"dashboard port (default {DEFAULT_PORT} when free, else any free port; 0: any)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="--check: seconds to wait")
    p.set_defaults(func=_demo)


# --- inputs ---------------------------------------------------------------------------------


def find_data(given: Path | None) -> Path:
    """The data folder: ``--data``, else ../shared/data beside the repository or the cwd."""
    candidates = [given] if given is not None else _default_data()
    for folder in candidates:
        if folder.is_dir():
            missing = [f for f in DEMO_FILES if not (folder / f).is_file()]
            if missing:
                raise ConfigError(
                    f"demo data folder {folder} lacks {', '.join(missing)}; "
                    "pass --data DIR pointing at the shared data folder"
                )
            return folder.resolve()
    where = " or ".join(str(c) for c in candidates)
    hint = "" if given is not None else " (the default)"
    raise ConfigError(
        f"demo data folder {where} not found{hint}; pass --data DIR pointing at the shared "
        "data folder (it holds faces/watchlist_demo and fire/video)"
    )


def _default_data() -> list[Path]:
    found = [REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return list(dict.fromkeys(p.resolve() for p in found))


def find_models(given: Path | None) -> Path:
    """The models folder, each demo model present and verified; ModelError otherwise."""
    from ringwatch.models.install import model_path
    from ringwatch.models.manifest import default_models_dir, load_manifest

    folder = given or default_models_dir()
    manifest = load_manifest()
    for name in DEMO_MODELS:
        model_path(manifest.get(name), folder)
    return folder


def config_file(name: str) -> Path:
    for folder in (REPO / "configs", Path.cwd() / "configs"):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"demo config configs/{name} not found beside {REPO} or in the cwd")


def edge_config(data: Path, broker_url: str, var: Path) -> Path:
    """configs/demo-site.yaml with its ${DATA}, ${BROKER} and ${VAR} filled in."""
    text = Template(config_file("demo-site.yaml").read_text()).substitute(
        DATA=str(data), BROKER=broker_url, VAR=str(var)
    )
    target = var / "demo-site.yaml"
    target.write_text(text)
    return target


DEFAULT_PORT = 8000


def choose_port(wanted: int | None, preferred: int = DEFAULT_PORT) -> tuple[int, str | None]:
    """The dashboard's port and a note when it is not the one asked for.

    An explicit port must be free (ConfigError otherwise); 0 means any free port; no port
    means ``preferred`` when free, else any free one, so ``make demo`` never stops on a busy
    8000.
    """
    from ringwatch.hub.broker import free_port

    if wanted == 0:
        return free_port(), None
    if wanted is not None:
        check_port(wanted)
        return wanted, None
    try:
        check_port(preferred)
    except ConfigError:
        port = free_port()
        return port, f"port {preferred} is taken; using {port} (choose one with --port N)"
    return preferred, None


def check_port(port: int) -> None:
    """ConfigError when the dashboard's port is taken (before anything is started)."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} is not free ({exc.strerror}); pass --port N (0: any free port)"
            ) from None


# --- child processes ------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 800) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""


@dataclass
class Children:
    """The demo's subprocesses; :meth:`stop` ends every one (TERM, then KILL)."""

    var: Path
    items: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> Child:
        log = self.var / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.var
            )
        child = Child(name, process, log)
        self.items.append(child)
        return child

    def dead(self) -> Child | None:
        return next((c for c in self.items if c.process.poll() is not None), None)

    def stop(self) -> None:
        for child in reversed(self.items):
            if child.process.poll() is None:
                child.process.terminate()
        for child in reversed(self.items):
            try:
                child.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout=5)
        self.items.clear()


def ringwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "ringwatch", *args]


# --- the hub, in this process -----------------------------------------------------------------


class HubServer:
    """The hub app under uvicorn in a thread (graceful shutdown bounded: SSE streams)."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="demo-hub", daemon=True)

    def start(self, timeout_s: float = 60.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise ConfigError("the hub did not start (see the messages above)")
            if time.monotonic() > deadline:
                raise ConfigError(f"the hub did not start within {timeout_s:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


class HubClient:
    """The hub's REST API over HTTP (standard library only)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None

    def login(self, username: str, password: str) -> None:
        form = f"username={username}&password={password}".encode()
        answer = self._call(
            "POST", "/login/access-token", form, "application/x-www-form-urlencoded"
        )
        self.token = str(answer["access_token"])

    def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", path, json.dumps(body).encode(), "application/json")

    def upload(self, path: str, field_name: str, filename: str, data: bytes) -> dict[str, Any]:
        boundary = uuid.uuid4().hex
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                f'Content-Disposition: form-data; name="{field_name}"; '
                f'filename="{filename}"\r\n'.encode(),
                b"Content-Type: application/octet-stream\r\n\r\n",
                data,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        return self._call("POST", path, body, f"multipart/form-data; boundary={boundary}")

    def _call(self, method: str, path: str, body: bytes, content_type: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.base}/api/v1{path}", body, method=method)
        request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise ConfigError(f"hub API {method} {path}: HTTP {exc.code}: {detail}") from None


# --- the demo ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """What --check waits for, as far as it has come."""

    watchlist: str | None
    shed_alarm: str | None

    @property
    def both(self) -> bool:
        return self.watchlist is not None and self.shed_alarm is not None


class Demo:
    """Broker, hub, edge and sensors for one run; a context manager that stops them all.
    ``stopping`` is set by Ctrl-C / SIGTERM (see :func:`_demo`)."""

    def __init__(self, data: Path, models: Path, port: int | None) -> None:
        self.data, self.models, self.wanted_port = data, models, port
        self.port = 0
        self.stopping = threading.Event()
        self._tmp = tempfile.TemporaryDirectory(prefix="ringwatch-demo-")
        self.var = Path(self._tmp.name)
        self.children = Children(self.var)
        self.password = secrets.token_urlsafe(9)
        self.person_id: int | None = None
        self.broker: Any = None
        self.server: HubServer | None = None
        self.hub: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> Demo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        from ringwatch.hub.broker import PrivateMosquitto

        self.port, note = choose_port(self.wanted_port)
        if note is not None:
            print(note, flush=True)
        self.broker = PrivateMosquitto(self.var / "broker").start()
        self._start_hub()
        self._create_admin()
        self._enrol()
        site = edge_config(self.data, self.broker.url, self.var)
        self.children.start(
            "edge", ringwatch("edge", "run", "-c", str(site), "--models-dir", str(self.models))
        )
        self.children.start("sensors", self._sensor_argv())

    def _sensor_argv(self) -> list[str]:
        return ringwatch(
            "sim", "sensors", "--broker", self.broker.url, "--site", "campus-demo",
            "--shed", SHED, "--bays", str(BAYS), "--interval", "1", "--fault", FAULT,
        )  # fmt: skip

    def _start_hub(self) -> None:
        from ringwatch.hub.app import create_app
        from ringwatch.hub.inventory import load_hub_config
        from ringwatch.hub.settings import HubSettings

        secret = secrets.token_urlsafe(24)
        settings = HubSettings(
            database_url=f"sqlite:///{self.var / 'hub.sqlite3'}",
            broker_url=self.broker.url,
            jwt_secret=secret,
            template_key=secrets.token_urlsafe(24),
        )
        app = create_app(
            settings, load_hub_config(config_file("demo-hub.yaml")), models_dir=self.models
        )
        self.hub = app.state.hub
        self.server = HubServer(app, self.port)
        self.server.start()

    def _create_admin(self) -> None:
        from ringwatch.hub import crud
        from ringwatch.hub.roles import Role
        from ringwatch.hub.schemas import UserCreate

        data = UserCreate(username=ADMIN, password=self.password, role=Role.ADMIN)
        now = dt.datetime.now(dt.UTC)
        with self.hub.sessions.begin() as session:
            user = crud.create_user(session, data, now)
            crud.audit(session, crud.Actor("demo", "system"), "create", "user", user.id, now)

    def _enrol(self) -> None:
        api = HubClient(self.url.rstrip("/"))
        api.login(ADMIN, self.password)
        review = (dt.date.today() + dt.timedelta(days=90)).isoformat()
        person = api.post_json("/persons", {**PERSON, "review_due": review})
        self.person_id = int(person["id"])
        photo = self.data / "faces/watchlist_demo/lin-manuel-miranda.png"
        api.upload(f"/persons/{self.person_id}/photos", "photo", photo.name, photo.read_bytes())

    def found(self) -> Found:
        """The watch-list incident of the demo person and a shed alarm incident, if any."""
        import sqlalchemy as sa

        from ringwatch.hub.incident_tables import Incident

        with self.hub.sessions() as session:
            rows = session.scalars(sa.select(Incident).order_by(Incident.created_at)).all()
            match = next(
                (r for r in rows if r.kind == "watchlist" and r.person_id == self.person_id), None
            )
            shed = next((r for r in rows if r.kind == "shed" and r.level == "alarm"), None)
            return Found(
                None
                if match is None
                else f"{match.title} ({match.colour}, {match.ring} ring, {match.status})",
                None if shed is None else f"{shed.title} ({shed.level}, {shed.colour})",
            )

    def check(self, timeout_s: float) -> int:
        """Wait for both incidents; print one summary line; 0 when both came."""
        started = time.monotonic()
        seen: dict[str, float] = {}
        while time.monotonic() - started < timeout_s:
            dead = self._dead()
            if self.stopping.is_set():
                print("demo check: FAILED: interrupted")
                return 130
            if dead is not None:
                code = dead.process.returncode
                print(f"demo check: FAILED: {dead.name} exited with {code}: {dead.tail()}")
                return 1
            found = self.found()
            for name, value in (("watch-list", found.watchlist), ("shed alarm", found.shed_alarm)):
                if value is not None:
                    seen.setdefault(name, time.monotonic() - started)
            if found.both:
                print(
                    f"demo check: OK: watch-list incident {found.watchlist} after "
                    f"{seen['watch-list']:.0f} s; shed incident {found.shed_alarm} after "
                    f"{seen['shed alarm']:.0f} s"
                )
                return 0
            self.stopping.wait(1.0)
        found = self.found()
        missing = [
            n
            for n, v in (
                ("a watch-list incident for Lin-Manuel Miranda", found.watchlist),
                ("a shed alarm incident", found.shed_alarm),
            )
            if v is None
        ]
        print(
            f"demo check: FAILED: no {' and no '.join(missing)} within {timeout_s:g} s; "
            f"last log lines: {self._logs_hint()}"
        )
        return 1

    def _logs_hint(self) -> str:
        return "; ".join(f"{c.name}: {c.tail(300)!r}" for c in self.children.items)

    def _dead(self) -> Child | None:
        """A child that exited (a child stopped by the same Ctrl-C as us does not count)."""
        dead = self.children.dead()
        if dead is not None:
            self.stopping.wait(0.5)
        return None if self.stopping.is_set() else dead

    def watch(self) -> None:
        """Print each new incident until interrupted."""
        shown: set[str] = set()
        while not self.stopping.is_set():
            dead = self._dead()
            if dead is not None:
                raise ConfigError(
                    f"{dead.name} exited with {dead.process.returncode}: {dead.tail()}"
                )
            found = self.found()
            for line in (found.watchlist, found.shed_alarm):
                if line is not None and line not in shown:
                    shown.add(line)
                    print(f"incident: {line}", flush=True)
            self.stopping.wait(2.0)

    def stop(self) -> None:
        self.children.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        self._tmp.cleanup()


def _demo(args: argparse.Namespace) -> int:
    from ringwatch.models.licences import licence_notes
    from ringwatch.models.manifest import load_manifest

    manifest = load_manifest()
    for note in licence_notes(manifest.get(name) for name in DEMO_MODELS):
        print(note, flush=True)
    data = find_data(args.data)
    models = find_models(args.models)
    demo = Demo(data, models, args.port)

    def stop(signum: int, frame: FrameType | None) -> None:
        if demo.stopping.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C during start-up or shutdown
        demo.stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with demo:
            demo.start()
            if demo.stopping.is_set():
                return 130
            print(f"Ringwatch demo: open {demo.url} and log in as {ADMIN} / {demo.password}")
            print(
                f"  (edge agent and sensor logs in {demo.var}; Ctrl-C stops everything)", flush=True
            )
            if args.check:
                return demo.check(args.timeout)
            demo.watch()
    except KeyboardInterrupt:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("demo stopped; every process it started has exited", file=sys.stderr)
    return 130

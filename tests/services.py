"""Real services for tests: a private Mosquitto on a free port, PostgreSQL from an env var.

A missing piece fails with a message naming it, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PG_ENV = "RINGWATCH_TEST_PG_URL"
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if found is None:
        raise RuntimeError(
            "the tests need the `mosquitto` binary (Debian: apt-get install mosquitto); "
            "it was not found on PATH or at /usr/sbin/mosquitto"
        )
    return found


@dataclass
class Broker:
    """A private Mosquitto process; ``restart`` keeps its port and persistence file."""

    host: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\n"
            "max_queued_messages 100000\nlog_dest stderr\nlog_type error\nlog_type warning\n"
            "user root\n"
        )
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen([find_mosquitto(), "-c", str(conf)], stderr=log)
        _wait_for_port(self.host, self.port, self.process)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _wait_for_port(host: str, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {process.returncode} on port {port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {host}:{port} within 10 s")


@contextmanager
def private_broker(workdir: Path) -> Iterator[Broker]:
    broker = Broker("127.0.0.1", free_port(), workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def postgres_url() -> str:
    """The test PostgreSQL URL; raise naming the env var when it cannot be reached."""
    url = os.environ.get(PG_ENV, PG_DEFAULT)
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {url} ({type(exc).__name__}: {exc}); start it or "
            f"set {PG_ENV} to a SQLAlchemy URL of a database the tests may write to"
        ) from None
    return url


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


SHIPPED_MOSQUITTO_CONF = Path(__file__).resolve().parents[1] / "configs" / "mosquitto.conf"


GUARD_USER = "hub-guard"
GUARD_PASSWORD = "guard-secret"


def dynsec_plugin() -> Path:
    """Debian's dynamic-security plugin for this machine's architecture."""
    found = sorted(Path("/usr/lib").glob("*-linux-gnu/mosquitto_dynamic_security.so"))
    if not found:
        raise AssertionError("mosquitto_dynamic_security.so not found (Debian: mosquitto)")
    return found[0]


def dynsec_init(path: Path, admin: str = GUARD_USER, password: str = GUARD_PASSWORD) -> Path:
    """A fresh dynamic-security file with ``admin`` as its admin (mosquitto_ctrl dynsec init)."""
    ctrl = shutil.which("mosquitto_ctrl")
    if ctrl is None:
        raise AssertionError("mosquitto_ctrl not found (Debian: mosquitto)")
    path.unlink(missing_ok=True)
    subprocess.run(
        [ctrl, "dynsec", "init", str(path), admin, password], check=True, capture_output=True
    )
    return path


def shipped_mosquitto_conf(port: int, passwd: Path, acl: Path, persistence: Path) -> str:
    """configs/mosquitto.conf as shipped, for a test broker: its listener on 127.0.0.1:``port``
    without TLS (the tests have no certificates), the files at the given paths, logs at
    notice level; every other line (auth, client ids, limits) unchanged. The plugin's file
    is ``persistence/dynsec.json``, made fresh (admin :data:`GUARD_USER`) if missing."""
    dynsec = persistence / "dynsec.json"
    if not dynsec.exists():
        dynsec_init(dynsec)
    out = []
    for line in SHIPPED_MOSQUITTO_CONF.read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key in ("cafile", "certfile", "keyfile"):
            continue
        replaced = {
            "listener": f"listener {port} 127.0.0.1",
            "password_file": f"password_file {passwd}",
            "acl_file": f"acl_file {acl}",
            "persistence_location": f"persistence_location {persistence}/",
            "plugin": f"plugin {dynsec_plugin()}",
            "plugin_opt_config_file": f"plugin_opt_config_file {dynsec}",
        }
        out.append(replaced.get(key, line))
    out += ["log_type error", "log_type warning", "log_type notice"]
    out.append("user root")  # started as root it would drop to `mosquitto` and not read them
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class ShippedBroker:
    """A Mosquitto running the shipped config (see :func:`shipped_broker`)."""

    port: int
    work: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.work / "mosquitto.log"

    @property
    def conf(self) -> Path:
        return self.work / "mosquitto.conf"


@contextmanager
def shipped_broker(
    work: Path, logins: dict[str, str], guard_password: str = GUARD_PASSWORD
) -> Iterator[ShippedBroker]:
    """Mosquitto with the shipped configs/mosquitto.conf and mosquitto.acl (no TLS), a
    password file of ``logins`` (user -> password, hashed by ``mosquitto_passwd -U``) and
    the dynamic-security plugin with :data:`GUARD_USER` as its admin; stopped at the end."""
    work.mkdir(parents=True, exist_ok=True)
    passwd, acl = work / "ringwatch.passwd", work / "ringwatch.acl"
    passwd.write_text("".join(f"{user}:{password}\n" for user, password in logins.items()))
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-U", str(passwd)], check=True, capture_output=True, timeout=30)
    shutil.copyfile(SHIPPED_MOSQUITTO_CONF.with_name("mosquitto.acl"), acl)
    dynsec_init(work / "dynsec.json", GUARD_USER, guard_password)
    broker = ShippedBroker(free_port(), work)
    broker.conf.write_text(shipped_mosquitto_conf(broker.port, passwd, acl, work))
    with broker.log.open("ab") as err:
        process = subprocess.Popen([find_mosquitto(), "-c", str(broker.conf)], stderr=err)
    try:
        _wait_for_port("127.0.0.1", broker.port, process)
        yield broker
    finally:
        process.terminate()
        process.wait(timeout=10)

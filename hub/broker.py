"""A private Mosquitto on a free local port, for a hub started without a broker URL (and for
the demo). Stopped cleanly by :meth:`PrivateMosquitto.stop` or the context manager.

amqtt is not used as a fallback: it cannot do MQTT 5, ``$share`` subscriptions or
redelivery (see FACTS.md), all of which the hub's ingest relies on.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from ringwatch.errors import ConfigError

DEBIAN_PATH = "/usr/sbin/mosquitto"
MAX_PACKET_BYTES = 1048576  # twice the contract's MAX_MESSAGE_BYTES (512 kB)


def find_mosquitto() -> str:
    """Path of the mosquitto binary; ConfigError naming it when missing."""
    found = shutil.which("mosquitto") or (DEBIAN_PATH if os.path.exists(DEBIAN_PATH) else None)
    if found is None:
        raise ConfigError(
            "no broker_url is set and the `mosquitto` binary was not found on PATH or at "
            f"{DEBIAN_PATH}; install it (Debian: apt-get install mosquitto) or set "
            "RINGWATCH_HUB_BROKER_URL"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateMosquitto:
    """One Mosquitto process with persistence in ``workdir``; ``url`` once started."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def config_text(self) -> str:
        user = pwd.getpwuid(os.geteuid()).pw_name
        return (
            f"listener {self.port} {self.host}\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\n"
            "max_queued_messages 100000\nmax_inflight_messages 1000\n"
            # The contract's MAX_MESSAGE_BYTES is 512 kB: refuse far larger packets at the
            # broker; what is oversized but under this reaches the hub's dead letters.
            f"max_packet_size {MAX_PACKET_BYTES}\n"
            f"log_dest stderr\nlog_type error\nlog_type warning\nuser {user}\n"
        )

    def start(self, timeout_s: float = 10.0) -> PrivateMosquitto:
        binary = find_mosquitto()
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.config_text())
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen([binary, "-c", str(conf)], stderr=log)
        self._wait(timeout_s)
        return self

    def _wait(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "mosquitto.log").read_text(errors="replace")[-500:]
                raise ConfigError(f"mosquitto exited with {self.process.returncode}: {log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ConfigError(f"mosquitto did not listen on {self.host}:{self.port} in {timeout_s}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> PrivateMosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

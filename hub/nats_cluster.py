"""A private 3-node NATS cluster (JetStream + MQTT listeners) for tests and ``hub soak``.

Each node is Debian's ``nats-server`` started as a child of this process (FACTS: started
from a shell that exits they linger as zombies) with its own store directory, a cluster
route to the others, a client port and an MQTT port. :meth:`NatsCluster.kill` SIGKILLs a
node and :meth:`NatsCluster.start_node` brings it back on the same ports and store.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ringwatch.errors import ConfigError

NATS_SERVER_CANDIDATES = ("/usr/sbin/nats-server", "/usr/bin/nats-server")


def find_nats_server() -> str:
    found = shutil.which("nats-server")
    for path in (found, *NATS_SERVER_CANDIDATES):
        if path and Path(path).exists():
            return path
    raise ConfigError(
        "nats-server not found: install Debian's package (apt-get install nats-server)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    monitor_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class NatsCluster:
    workdir: Path
    size: int = 3
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(1, self.size + 1):
            port = [free_port() for _ in range(4)]
            self.nodes.append(
                NatsNode(f"n{i}", port[0], port[1], port[2], port[3], self.workdir / f"n{i}")
            )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """All nodes, comma-separated (the hub's ``nats_url``)."""
        return ",".join(self.urls)

    def start(self, timeout_s: float = 20.0) -> NatsCluster:
        for node in self.nodes:
            self.start_node(node, wait=False)
        for node in self.nodes:
            self._wait_ready(node, timeout_s)
        self.wait_jetstream(timeout_s)
        return self

    def _config(self, node: NatsNode) -> str:
        routes = ", ".join(
            f"nats://127.0.0.1:{n.cluster_port}" for n in self.nodes if n is not node
        )
        store = node.workdir / "js"
        return (
            f"server_name: {node.name}\nlisten: 127.0.0.1:{node.client_port}\n"
            f"http: 127.0.0.1:{node.monitor_port}\n"
            f"jetstream {{ store_dir: {json.dumps(str(store))} }}\n"
            f"cluster {{ name: ringwatch, listen: 127.0.0.1:{node.cluster_port},"
            f" routes: [{routes}] }}\n"
            f"mqtt {{ listen: 127.0.0.1:{node.mqtt_port} }}\n"
        )

    def start_node(self, node: NatsNode, wait: bool = True) -> None:
        node.workdir.mkdir(parents=True, exist_ok=True)
        conf = node.workdir / "nats.conf"
        conf.write_text(self._config(node), encoding="utf-8")
        with (node.workdir / "nats.log").open("ab") as log:
            node.process = subprocess.Popen(
                [find_nats_server(), "-c", str(conf)], stdout=log, stderr=log
            )
        if wait:
            self._wait_ready(node, 20.0)

    def _wait_ready(self, node: NatsNode, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                log = (node.workdir / "nats.log").read_text(errors="replace")[-2000:]
                raise ConfigError(f"nats-server {node.name} exited: {log}")
            try:
                for port in (node.client_port, node.mqtt_port):
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        pass
                return
            except OSError:
                time.sleep(0.1)
        raise ConfigError(f"nats-server {node.name} did not open its ports in {timeout_s} s")

    def _jsz(self, node: NatsNode) -> dict[str, object]:
        url = f"http://127.0.0.1:{node.monitor_port}/jsz?streams=true"
        with urllib.request.urlopen(url, timeout=2) as response:
            data: dict[str, object] = json.load(response)
            return data

    def wait_jetstream(self, timeout_s: float = 20.0) -> None:
        """Until the JetStream meta group has a leader seen by every running node."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                metas = [self._jsz(n).get("meta_cluster") for n in self.nodes if n.running]
                if metas and all(isinstance(m, dict) and m.get("leader") for m in metas):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise ConfigError(f"NATS JetStream had no meta leader within {timeout_s} s")

    def stream_leader(self, stream: str) -> NatsNode | None:
        """The node leading ``stream`` (from the monitoring endpoint), if known."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                data = self._jsz(node)
            except OSError:
                continue
            for account in data.get("account_details", []) or []:  # type: ignore[attr-defined]
                for info in account.get("stream_detail", []) or []:
                    cluster = info.get("cluster", {})
                    if info.get("name") == stream and cluster.get("leader"):
                        leader = cluster["leader"]
                        return next((n for n in self.nodes if n.name == leader), None)
        return None

    def kill(self, node: NatsNode) -> None:
        if node.process is not None:
            node.process.kill()
            node.process.wait(timeout=10)
            node.process = None

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
                node.process = None

"""Ingest under hostile input: the rate of valid events with and without malformed payloads
mixed in, through a real Mosquitto into a real hub (SQLite), and what the bad ones did.

    .venv/bin/python tools/fuzz_bench.py [--valid 500] [--bad 10000]

Prints a table: payloads tried, valid events stored (once each), dead letters, hub errors,
whether the ingest thread is alive, RSS before/after, the clean rate, the rate under bad
input and their ratio, then the MQTT ceiling: the messages/s a paho receiver that only
acks takes from the same publisher (the valid rate under bad input cannot exceed that
ceiling x the valid share, 1/21 at the defaults). Exits 1 when the ratio is under 0.8,
anything was lost or doubled, or the hub's RSS grew over RSS_GROWTH_MB after
malloc_trim(0) (twice that before it) (the benchmark's assertions; the unit tests assert
no timing). ``--tracemalloc`` prints the hub's top Python allocation growth. Run it on an
idle machine: figures taken while other work runs are floors.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.fuzz_payloads: the fuzz suite's payload makers

from ringwatch.edge.mqtt import MqttClient  # noqa: E402
from ringwatch.hub.app import Hub, build_hub  # noqa: E402
from ringwatch.hub.broker import PrivateMosquitto  # noqa: E402
from ringwatch.hub.ingest import Inbound  # noqa: E402
from ringwatch.hub.inventory import HubConfig  # noqa: E402
from ringwatch.hub.mqtt import BrokerAddress, MqttLink, ingest_subscriptions  # noqa: E402
from ringwatch.hub.settings import HubSettings  # noqa: E402
from tests import fuzz_payloads as fz  # noqa: E402
from tests.hub_fixtures import HUB_CONFIG  # noqa: E402

RSS_GROWTH_MB = 60  # bound on the hub's RSS growth over both runs (was ~190 MB)
EVENT_TOPIC = f"{fz.P}/events/{fz.SITE}/{fz.DEVICE}/intrusion"


def rough_malformed(rng: random.Random) -> tuple[str, bytes]:
    """One payload certain to break the contract, on a random hub topic (a cheap stand-in
    for the hypothesis strategies, for volume)."""
    topic, kind = rng.choice(sorted(fz.HUB_TOPICS.items()))
    pick = rng.random()
    if pick < 0.2:
        return topic, rng.randbytes(rng.randint(0, 200)).replace(b"{", b"")
    if pick < 0.3:
        return topic, fz.bomb(rng.randint(100, 20000))
    if pick < 0.35:
        return topic, fz.OVERSIZED
    body = fz.valid(kind)
    if pick < 0.5:
        body[rng.choice(sorted(body))] = "9999-12-31T23:59:59Z"
    body[f"fuzz_{rng.randint(0, 999)}"] = rng.choice([None, 1, "x", [1, 2], {"a": 1}])
    return topic, json.dumps(body).encode()


def publish(url: str, valid: int, bad: int, seed: int) -> None:
    """Publish ``valid`` events with ``bad`` malformed payloads spread among them (run in a
    child process, so the hub's RSS is the hub's own)."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    client = MqttClient(url, f"fuzz-bench-{uuid.uuid4().hex[:6]}")
    client.start()
    assert client.wait_connected(10)
    per = bad / valid if valid else 0
    sent_bad = 0
    for i in range(valid):
        while sent_bad < round((i + 1) * per):
            _publish(client, *rough_malformed(rng))
            sent_bad += 1
        _publish(client, EVENT_TOPIC, json.dumps(fz.valid("event")).encode())
    # in order: once the broker has acked this one, it has all of them
    assert client.publish_wait("fuzz-bench/done", b"1", timeout=300)  # a topic no one reads
    print(f"publisher: {valid + bad} sent in {time.monotonic() - t0:.2f}s", file=sys.stderr)
    client.close()


def flood(url: str, rate: float, seconds: float, seed: int) -> None:
    """Publish malformed payloads paced at ``rate`` per second for ``seconds`` (a device
    gone wrong, or an attacker with a device's login), from its own client (child process)."""
    rng = random.Random(seed)
    client = MqttClient(url, f"fuzz-flood-{uuid.uuid4().hex[:6]}")
    client.start()
    assert client.wait_connected(10)
    t0 = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - t0 < seconds:
        due = int((now - t0) * rate)
        while sent < due:
            _publish(client, *rough_malformed(rng))
            sent += 1
        time.sleep(0.002)
    client.close()


def _publisher(url: str, valid: int, bad: int, seed: int) -> subprocess.Popen[bytes]:
    """:func:`publish` in a child process (so the hub's RSS is the hub's own)."""
    args = ["--publish-to", url, "--valid", str(valid), "--bad", str(bad), "--seed", str(seed)]
    return subprocess.Popen([sys.executable, __file__, *args])


def _since(hub: Hub) -> Callable[[str], int]:
    """A reader of how far one of the hub's counters moved from now on."""
    before = hub.stats.snapshot()
    return lambda key: hub.stats.snapshot()[key] - before[key]


def run_flooded(hub: Hub, url: str, valid: int, rate: float, seed: int) -> dict[str, float]:
    """Valid events from one publisher as fast as it goes while another floods malformed
    payloads at ``rate``/s (0: clean). The rate is valid events stored per second from the
    first to the last stored; ``bad_rate`` the malformed messages the hub dead-lettered per
    second over the same window (the flood it actually absorbed)."""
    flooder = None
    taken = _since(hub)
    if rate > 0:
        cmd = [sys.executable, __file__, "--flood-to", url, "--flood-rate", str(rate)]
        flooder = subprocess.Popen([*cmd, "--seed", str(seed + 1)])
        deadline = time.monotonic() + 30
        while taken("dead_letters") < rate and time.monotonic() < deadline:
            time.sleep(0.01)  # the flood is running before the valid events start
    try:
        child = _publisher(url, valid, 0, seed)
        deadline = time.monotonic() + 600
        while taken("stored") == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        start, dead_at_start = time.monotonic(), taken("dead_letters")
        while taken("stored") < valid and time.monotonic() < deadline:
            time.sleep(0.002)
        elapsed = time.monotonic() - start
        dead = taken("dead_letters") - dead_at_start
        child.wait(timeout=600)
    finally:
        if flooder is not None:
            flooder.kill()
            flooder.wait()
    return {
        "stored": taken("stored"),
        "rate": (valid - 1) / elapsed,
        "bad_rate": dead / elapsed,
        "errors": taken("errors"),
    }


def flood_table(hub: Hub, url: str, valid: int, rates: list[float], rounds: int, seed: int) -> bool:
    """Clean and flooded runs side by side, their order swapped every round (the database
    grows run by run, so a fixed order would favour the first); True when every valid
    event was stored once and nothing raised."""
    from ringwatch.table import render_table

    rows = []
    ok = True
    for rate in rates:
        for round_ in range(rounds):
            order = (0.0, rate) if round_ % 2 == 0 else (rate, 0.0)
            runs = {r: run_flooded(hub, url, valid, r, seed) for r in order}
            clean, dirty = runs[0.0], runs[rate]
            ok = ok and clean["stored"] == dirty["stored"] == valid
            ok = ok and clean["errors"] == dirty["errors"] == 0
            rows.append(
                (
                    f"{rate:,.0f}",
                    "clean first" if round_ % 2 == 0 else "flooded first",
                    f"{dirty['bad_rate']:,.0f}",
                    f"{clean['rate']:,.0f}",
                    f"{dirty['rate']:,.0f}",
                    f"{dirty['rate'] / clean['rate']:.2f}",
                    f"{dirty['stored']:.0f} of {valid}",
                )
            )
    headers = (
        "flood offered msg/s",
        "order",
        "flood absorbed msg/s",
        "valid ev/s clean",
        "valid ev/s flooded",
        "ratio",
        "valid stored",
    )
    print(render_table(headers, rows))
    return ok


def run(hub: Hub, url: str, valid: int, bad: int, seed: int) -> dict[str, float]:
    """The rate is valid events stored per second, from the hub's first message of the run
    to its last valid event stored."""
    taken = _since(hub)
    child = _publisher(url, valid, bad, seed)
    deadline = time.monotonic() + 600
    while taken("received") == 0 and time.monotonic() < deadline:
        time.sleep(0.002)
    start = time.monotonic()
    while taken("stored") < valid and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.monotonic() - start
    child.wait(timeout=600)
    while taken("received") < valid + bad and time.monotonic() < deadline:
        time.sleep(0.01)
    return {
        "payloads": valid + bad,
        "stored": taken("stored"),
        "dead": taken("dead_letters"),
        "errors": taken("errors"),
        "seconds": elapsed,
        "rate": valid / elapsed,
        "messages_rate": (valid + bad) / elapsed,
    }


def _publish(client: MqttClient, topic: str, payload: bytes) -> None:
    while not client.publish(topic, payload, qos=1):  # the client's queue is full: wait
        time.sleep(0.001)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def transport_ceiling(url: str, valid: int, bad: int, seed: int) -> float:
    """Messages/s a paho receiver that only acks (no parsing, no database) takes from the
    same publisher: the most any hub on this MQTT stack could take, good or bad."""
    got: list[float] = []

    def on_message(message: Inbound) -> None:
        got.append(time.monotonic())
        link.ack(message.mid, message.qos)

    link = MqttLink(
        BrokerAddress.from_url(url), "fuzz-bench-ceiling", ingest_subscriptions("ceil"), on_message
    )
    link.start()
    try:
        assert link.connected.wait(10)
        if _publisher(url, valid, bad, seed).wait() != 0:
            raise RuntimeError("the publisher failed")
        deadline = time.monotonic() + 120
        while len(got) < valid + bad and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        link.stop()
    return len(got) / (got[-1] - got[0]) if len(got) > 1 else 0.0


def malloc_trim() -> bool:
    """Hand freed heap pages back to the system (glibc); False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.malloc_trim(0)
    return True


@contextmanager
def bench_hub(seed: int) -> Iterator[tuple[Hub, PrivateMosquitto]]:
    """A private Mosquitto and a hub on SQLite ingesting from it, warmed up; both stopped
    at the end (``hub.stop()`` may come earlier)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-bench-") as tmp:
        broker = PrivateMosquitto(Path(tmp) / "mq").start()
        try:
            tag = uuid.uuid4().hex[:6]
            settings = HubSettings(
                database_url=f"sqlite:///{tmp}/hub.sqlite3",
                broker_url=broker.url,
                jwt_secret="fuzz-bench-secret-1",
                template_key="fuzz-bench-secret-2",
            )
            config = HubConfig.model_validate(
                {**HUB_CONFIG, "ingest": {"group": f"g{tag}", "worker": f"w{tag}"}}
            )
            hub = build_hub(settings, config)
            hub.start(ingest=True)
            try:
                assert hub.link is not None and hub.link.connected.wait(10)
                run(hub, broker.url, 50, 0, seed)  # warm-up
                yield hub, broker
            finally:
                hub.stop()
        finally:
            broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--valid", type=int, default=500)
    parser.add_argument("--bad", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="print the hub's top allocation growth"
    )
    parser.add_argument(
        "--flood",
        type=float,
        nargs="+",
        metavar="MSG_PER_S",
        help="instead: valid events from one publisher while another floods malformed"
        " payloads at each of these rates, each run beside a clean one",
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --flood: rounds per rate")
    parser.add_argument("--publish-to", help=argparse.SUPPRESS)  # the child processes
    parser.add_argument("--flood-to", help=argparse.SUPPRESS)
    parser.add_argument("--flood-rate", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_to:
        publish(args.publish_to, args.valid, args.bad, args.seed)
        return 0
    if args.flood_to:
        flood(args.flood_to, args.flood_rate, 600, args.seed)
        return 0
    if args.flood:
        with bench_hub(args.seed) as (hub, broker):
            ok = flood_table(hub, broker.url, args.valid, args.flood, args.rounds, args.seed)
        return 0 if ok else 1
    with bench_hub(args.seed) as (hub, broker):
        if args.tracemalloc:
            tracemalloc.start(8)
            snap_before = tracemalloc.take_snapshot()
        rss_before = rss_mb()
        clean = run(hub, broker.url, args.valid, 0, args.seed)
        dirty = run(hub, broker.url, args.valid, args.bad, args.seed)
        alive = hub.worker is not None and hub.worker.running
        time.sleep(1)  # the last acks and receipts
        rss_after = rss_mb()
        if args.tracemalloc:
            growth = tracemalloc.take_snapshot().compare_to(snap_before, "traceback")
            print("top allocation growth (tracemalloc) over the two runs:")
            for stat in growth[:8]:
                print(f"  {stat.size_diff / 1e6:+8.2f} MB {stat.count_diff:+7d} blocks")
                for line in stat.traceback.format()[-6:]:
                    print("     ", line)
            traced = sum(s.size_diff for s in growth) / 1e6
            print(f"  total traced growth {traced:+.1f} MB")
        gc.collect()
        trimmed = malloc_trim()
        rss_trimmed = rss_mb()
        hub.stop()  # before the ceiling: nothing else takes the broker's messages
        ceiling = transport_ceiling(broker.url, args.valid, args.bad, args.seed)
    ratio = dirty["rate"] / clean["rate"]
    rows = [
        (
            "payloads tried (valid + malformed)",
            f"{clean['payloads']:.0f} / {dirty['payloads']:.0f}",
        ),
        ("valid events stored", f"{clean['stored']:.0f} / {dirty['stored']:.0f} of {args.valid}"),
        ("dead letters", f"{clean['dead']:.0f} / {dirty['dead']:.0f}"),
        ("hub errors (exceptions)", f"{clean['errors']:.0f} / {dirty['errors']:.0f}"),
        ("ingest thread alive", "yes" if alive else "NO"),
        ("hub RSS before -> after, MB", f"{rss_before:.0f} -> {rss_after:.0f}"),
        (
            "hub RSS after malloc_trim(0), MB",
            f"{rss_trimmed:.0f} (growth {rss_trimmed - rss_before:+.0f})" if trimmed else "n/a",
        ),
        ("valid events/s clean", f"{clean['rate']:.0f}"),
        ("valid events/s under bad input", f"{dirty['rate']:.0f}"),
        (
            "all messages/s clean / under bad",
            f"{clean['messages_rate']:.0f} / {dirty['messages_rate']:.0f}",
        ),
        ("ratio (target >= 0.80)", f"{ratio:.2f}"),
        ("MQTT ceiling: messages/s an ack-only receiver takes", f"{ceiling:.0f}"),
        (
            "  -> most valid events/s at this mix (ceiling x valid share)",
            f"{ceiling * args.valid / (args.valid + args.bad):.0f}",
        ),
        ("hub share of that ceiling under bad input", f"{dirty['messages_rate'] / ceiling:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'':{width}}  clean / under bad input")
    for key, value in rows:
        print(f"{key:{width}}  {value}")
    ok = (
        ratio >= 0.8
        and alive
        and clean["stored"] == dirty["stored"] == args.valid
        and dirty["dead"] == args.bad
        and (not trimmed or rss_trimmed - rss_before < RSS_GROWTH_MB)
        and rss_after - rss_before < 2 * RSS_GROWTH_MB
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

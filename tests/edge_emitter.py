"""A tiny edge process for the kill test: generates events into the outbox and pumps them.

Run as ``python tests/edge_emitter.py --broker URL --outbox FILE --count N --rate R``. For each
event it prints ``put <id>`` before storing it and ``ok <id>`` once it is on disk, so a test
that SIGKILLs it knows which ids must arrive (``ok``) and which may (``put`` only). After
generating it prints ``generated`` and keeps pumping until SIGTERM.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import threading
import time
from pathlib import Path

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Phase
from ringwatch.contract.topics import EventKind
from ringwatch.edge.config import BrokerConfig
from ringwatch.edge.outbox import Outbox
from ringwatch.edge.uplink import Uplink, device_client

PHASES = (Phase.START, Phase.UPDATE, Phase.END)


def make_event(site: str, device: str, n: int) -> Event:
    return Event(
        event_id=new_event_id(),
        captured_at=dt.datetime.now(dt.UTC),
        site=site,
        device=device,
        camera="gate",
        kind=EventKind.ZONE,
        phase=PHASES[n % 3],
        zone_id="inner",
        track_id=n,
        frame_width=640,
        frame_height=480,
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--outbox", type=Path, required=True)
    p.add_argument("--site", default="campus")
    p.add_argument("--device", default="box1")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--receipt-timeout", type=float, default=3.0)
    args = p.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    outbox = Outbox(args.outbox, max_events=100_000)
    client = device_client(BrokerConfig(url=args.broker), args.site, args.device, "test")
    uplink = Uplink(outbox, client, args.site, args.device, args.receipt_timeout)
    uplink.start()
    client.start()
    pump = threading.Thread(target=uplink.run, args=(stop,), daemon=True)
    pump.start()
    for n in range(args.count):
        if stop.is_set():
            break
        event = make_event(args.site, args.device, n)
        print(f"put {event.event_id}", flush=True)
        uplink.put(event)
        print(f"ok {event.event_id}", flush=True)
        time.sleep(1.0 / args.rate)
    print("generated", flush=True)
    stop.wait()
    pump.join(5)
    client.close()
    print(f"counters {uplink.counters()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``ringwatch sim sensors``: publish simulated shed sensor readings (for tests and the demo)."""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
from typing import Any

from ringwatch.errors import ConfigError


def register(sub: Any) -> None:
    """Add ``ringwatch sim ...`` to the ``ringwatch`` parser."""
    parser = sub.add_parser("sim", help="simulators for tests and the demo")
    ssub = parser.add_subparsers(dest="sim_command", required=True, metavar="WHAT")
    p = ssub.add_parser("sensors", help="publish shed sensor readings with injectable faults")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://host:port")
    p.add_argument("--site", required=True, help="site id")
    p.add_argument("--shed", required=True, help="shed id")
    p.add_argument("--bays", type=int, default=4, help="number of bays (b1..bN)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="BAY:KIND[@AFTER_S]",
        help="overcurrent, voltage_sag or overheating on a bay, e.g. b2:overheating@30",
    )
    p.add_argument("--count", type=int, default=0, help="rounds to publish (0: until Ctrl-C)")
    p.add_argument("--seed", type=int, default=None, help="random seed (repeatable readings)")
    p.add_argument("--username", default=None, help="MQTT user name")
    p.add_argument("--password", default=None, help="MQTT password")
    p.set_defaults(func=_sensors)


def _sensors(args: argparse.Namespace) -> int:
    from ringwatch.contract.errors import ContractError
    from ringwatch.contract.messages import encode
    from ringwatch.contract.topics import check_segment, sensor_topic
    from ringwatch.edge.mqtt import MqttClient, MqttError
    from ringwatch.edge.sensors_sim import Fault, SensorSimulator

    if not 1 <= args.bays <= 64 or args.interval <= 0 or args.count < 0:
        raise ConfigError("need 1 <= --bays <= 64, --interval > 0 and --count >= 0")
    try:
        check_segment(args.site, "--site")
        check_segment(args.shed, "--shed")
    except ContractError as exc:
        raise ConfigError(str(exc)) from None
    bays = [f"b{i + 1}" for i in range(args.bays)]
    faults = [Fault.parse(f) for f in args.fault]
    sim = SensorSimulator(
        args.site, args.shed, bays, faults, random.Random(args.seed), dt.datetime.now(dt.UTC)
    )
    client = MqttClient(
        args.broker,
        f"ringwatch-sim-{args.site}-{args.shed}",
        username=args.username,
        password=args.password,
        session_expiry_s=0,  # publishes only: nothing to keep between runs
    )
    client.start()
    try:
        if not client.wait_connected(10):
            raise MqttError(f"cannot reach the broker at {args.broker} within 10 s")
        n = 0
        while args.count == 0 or n < args.count:
            if n:
                time.sleep(args.interval)
            readings = sim.readings(dt.datetime.now(dt.UTC))
            for r in readings:
                topic = sensor_topic(r.site, r.shed, r.bay)
                if not client.publish_wait(topic, encode(r), qos=1):
                    raise MqttError(f"broker did not accept the reading on {topic}")
            print(
                " | ".join(
                    f"{r.bay} {r.current_a:5.2f} A {r.voltage_v:5.2f} V {r.temperature_c:5.1f} °C"
                    for r in readings
                ),
                flush=True,
            )
            n += 1
    finally:
        client.close()
    return 0

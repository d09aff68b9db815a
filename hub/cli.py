"""``ringwatch hub``: serve, migrate, create-user, bench. Heavy imports stay in handlers."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from ringwatch.errors import ConfigError


def register(sub: Any) -> None:
    """Add ``ringwatch hub ...`` to the parser."""
    hub = sub.add_parser("hub", help="the central hub service")
    cmds = hub.add_subparsers(dest="hub_command", required=True, metavar="COMMAND")

    serve = cmds.add_parser("serve", help="run the hub (API + MQTT ingest)")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--models", type=Path, default=None, help="models folder")
    serve.set_defaults(func=_serve)

    migrate = cmds.add_parser("migrate", help="create or upgrade the database schema")
    _common(migrate)
    migrate.set_defaults(func=_migrate)

    user = cmds.add_parser("create-user", help="create a user (e.g. the first admin)")
    _common(user)
    user.add_argument("--username", required=True)
    user.add_argument("--role", default="admin")
    user.add_argument("--station", action="append", default=[], help="station scope")
    user.add_argument("--manager", action="append", default=[], help="manager scope")
    user.add_argument("--site", action="append", default=[], help="site scope")
    user.add_argument(
        "--password-env",
        default="RINGWATCH_HUB_NEW_PASSWORD",
        help="environment variable holding the password (else prompt, or one line on stdin)",
    )
    user.set_defaults(func=_create_user)

    _register_soak(cmds)
    bench = cmds.add_parser("bench", help="ingest rate and 1:N match time, as a table")
    bench.add_argument("--events", type=int, default=2000, help="events per ingest run")
    bench.add_argument("--pg-url", default=None, help="also measure on this PostgreSQL URL")
    bench.add_argument("--sizes", default="10000,100000", help="template counts for 1:N")
    bench.add_argument(
        "--faces-data",
        type=Path,
        default=None,
        help="data folder (../shared/data): also print the 1:N threshold trade-off table",
    )
    bench.add_argument("--models", type=Path, default=None, help="models folder")
    bench.set_defaults(func=_bench)


def _register_soak(cmds: Any) -> None:
    soak = cmds.add_parser(
        "soak",
        help="N hub workers on PostgreSQL behind NATS or Mosquitto, a worker and a broker"
        " node killed mid-stream: a table of what was lost or doubled",
    )
    soak.add_argument("--broker", choices=["nats", "mosquitto"], default="nats")
    soak.add_argument("--workers", type=int, default=3, help="hub serve processes")
    soak.add_argument("--events", type=int, default=5000, help="messages from the 4 edges")
    soak.add_argument("--runs", type=int, default=1, help="runs in a row")
    soak.add_argument("--pg-url", default=None, help="PostgreSQL (a private schema is made)")
    soak.add_argument("--rate", type=float, default=60.0, help="messages/s offered per edge")
    soak.add_argument(
        "--no-kill", action="store_true", help="kill nothing (throughput runs: a high --rate)"
    )
    soak.set_defaults(func=_soak)


def _soak(args: argparse.Namespace) -> int:
    from ringwatch.hub.soak import run_soak, table

    if not 1 <= args.workers <= 8 or not 100 <= args.events <= 100_000:
        raise ConfigError("hub soak: --workers 1-8 and --events 100-100000")
    results = []
    for _ in range(args.runs):
        results.append(
            run_soak(
                args.broker,
                args.workers,
                args.events,
                args.pg_url,
                kill=not args.no_kill,
                rate=args.rate,
            )
        )
        print(table(results[-1:]), flush=True)
    if args.runs > 1:
        print(table(results))
    bad = [
        r
        for r in results
        if r.lost
        or r.doubled
        or r.incidents_doubled
        or r.alerts_doubled
        or r.webhooks_doubled
        or r.escalations_doubled
    ]
    return 1 if bad else 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", type=Path, default=None, help="hub settings YAML")
    parser.add_argument(
        "--config", type=Path, default=None, help="hub config file: stations, sites, devices"
    )


def _settings(args: argparse.Namespace) -> Any:
    from ringwatch.hub.settings import load_hub_settings

    return load_hub_settings(args.settings)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ringwatch.hub.app import create_app
    from ringwatch.hub.inventory import HubConfig, load_hub_config

    settings = _settings(args)
    settings.check_secrets()
    config = load_hub_config(args.config) if args.config else HubConfig()
    app = create_app(settings, config, models_dir=args.models)
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=2)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from ringwatch.hub.db import current_revision, make_engine, migrate

    engine = make_engine(_settings(args).database_url)
    migrate(engine)
    print(f"database at revision {current_revision(engine)}")
    engine.dispose()
    return 0


def _password(env: str) -> str:
    if os.environ.get(env):
        return os.environ[env]
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise ConfigError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _create_user(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ringwatch.configfile import format_config_errors
    from ringwatch.hub import crud
    from ringwatch.hub.clock import utc_now
    from ringwatch.hub.db import make_engine, migrate, session_factory
    from ringwatch.hub.schemas import UserCreate

    try:
        data = UserCreate(
            username=args.username,
            password=_password(args.password_env),
            role=args.role,
            stations=args.station,
            managers=args.manager,
            sites=args.site,
        )
    except ValidationError as exc:
        raise ConfigError(format_config_errors(exc, "create-user")) from None
    engine = make_engine(_settings(args).database_url)
    migrate(engine)
    from sqlalchemy.exc import IntegrityError

    try:
        with session_factory(engine).begin() as session:
            user = crud.create_user(session, data, utc_now())
            crud.audit(session, crud.Actor("cli", "system"), "create", "user", user.id, utc_now())
    except IntegrityError:
        raise ConfigError(f"user {args.username!r} already exists") from None
    finally:
        engine.dispose()
    print(f"created {data.role.value} {data.username}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ringwatch.hub.bench import run_bench

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(run_bench(args.events, args.pg_url, sizes))
    if args.faces_data is not None:
        from ringwatch.hub.bench import threshold_table
        from ringwatch.models.manifest import default_models_dir

        print(threshold_table(args.models or default_models_dir(), args.faces_data))
    return 0

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
    bench.add_argument(
        "--events", type=int, default=2000, help="events per ingest run (0: no ingest run)"
    )
    bench.add_argument("--pg-url", default=None, help="also measure on this PostgreSQL URL")
    bench.add_argument(
        "--sizes", default="10000,100000,1000000", help="template counts for 1:N ('' = none)"
    )
    bench.add_argument(
        "--cold-start",
        action="store_true",
        help="also time a worker's start at the largest size (decrypt all, then snapshot)",
    )
    bench.add_argument(
        "--no-thresholds",
        action="store_true",
        help="with --faces-data: skip the threshold trade-off table (LFW faces still mixed in)",
    )
    bench.add_argument(
        "--faces-data",
        type=Path,
        default=None,
        help="data folder (../shared/data): also print the 1:N threshold trade-off table",
    )
    bench.add_argument("--models", type=Path, default=None, help="models folder")
    bench.set_defaults(func=_bench)
    _evidence_commands(cmds)  # issue 14


def _evidence_commands(cmds: Any) -> None:
    """Issue 14: device upload keys, the export signing key, and checking an export."""
    key = cmds.add_parser("device-key", help="print an edge device's media upload key (hex)")
    _common(key)
    key.add_argument("site")
    key.add_argument("device")
    key.set_defaults(func=_device_key)
    pub = cmds.add_parser("export-key", help="print the public key that signs case exports")
    _common(pub)
    pub.set_defaults(func=_export_key)
    verify = cmds.add_parser("verify-export", help="check a case export's signature and digests")
    _common(verify)
    verify.add_argument("file", type=Path)
    verify.add_argument(
        "--public-key", type=Path, default=None, help="trusted hub key (PEM; else --settings)"
    )
    verify.set_defaults(func=_verify_export)


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
    soak.add_argument(
        "--pg-url", default=None, help="PostgreSQL (a private schema; default a private cluster)"
    )
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
    from ringwatch.hub.bench import RealFaces, run_bench
    from ringwatch.models.manifest import default_models_dir

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    models = args.models or default_models_dir()
    real = None if args.faces_data is None else RealFaces.from_lfw(models, args.faces_data)
    for table in run_bench(args.events, args.pg_url, sizes, real, args.cold_start):
        print(table, flush=True)
    if args.faces_data is not None and not args.no_thresholds:
        from ringwatch.hub.bench import threshold_table

        print(threshold_table(models, args.faces_data))
    return 0


def _device_key(args: argparse.Namespace) -> int:
    from ringwatch.contract.media import device_key

    settings = _settings(args)
    if settings.evidence_key is None:
        raise ConfigError("hub settings: set evidence_key (RINGWATCH_HUB_EVIDENCE_KEY) first")
    print(device_key(settings.evidence_key, args.site, args.device).hex())
    return 0


def _export_key(args: argparse.Namespace) -> int:
    from ringwatch.hub.export import public_pem, signing_key

    print(public_pem(signing_key(_settings(args))).decode(), end="")
    return 0


def _verify_export(args: argparse.Namespace) -> int:
    from ringwatch.hub.export import public_pem, read_public_key, signing_key, verify_export

    if args.public_key is not None:
        trusted: bytes | None = read_public_key(args.public_key)
    elif args.settings is not None or os.environ.get("RINGWATCH_HUB_EVIDENCE_KEY"):
        trusted = public_pem(signing_key(_settings(args)))
    else:
        trusted = None
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{args.file}: {exc.strerror}") from None
    verdict = verify_export(data, trusted)
    for problem in verdict.problems:
        print(f"FAIL {problem}")
    state = "OK" if verdict.ok else "TAMPERED"
    print(f"{state}: incident {verdict.incident_id}, {verdict.files} files, {verdict.key_source}")
    return 0 if verdict.ok else 1

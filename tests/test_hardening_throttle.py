"""The login throttle is shared by every hub worker on one database (issue 11): two app
instances on a real PostgreSQL, failures spread over both, the lock seen by both."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from ringwatch.hub import tables as t
from ringwatch.hub.app import create_app
from tests.hub_fixtures import create_admin, database, hub_config, settings

LOGIN = "/api/v1/login/access-token"


def test_failures_on_two_workers_lock_the_name_on_both(tmp_path: Path, pg_url: str) -> None:
    now = [dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)]
    with database("postgresql", tmp_path, pg_url) as url:
        create_admin(url)
        a = create_app(settings(url), hub_config(), ingest=False, clock=lambda: now[0])
        b = create_app(settings(url), hub_config(), ingest=False, clock=lambda: now[0])
        with TestClient(a) as ca, TestClient(b) as cb:

            def attempt(client: TestClient, user: str, password: str) -> Any:
                return client.post(LOGIN, data={"username": user, "password": password})

            # 5 wrong passwords, 3 on worker a and 2 on b: per process, neither locked it
            for i, client in enumerate([ca, cb, ca, cb, ca]):
                assert attempt(client, "admin", f"guess-{i}").status_code == 400
            for client in (ca, cb):
                locked = attempt(client, "admin", "admin-password")
                assert locked.status_code == 429, locked.text
                assert int(locked.headers["retry-after"]) == 300
            now[0] += dt.timedelta(minutes=5, seconds=1)
            assert attempt(cb, "admin", "admin-password").status_code == 200
            # the success cleared the name's failures: 4 more do not lock it again
            for i, client in enumerate([ca, cb, ca, cb]):
                assert attempt(client, "admin", f"again-{i}").status_code == 400
            assert attempt(ca, "admin", "admin-password").status_code == 200
            with a.state.hub.sessions.begin() as session:
                rows = {e.key: e for e in session.scalars(sa.select(t.LoginThrottleEntry))}
            assert rows["user:admin"].failures == 0
            assert any(k.startswith("client:") and e.failures == 9 for k, e in rows.items())

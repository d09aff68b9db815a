"""The approximate 1:N index (hub/ann.py) and the Matcher that keeps it in step.

Real face embeddings (SFace over LFW dev photos) hidden among synthetic unit vectors: the
approximate search must give the exact search's top-1 (person, template, similarity) for
every probe whose best match reaches the watch-list threshold. Registry changes reach two
"workers" (two Matchers over one database) through the change log, without full reloads;
delisting, template deletion and a lapsed review stop matches at once; the encrypted
snapshot loads and catches up, and another key is refused.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import sqlalchemy as sa

from ringwatch.contract.colours import Tier
from ringwatch.hub import crud
from ringwatch.hub import schemas as s
from ringwatch.hub import tables as t
from ringwatch.hub.ann import LiveIndex, SnapshotError, load_snapshot, save_snapshot
from ringwatch.hub.bench import DECISIVE
from ringwatch.hub.crypto import TemplateCipher
from ringwatch.hub.db import make_engine, migrate, session_factory
from ringwatch.hub.inventory import MatchingConfig
from ringwatch.hub.matching import ExactIndex, Matcher, bump_generation, random_unit_vectors
from tests.hub_fixtures import BACKENDS, SECRET, database

R = TypeVar("R")
LFW_IMAGES = 120  # photos of people with two or more photos in the dev fold
SYNTHETIC = 30_000


@functools.cache
def _lfw(models_dir: Path, data_dir: Path) -> tuple[np.ndarray, list[str]]:
    from ringwatch.models.faces import FacePipeline, read_image

    pipeline = FacePipeline.from_models_dir(models_dir)
    people = sorted((data_dir / "faces/lfw_dev/images").iterdir())
    paths = [p for d in people if len(list(d.glob("*.jpg"))) > 1 for p in sorted(d.glob("*.jpg"))]
    vectors, names = [], []
    for path in paths[:LFW_IMAGES]:
        _, vector = pipeline.largest_face_embedding(read_image(path), path.name)
        vectors.append(vector)
        names.append(path.parent.name)
    return np.stack(vectors).astype(np.float32), names


@pytest.fixture(scope="module")
def lfw(models_dir: Path, data_dir: Path) -> tuple[np.ndarray, list[str]]:
    return _lfw(models_dir, data_dir)


def _gallery(lfw: tuple[np.ndarray, list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, person ids, which rows are probes): each person's first photo enrolled
    among synthetic vectors; their other photos are probes."""
    vectors, names = lfw
    first = {name: i for i, name in reversed(list(enumerate(names)))}
    enrolled = sorted(first.values())
    synthetic = random_unit_vectors(SYNTHETIC, seed=3)
    gallery = np.concatenate([synthetic, vectors[enrolled]])
    person_ids = np.arange(len(gallery), dtype=np.int64)
    probes = np.array([i not in set(enrolled) for i in range(len(names))])
    return gallery, person_ids, probes


def _index(gallery: np.ndarray, person_ids: np.ndarray, **kw: int) -> LiveIndex:
    index = LiveIndex(exact_below=0, **kw)  # the approximate path even at this size
    due = np.full(len(gallery), dt.date(2027, 1, 1).toordinal(), np.int32)
    index.add(person_ids + 1000, person_ids, due, gallery)
    return index


def test_same_top1_as_exact_search_on_real_embeddings(lfw: tuple[np.ndarray, list[str]]) -> None:
    gallery, person_ids, probes = _gallery(lfw)
    index = _index(gallery, person_ids, candidates=256)
    exact = ExactIndex.build(person_ids + 1000, person_ids, gallery)
    queries = lfw[0]  # probes (other photos) and the enrolled photos themselves
    approx_top = [row[0] for row in index.search(queries, 3)]
    exact_top = [row[0] for row in exact.search(queries, 3)]
    decisive = [i for i, m in enumerate(exact_top) if m.similarity >= DECISIVE]
    assert len(decisive) >= 60 and sum(probes[decisive]) >= 15, "too few real matches to test"
    for i in decisive:
        a, e = approx_top[i], exact_top[i]
        assert (a.person_id, a.template_id) == (e.person_id, e.template_id), f"probe {i}"
        assert a.similarity == pytest.approx(e.similarity, abs=1e-6)  # re-scored exactly
    agree = np.mean(
        [a.person_id == e.person_id for a, e in zip(approx_top, exact_top, strict=True)]
    )
    assert agree >= 0.95  # below the threshold too (those never become sightings)


def test_dropped_and_expired_templates_stop_matching_at_once(
    lfw: tuple[np.ndarray, list[str]],
) -> None:
    gallery, person_ids, _ = _gallery(lfw)
    index = _index(gallery, person_ids, candidates=256)
    real = lfw[0][:40]
    first = [row[0].person_id for row in index.search(real, 1)]
    index.drop_persons(first[:5])
    assert len(index) == len(gallery) - len(set(first[:5]))
    after = [row[0].person_id if row else None for row in index.search(real, 3)]
    assert not set(first[:5]) & set(after), "a dropped person was returned"
    # a lapsed review: those due before the new date are filtered without a rebuild
    soon = dt.date(2026, 12, 31).toordinal()
    index.review_due[: index.slots][np.isin(index.person_ids[: index.slots], first[5:10])] = soon
    index.expire(dt.date(2027, 1, 1) - dt.timedelta(days=0))
    hits = {m.person_id for row in index.search(real, 3) for m in row}
    assert not set(first[5:10]) & hits
    # added afterwards, without a rebuild, and found
    extra = random_unit_vectors(3, seed=99)
    due = np.full(3, dt.date(2027, 6, 1).toordinal(), np.int32)
    index.add(np.array([7, 8, 9]), np.array([-7, -8, -9]), due, extra)
    assert [row[0].person_id for row in index.search(extra, 1)] == [-7, -8, -9]


def test_snapshot_round_trip_and_wrong_key(tmp_path: Path) -> None:
    vectors = random_unit_vectors(3000, seed=5)
    ids = np.arange(3000, dtype=np.int64)
    index = LiveIndex(exact_below=0)
    index.add(ids, ids // 2, np.full(3000, 800_000, np.int32), vectors)
    index.drop_persons([0, 1])
    key = TemplateCipher(SECRET).snapshot_key
    path = tmp_path / "index.snap"
    save_snapshot(index, 41, path, key)
    assert vectors[100].tobytes() not in path.read_bytes(), "templates not in clear"

    def make(count: int) -> LiveIndex:
        return LiveIndex(exact_below=0, capacity=count)

    loaded = load_snapshot(path, key, make)
    assert loaded.generation == 41 and len(loaded.index) == 2996
    probe = vectors[10:20]
    assert loaded.index.search(probe, 2) == index.search(probe, 2)
    with pytest.raises(SnapshotError, match="another template_key"):
        load_snapshot(path, TemplateCipher("another-secret-1234").snapshot_key, make)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(SnapshotError):
        load_snapshot(path, key, make)


# --- the Matcher over a real database: two workers, the change log, the snapshot ----------


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(params=BACKENDS)
def db(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[sa.orm.sessionmaker[sa.orm.Session]]:
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        engine = make_engine(url)
        migrate(engine)
        with session_factory(engine).begin() as session:
            session.add(t.Station(id="st", name="Station"))
        yield session_factory(engine)
        engine.dispose()


CIPHER = TemplateCipher(SECRET)
ADMIN = crud.Actor("admin", "admin")


def _person(session: sa.orm.Session, clock: Clock, name: str, days: int = 30) -> t.Person:
    data = s.PersonCreate(
        display_name=name,
        tier=Tier.RED,
        reason="test",
        case_reference="C-1",
        legal_basis="test basis",
        station_id="st",
        review_due=clock.now.date() + dt.timedelta(days=days),
    )
    return crud.create_person(session, data, ADMIN, clock.now)


def _enrol(session: sa.orm.Session, clock: Clock, person: t.Person, vector: np.ndarray) -> int:
    enc = CIPHER.encrypt_embedding(vector)
    return crud.add_template(session, person, enc, b"", 0.9, "0" * 64, ADMIN, clock.now).id


def _get(session: sa.orm.Session, table: type[R], key: int) -> R:
    row = session.get(table, key)
    assert row is not None
    return row


def _matcher(clock: Clock, snapshot: Path | None = None) -> Matcher:
    config = MatchingConfig(
        exact_below=0, candidates=64, snapshot_file=None if snapshot is None else str(snapshot)
    )
    return Matcher(CIPHER, clock, config)


def test_two_workers_follow_registry_changes_without_reloading(
    db: sa.orm.sessionmaker[sa.orm.Session], tmp_path: Path
) -> None:
    clock = Clock()
    vectors = random_unit_vectors(6, seed=11)
    with db.begin() as session:
        a = _person(session, clock, "A")
        b = _person(session, clock, "B", days=2)
        ta = _enrol(session, clock, a, vectors[0])
        tb = _enrol(session, clock, b, vectors[1])
        a_id, b_id = a.id, b.id
    snap = tmp_path / "index.snap"
    one, two = _matcher(clock, snap), _matcher(clock)
    one.warm(db)
    two.warm(db)
    assert snap.exists()  # written after the first full load

    def best(m: Matcher, i: int) -> tuple[int, int] | None:
        with db() as session:
            row = m.match(session, vectors[i : i + 1])[0]
        return (row[0].person_id, row[0].template_id) if row else None

    assert best(one, 0) == best(two, 0) == (a_id, ta)
    assert best(two, 1) == (b_id, tb)
    with db.begin() as session:  # worker one's API adds a template to A: two sees it
        tc = _enrol(session, clock, _get(session, t.Person, a_id), vectors[2])
    assert best(two, 2) == (a_id, tc)
    with db.begin() as session:  # delisted: no match anywhere, at once
        update = s.PersonUpdate(tier=Tier.GREEN, why="delisted")
        crud.update_person(session, _get(session, t.Person, a_id), update, ADMIN, clock.now)
    assert best(one, 0) is None and best(two, 2) is None
    with db.begin() as session:  # a template deleted
        crud.delete_template(session, _get(session, t.Template, tb), ADMIN, clock.now, "wrong")
    assert best(two, 1) is None
    with db.begin() as session:
        td = _enrol(session, clock, _get(session, t.Person, b_id), vectors[3])
    assert best(one, 3) == (b_id, td)
    clock.now += dt.timedelta(days=3)  # B's review is now past due: not matched
    assert best(one, 3) is None and best(two, 3) is None
    assert (one.full_loads, two.full_loads) == (1, 1), "changes must not reload everything"
    assert one.incremental >= 2 and two.incremental >= 3
    with db.begin() as session:  # a change the log cannot name: a full reload, same answer
        bump_generation(session)
    assert best(two, 3) is None and two.full_loads == 2

    assert best(one, 3) is None  # one catches up too (else its snapshot predates the gap)
    assert one.save_snapshot() is not None
    with db.begin() as session:  # made after the snapshot: caught up from the log
        e = _person(session, clock, "E")
        te = _enrol(session, clock, e, vectors[4])
        e_id = e.id
    three = _matcher(clock, snap)
    three.warm(db)
    assert (three.snapshot_loads, three.full_loads) == (1, 0)
    assert best(three, 4) == (e_id, te) and best(three, 0) is None
    snap.write_bytes(b"damaged")
    four = _matcher(clock, snap)
    four.warm(db)  # an unusable snapshot: loaded from the database instead, and rewritten
    assert (four.snapshot_loads, four.full_loads) == (0, 1) and best(four, 4) == (e_id, te)
    assert snap.stat().st_size > 100

from __future__ import annotations

import datetime as dt

from ringwatch.hub.security import TokenCodec, hash_password, verify_password

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


def test_tokens_expire_on_the_hubs_own_clock() -> None:
    codec = TokenCodec("a-long-secret", minutes=60)
    token = codec.issue("alice", T0)
    assert codec.subject(token, T0 + dt.timedelta(minutes=59)) == "alice"
    assert codec.subject(token, T0 + dt.timedelta(minutes=60)) is None
    # A token from a fake clock far in the past is checked against that clock, not the wall.
    old = codec.issue("bob", dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
    assert codec.subject(old, dt.datetime(2001, 1, 1, 0, 30, tzinfo=dt.UTC)) == "bob"


def test_forged_and_malformed_tokens_are_refused() -> None:
    token = TokenCodec("a-long-secret").issue("alice", T0)
    assert TokenCodec("another-secret").subject(token, T0) is None
    assert TokenCodec("a-long-secret").subject("not.a.jwt", T0) is None
    assert TokenCodec("a-long-secret").subject(token[:-2] + "xx", T0) is None


def test_passwords_are_argon2_hashed() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2") and "correct horse" not in hashed
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong", hashed)
    assert not verify_password("x", "not-a-hash")

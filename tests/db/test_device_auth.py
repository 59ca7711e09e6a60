"""Schema step 3: auth codes stored before it are hashed in place, and the devices holding
them still authenticate."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest_twisted
from twisted.internet import defer

from cmsv6.db import devices as device_store
from cmsv6.db.service import Database
from cmsv6.db.upgrade import steps, upgrade


@pytest_twisted.inlineCallbacks
def test_upgrade_hashes_existing_codes(pg_cluster: Any) -> None:
    """A database at version 2 with plaintext codes is upgraded: no code is left in the
    table, each device has its own salt, and the old codes still authenticate."""
    from twisted.internet import reactor

    from tests.support.device import within

    dsn = pg_cluster.create_database("device_auth_upgrade")
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
                    " applied timestamptz NOT NULL DEFAULT now())")
        for number, name, sql in steps():
            if number <= 2:
                cur.execute(sql)
                cur.execute("INSERT INTO schema_version VALUES (%s, %s)", (number, name))
        cur.execute("INSERT INTO devices (phone, auth_code) VALUES ('13800000001', 'a1b2c3d4e5f60718'),"
                    " ('13800000002', 'a1b2c3d4e5f60718'), ('13800000003', NULL)")
    conn.close()
    assert 3 in upgrade(dsn)
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT d::text, auth_salt, auth_hash FROM devices d ORDER BY phone")
        rows = cur.fetchall()
    conn.close()
    assert not any("a1b2c3d4e5f60718" in r[0] for r in rows)
    assert rows[0][1] != rows[1][1] and rows[0][2] != rows[1][2]  # salted per device
    assert rows[2][1:] == (None, None)

    db = Database(dsn, reactor, size=1)
    db.startService()
    try:
        yield within(db.ready(), "the database")
        device = yield device_store.authenticate(db, "013800000001", "a1b2c3d4e5f60718")
        assert device is not None and device.phone == "13800000001"
        wrong = yield device_store.authenticate(db, "013800000001", "a1b2c3d4e5f60719")
        none = yield device_store.authenticate(db, "013800000003", "")
        assert wrong is None and none is None
    finally:
        yield within(db.stopService(), "the database stopped")


# -- the auth cache ---------------------------------------------------------------------------

from datetime import datetime, timezone  # noqa: E402

from twisted.internet import task  # noqa: E402

from cmsv6.db.service import DeviceCache  # noqa: E402
from tests.support.database import query  # noqa: E402
from tests.support.device import until, within  # noqa: E402

REGISTRATION = dict(manufacturer="M", model="X", terminal_id="T1", plate_color=1, plate="B",
                    protocol=2013, open_registration=False)  # fmt: skip


def test_cache_is_bounded_expires_and_is_used_only_while_trusted() -> None:
    """At most ``max_entries`` (the least recently used go first), each for ``ttl``
    seconds; nothing is read or kept while invalidations are not heard."""
    clock = task.Clock()
    cache = DeviceCache(clock, max_entries=2, ttl=10.0)
    assert not cache.put("a", 1, cache.begin()) and cache.get("a") is None  # not listening
    cache.listening()
    for phone in "abc":
        assert cache.put(phone, phone.upper(), cache.begin())
        clock.advance(1)
    assert len(cache) == 2 and cache.get("a") is None and cache.get("b") == "B"
    cache.put("d", "D", cache.begin())  # "c" was used less recently than "b"
    assert cache.get("c") is None and cache.get("b") == "B"
    clock.advance(9.5)
    assert cache.get("b") is None and cache.get("d") == "D"  # "b" read at 1 s, "d" at 3 s
    cache.lost()
    assert cache.get("d") is None and len(cache) == 0


def test_cache_refuses_what_a_lookup_read_before_an_invalidation() -> None:
    """A lookup that began before its phone was invalidated (or before the listening
    session was lost and found again) does not put back what it read."""
    cache = DeviceCache(task.Clock())
    cache.listening()
    since = cache.begin()
    cache.invalidate("a")
    assert not cache.put("a", 1, since)
    assert cache.put("b", 2, since)  # another phone: still fresh
    cache.put("a", 1, cache.begin())
    cache.invalidate("a")
    assert cache.get("a") is None
    since = cache.begin()
    cache.lost()
    cache.listening()
    assert not cache.put("b", 2, since)
    cache.RECENT = 2  # forgotten invalidations: older lookups may not put at all
    since = cache.begin()
    for phone in "xyz":
        cache.invalidate(phone)
    assert not cache.put("q", 1, since) and cache.put("q", 1, cache.begin())


@pytest_twisted.inlineCallbacks
def test_cached_device_authenticates_without_the_database_and_is_refused_once_changed(
    dsn: str,
) -> None:
    """A device that authenticated is checked again from the cache (no lookup); a wrong
    code never authenticates through it; ``cmsv6 device disable``, ``reset-auth``, a new
    registration and ``remove`` each reach the cache (NOTIFY) and the old code is refused."""
    from twisted.internet import reactor

    from cmsv6.db.devices import (add_device, disable_device, enable_device, register,
                                  remove_device, reset_auth)  # fmt: skip

    db = Database(dsn, reactor, size=1)
    db.startService()
    lookups: list[str] = []
    run_lookup = db.run_lookup

    def counted(work: Any, *args: Any) -> Any:
        lookups.append(work.__name__)
        return run_lookup(work, *args)

    db.run_lookup = counted  # type: ignore[method-assign]
    cache = db.auth_cache
    assert cache is not None
    phone = "13800000051"

    def gone() -> bool:
        return cache.get(phone) is None

    @defer.inlineCallbacks
    def registered() -> Any:
        heard = cache.generation
        reg = yield register(db, phone, now=datetime.now(timezone.utc), **REGISTRATION)  # type: ignore[arg-type]
        # Its own NOTIFY: a lookup begun before it is heard is not kept.
        yield until(lambda: cache.generation > heard, "the registration's notification")
        return reg

    try:
        yield within(db.ready(), "the database")
        yield until(lambda: cache.trusted, "the cache's listening session")
        add_device(dsn, phone)
        reg = yield registered()
        code = reg.auth_code
        first = yield device_store.check_auth_code(db, phone, code)
        assert isinstance(first, device_store.Device) and first.phone == phone
        n = len(lookups)
        again = yield device_store.check_auth_code(db, phone, code)
        assert again == first and len(lookups) == n and cache.hits >= 1  # no round trip
        wrong = yield device_store.check_auth_code(db, phone, code[:-1] + "x")
        assert wrong == device_store.AUTH_BAD_CODE and len(lookups) == n + 1

        disable_device(dsn, phone)
        yield until(gone, "the disable to reach the cache")
        refused = yield device_store.check_auth_code(db, phone, code)
        assert refused == device_store.AUTH_DISABLED
        refused = yield device_store.check_auth_code(db, phone, code)  # not cached either
        assert refused == device_store.AUTH_DISABLED
        enable_device(dsn, phone)
        yield device_store.check_auth_code(db, phone, code)
        assert cache.get(phone) is not None

        reset_auth(dsn, phone)
        yield until(gone, "the reset to reach the cache")
        refused = yield device_store.check_auth_code(db, phone, code)
        assert refused == device_store.AUTH_NOT_REGISTERED

        reg = yield registered()
        yield device_store.check_auth_code(db, phone, reg.auth_code)
        assert cache.get(phone) is not None
        # Registered again (as reregister = "terminal_id" or another server would let it).
        query(dsn, "UPDATE devices SET auth_hash = NULL, auth_salt = NULL WHERE phone = %s", (phone,))
        again = yield register(db, phone, now=datetime.now(timezone.utc), **REGISTRATION)  # type: ignore[arg-type]
        yield until(gone, "the new registration to reach the cache")
        old = yield device_store.check_auth_code(db, phone, reg.auth_code)
        assert old == device_store.AUTH_BAD_CODE
        new = yield device_store.check_auth_code(db, phone, again.auth_code)
        assert isinstance(new, device_store.Device)

        remove_device(dsn, phone)
        yield until(gone, "the removal to reach the cache")
        refused = yield device_store.check_auth_code(db, phone, again.auth_code)
        assert refused == device_store.AUTH_UNKNOWN
    finally:
        yield within(db.stopService(), "the database stopped")


@pytest_twisted.inlineCallbacks
def test_cache_is_off_while_its_session_is_lost(dsn: str) -> None:
    """When the listening session ends (its backend terminated), the cache is emptied and
    not used until it listens again; then it fills again."""
    from twisted.internet import reactor

    from cmsv6.db.devices import add_device, register

    db = Database(dsn, reactor, size=1)
    db.startService()
    cache = db.auth_cache
    assert cache is not None
    phone = "13800000052"
    try:
        yield within(db.ready(), "the database")
        yield until(lambda: cache.trusted, "the cache's listening session")
        add_device(dsn, phone)
        heard = cache.generation
        reg = yield register(db, phone, now=datetime.now(timezone.utc), **REGISTRATION)  # type: ignore[arg-type]
        yield until(lambda: cache.generation > heard, "the registration's notification")
        yield device_store.check_auth_code(db, phone, reg.auth_code)
        assert len(cache) == 1
        query(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
              " WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()")  # fmt: skip
        yield until(lambda: not cache.trusted, "the cache to stop trusting itself")
        assert len(cache) == 0
        yield until(lambda: cache.trusted, "the listening session again")
        device = yield device_store.check_auth_code(db, phone, reg.auth_code)
        assert isinstance(device, device_store.Device) and len(cache) == 1
    finally:
        yield within(db.stopService(), "the database stopped")

"""Schema step 3: auth codes stored before it are hashed in place, and the devices holding
them still authenticate."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest_twisted

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

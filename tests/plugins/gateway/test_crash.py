"""Proof of no loss: kill -9 the gateway process under load; every position it
acknowledged is in the database exactly once, and the devices reconnect and carry on."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg2
import pytest_twisted

from cmsv6.phone import canonical_phone
from cmsv6.sim.device import DeviceConfig
from cmsv6.sim.fleet import Fleet, FleetConfig
from tests.support.device import until, within
from tests.support.process import GatewayProcess, free_port


def stored(dsn: str) -> Counter[tuple[str, Any, float, float]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT d.phone, p.time, p.latitude, p.longitude FROM positions p"
            " JOIN devices d ON d.id = p.device_id"
        )
        rows = cur.fetchall()
    conn.close()
    return Counter((phone, t, round(lat, 6), round(lon, 6)) for phone, t, lat, lon in rows)


@pytest_twisted.inlineCallbacks
def test_kill_9_under_load(dsn: str, tmp_path: Any) -> None:
    """kill -9 under load and restart: every acknowledged position is stored exactly
    once, and the devices come back and carry on."""
    from twisted.internet import reactor

    port = free_port()
    gateway = GatewayProcess(dsn, port, tmp_path)
    gateway.start()
    fleet = Fleet(
        reactor,
        FleetConfig(
            server=f"tcp:127.0.0.1:{port}",
            devices=20,
            version="mixed",
            seed=7,
            record_acks=True,
            status_interval=3600,
            device=DeviceConfig(
                interval=0.2, heartbeat=5.0, timeout=1.0, retries=5, alarm_probability=0.02,
                reconnect_initial=0.1, reconnect_max=0.5,
            ),  # fmt: skip
        ),
    )
    done = fleet.start()
    try:
        yield until(lambda: fleet.counters.acknowledged >= 300, "300 acknowledged positions")
        gateway.kill()
        before = fleet.counters.acknowledged
        reconnects = fleet.counters.reconnects
        gateway.start()
        yield until(lambda: fleet.counters.acknowledged >= before + 300, "300 more after restart")
        assert fleet.counters.reconnects > reconnects
        # Let what is in flight settle, then stop the devices.
        yield within(fleet.stop(), "the simulated fleet to stop")
        yield done
    finally:
        gateway.stop()
    rows = stored(dsn)
    acked = Counter(
        (canonical_phone(a.phone), a.time, round(a.latitude, 6), round(a.longitude, 6))
        for a in fleet.acknowledged
    )
    assert len(acked) == len(fleet.acknowledged) >= 600
    missing = [k for k in acked if rows[k] == 0]
    twice = [k for k in acked if rows[k] > 1]
    assert not missing, f"{len(missing)} acknowledged positions not stored, e.g. {missing[:3]}"
    assert not twice, f"{len(twice)} stored more than once, e.g. {twice[:3]}"

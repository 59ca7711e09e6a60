"""The ``metrics`` endpoint of ``twistd gateway`` and ``twistd login``, as real processes:
GET /metrics over HTTP answers Prometheus text with the server's families, whose values
follow what happens (a connected device, a stored position, a gateway's AMP link, the
active and standby roles)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, error
from twisted.web.client import Agent, readBody

from cmsv6.db.devices import add_device, disable_device
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.core import Authenticate, Register
from tests.support.database import query
from tests.support.device import connect, location
from tests.support.process import GatewayProcess, LoginProcess, free_port
from tests.support.ready import database_connected

#: Only a guard against hanging.
WAIT = 15.0


@defer.inlineCallbacks
def scrape(port: int) -> Any:
    """GET /metrics: (content type, {(name, labels as a sorted tuple): value})."""
    from twisted.internet import reactor

    url = f"http://127.0.0.1:{port}/metrics".encode()
    response = yield Agent(reactor).request(b"GET", url).addTimeout(WAIT, reactor)
    body = yield readBody(response).addTimeout(WAIT, reactor)
    assert response.code == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return response.headers.getRawHeaders(b"content-type")[0].decode(), samples


@defer.inlineCallbacks
def scrape_until(port: int, predicate: Any, what: str, polls: int = 100) -> Any:
    """Scrape every 0.1 s (a refused connection: nothing yet) until ``predicate(samples)``
    holds, at most ``polls`` times, each bounded; the samples."""
    from twisted.internet import reactor, task

    samples: dict[Any, float] = {}
    for _ in range(polls):
        try:
            _, samples = yield scrape(port)
        except error.ConnectionRefusedError:  # not listening yet
            samples = {}
        if predicate(samples):
            return samples
        yield task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"gave up waiting for {what}: {samples}")


@pytest_twisted.inlineCallbacks
def test_gateway_metrics_endpoint(dsn: str, tmp_path: Path) -> None:
    """``twistd gateway --metrics`` serves Prometheus text: its id, one connection and one
    device online while a device is connected, a stored position counted, the process
    metrics; and the device gone once it disconnects."""
    from twisted.internet import reactor

    port, metrics = free_port(), free_port()
    gateway = GatewayProcess(dsn, port, tmp_path, "--id", "gw-m",
                             "--metrics", f"tcp:{metrics}:interface=127.0.0.1")  # fmt: skip
    gateway.start()
    try:
        yield database_connected(gateway)
        content_type, samples = yield scrape(metrics)
        assert content_type.startswith("text/plain")
        assert samples[("cmsv6_gateway_info", (("id", "gw-m"),))] == 1
        assert samples[("cmsv6_gateway_devices_online", ())] == 0
        assert samples[("process_cpu_seconds_total", ())] > 0
        dev = yield connect(reactor, port, "13800000061")
        yield dev.login()
        dev.send(location())
        ack = yield dev.next(0x8001)
        assert ack.body.result == 0
        _, samples = yield scrape(metrics)
        assert samples[("cmsv6_gateway_connections", ())] == 1
        assert samples[("cmsv6_gateway_devices_online", ())] == 1
        assert samples[("cmsv6_gateway_positions_stored_total", ())] == 1
        assert samples[("cmsv6_gateway_writer_pending", ())] == 0
        assert samples[("cmsv6_gateway_events_total", (("event", "frames"),))] == 3
        dev.transport.loseConnection()
        yield dev.lost.addTimeout(WAIT, reactor)
        yield scrape_until(
            metrics, lambda s: s.get(("cmsv6_gateway_devices_online", ())) == 0
            and s.get(("cmsv6_gateway_connections", ())) == 0, "the device to go offline",
        )  # fmt: skip
    finally:
        gateway.stop()


@pytest_twisted.inlineCallbacks
def test_gateway_metrics_count_failed_logins_and_stored_positions(dsn: str, tmp_path: Path) -> None:
    """Failed logins are counted by reason (a phone not in the database, a second
    registration, a wrong code, an authentication of a phone not in the database or never
    registered, the right code of a disabled device; reasons that did not happen are there
    at 0), a device that got in is online, and the positions counted stored are the rows
    committed."""
    from twisted.internet import reactor

    port, metrics = free_port(), free_port()
    gateway = GatewayProcess(dsn, port, tmp_path, "--registration", "known",
                             "--metrics", f"tcp:{metrics}:interface=127.0.0.1")  # fmt: skip
    add_device(dsn, "13800000062")
    add_device(dsn, "13800000064")
    add_device(dsn, "13800000065")
    gateway.start()
    try:
        yield database_connected(gateway)
        known = yield connect(reactor, port, "13800000062")
        yield known.login()
        for minute in (1, 2):
            known.send(location(time=datetime(2026, 11, 25, 10, minute, tzinfo=BEIJING)))
            ack = yield known.next(0x8001)
            assert ack.body.result == 0
        again = yield connect(reactor, port, "13800000062")
        again.send(Register(44, 300, "CMSV6", "SIM-1", "T000001", 1, "粤B00001"))
        assert (yield again.next(0x8100)).body.result == 3
        again.send(Authenticate("not-the-code"))
        assert (yield again.next(0x8001)).body.result == 1
        stranger = yield connect(reactor, port, "13800000063")
        stranger.send(Register(44, 300, "CMSV6", "SIM-1", "T000002", 1, "粤B00002"))
        assert (yield stranger.next(0x8100)).body.result == 4
        stranger.send(Authenticate("a-guess"))
        assert (yield stranger.next(0x8001)).body.result == 1
        unregistered = yield connect(reactor, port, "13800000064")
        unregistered.send(Authenticate("a-guess"))
        assert (yield unregistered.next(0x8001)).body.result == 1
        disabled = yield connect(reactor, port, "13800000065")
        code = yield disabled.login()
        disable_device(dsn, "13800000065")
        # The gateway hears of it by NOTIFY on a thread of its own: wait until it has (a unit
        # trying within those milliseconds would still get in with its cached code). Three:
        # the two registrations (a new code each) and the disabling.
        yield scrape_until(metrics, lambda samples: samples.get(
            ("cmsv6_gateway_auth_cache_invalidations_total", ())) == 3,
            "the gateway to hear of the disabling")  # fmt: skip
        disabled = yield connect(reactor, port, "13800000065")
        disabled.send(Authenticate(code))
        assert (yield disabled.next(0x8001)).body.result == 1
        _, samples = yield scrape(metrics)
        failures = {dict(labels)["reason"]: n for (name, labels), n in samples.items()
                    if name == "cmsv6_gateway_login_failures_total"}  # fmt: skip
        assert failures["unknown_device"] == 2
        assert failures["terminal_registered"] == 1
        assert failures["bad_auth_code"] == 1
        assert failures["not_registered"] == 1
        assert failures["disabled"] == 1
        assert failures["rate_limited"] == 0
        assert sum(failures.values()) == 6
        assert samples[("cmsv6_gateway_devices_online", ())] == 2
        (stored,), = query(dsn, "SELECT count(*) FROM positions")
        assert samples[("cmsv6_gateway_positions_stored_total", ())] == stored == 2
    finally:
        gateway.stop()


@pytest_twisted.inlineCallbacks
def test_login_metrics_endpoint(dsn: str, tmp_path: Path) -> None:
    """``twistd login --metrics`` serves Prometheus text: the active server says active and
    counts a gateway's AMP link once one announces itself; a standby says standby."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "gw").mkdir()
    active_metrics, standby_metrics = free_port(), free_port()
    active = LoginProcess(dsn, tmp_path / "a", "login-a", "--metrics",
                          f"tcp:{active_metrics}:interface=127.0.0.1")  # fmt: skip
    standby = LoginProcess(dsn, tmp_path / "b", "login-b", "--metrics",
                           f"tcp:{standby_metrics}:interface=127.0.0.1")  # fmt: skip
    gateway = GatewayProcess(dsn, free_port(), tmp_path / "gw", "--id", "gw-1",
                             "--login", active.client_cluster)  # fmt: skip
    try:
        active.start()
        samples = yield scrape_until(
            active_metrics, lambda s: s.get(("cmsv6_login_active", ())) == 1, "login active"
        )
        content_type, _ = yield scrape(active_metrics)
        assert content_type.startswith("text/plain")
        assert samples[("cmsv6_amp_links", (("peer", "gateway"),))] == 0
        assert samples[("cmsv6_web_clients", ())] == 0
        assert samples[("process_cpu_seconds_total", ())] > 0
        standby.start(wait=False)
        samples = yield scrape_until(
            standby_metrics, lambda s: ("cmsv6_login_active", ()) in s, "the standby's metrics"
        )
        assert samples[("cmsv6_login_active", ())] == 0
        gateway.start()
        yield scrape_until(
            active_metrics, lambda s: s.get(("cmsv6_amp_links", (("peer", "gateway"),))) == 1,
            "the gateway's AMP link",
        )  # fmt: skip
        _, samples = yield scrape(standby_metrics)
        assert samples[("cmsv6_login_active", ())] == 0
        assert samples[("cmsv6_amp_links", (("peer", "gateway"),))] == 0
    finally:
        gateway.stop()
        standby.stop()
        active.stop()

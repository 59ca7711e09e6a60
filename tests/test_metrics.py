"""Metrics: the gateway collector reads the gateway's own state, the helpers read their
callbacks at scrape time, and /metrics serves the text format over a real socket."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from prometheus_client import REGISTRY, generate_latest
from twisted.internet import defer, endpoints, task
from twisted.web import server
from twisted.web.client import Agent, readBody

from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.metrics import (
    MetricsResource, amp_links_gauge, callback_gauge, gateway_collector, make_registry,
    role_gauge,
)  # fmt: skip


def _gateway() -> Gateway:
    return Gateway(None, task.Clock(), "gw-7", "127.0.0.1:7611")  # type: ignore[arg-type]


def _text(registry: Any) -> str:
    return generate_latest(registry).decode()


def test_gateway_collector_reads_counters_and_writer() -> None:
    """Connections, online devices, counters (messages by id and failed logins by reason
    apart, every reason there from the start), and the writer's figures appear in the text
    and follow the gateway's state."""
    gw = _gateway()
    registry = make_registry(process=False)
    gateway_collector(gw, registry)
    gw.count("frames", 7)
    gw.count("bad_checksum")
    gw.count("msg:0x0200", 5)
    gw.count("login_failed:unknown_device", 2)
    gw.connections.add(object())  # type: ignore[arg-type]
    gw.sessions["13800000001"] = object()  # type: ignore[assignment]
    gw.writer.written = 42
    gw.writer.failures = 2
    gw.writer._queued_rows = 9
    gw.writer.pressure = True
    text = _text(registry)
    for line in (
        'cmsv6_gateway_info{id="gw-7"} 1.0',
        "cmsv6_gateway_connections 1.0",
        "cmsv6_gateway_devices_online 1.0",
        'cmsv6_gateway_events_total{event="frames"} 7.0',
        'cmsv6_gateway_events_total{event="bad_checksum"} 1.0',
        'cmsv6_gateway_messages_total{msg_id="0x0200"} 5.0',
        "cmsv6_gateway_writer_pending 9.0",
        "cmsv6_gateway_writer_pressure 1.0",
        "cmsv6_gateway_positions_stored_total 42.0",
        "cmsv6_gateway_write_failures_total 2.0",
        'cmsv6_gateway_login_failures_total{reason="unknown_device"} 2.0',
        'cmsv6_gateway_login_failures_total{reason="bad_auth_code"} 0.0',
    ):
        assert line in text.splitlines(), line
    assert 'event="msg:0x0200"' not in text and "event=\"login_failed" not in text
    gw.count("frames", 3)
    assert 'cmsv6_gateway_events_total{event="frames"} 10.0' in _text(registry).splitlines()


def test_registries_are_per_process_not_global() -> None:
    """Two registries each hold their own gateway; the global registry holds neither."""
    a, b = make_registry(process=False), make_registry(process=False)
    ga, gb = _gateway(), _gateway()
    gateway_collector(ga, a)
    gateway_collector(gb, b)
    ga.count("frames", 1)
    assert 'cmsv6_gateway_events_total{event="frames"} 1.0' in _text(a)
    assert 'event="frames"' not in _text(b)
    assert "cmsv6_gateway" not in _text(REGISTRY)


def test_login_role_and_links() -> None:
    """The role gauge is 1 while active and 0 on standby; AMP links are counted by peer."""
    registry = make_registry(process=False)
    state = {"active": False, "links": {"gateway": 2, "media": 1}}
    role_gauge(registry, lambda: bool(state["active"]))
    amp_links_gauge(registry, lambda: state["links"])  # type: ignore[arg-type,return-value]
    callback_gauge(registry, "cmsv6_test_things", "Things", lambda: 3)
    lines = _text(registry).splitlines()
    assert "cmsv6_login_active 0.0" in lines
    assert 'cmsv6_amp_links{peer="gateway"} 2.0' in lines
    assert 'cmsv6_amp_links{peer="media"} 1.0' in lines
    assert "cmsv6_test_things 3.0" in lines
    state["active"] = True
    state["links"] = {"gateway": 3}
    lines = _text(registry).splitlines()
    assert "cmsv6_login_active 1.0" in lines
    assert 'cmsv6_amp_links{peer="gateway"} 3.0' in lines
    assert not any('peer="media"' in line for line in lines)


def test_process_collectors_included() -> None:
    """A server's registry carries the process metrics by default."""
    assert "process_cpu_seconds_total" in _text(make_registry())


@pytest_twisted.inlineCallbacks
def test_metrics_resource_over_http() -> None:
    """GET /metrics over a loopback socket answers the text format with the counters."""
    from twisted.internet import reactor

    gw = _gateway()
    gw.count("frames", 11)
    registry = make_registry(process=False)
    gateway_collector(gw, registry)
    site = server.Site(MetricsResource(registry))
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/metrics".encode()
        response = yield Agent(reactor).request(b"GET", url)
        body = yield readBody(response)
    finally:
        yield defer.maybeDeferred(port.stopListening)
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    assert 'cmsv6_gateway_events_total{event="frames"} 11.0' in body.decode().splitlines()

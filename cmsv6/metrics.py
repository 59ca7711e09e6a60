"""Prometheus metrics: a registry per server process, the ``/metrics`` resource, and
collectors that read the servers' own state at scrape time (nothing is counted twice, and a
scrape never waits for the reactor).

The gateway::

    registry = make_registry()
    gateway_collector(gateway, registry)
    root.putChild(b"metrics", MetricsResource(registry))

The media server::

    media_collector(media, registry)

The login server::

    amp_links_gauge(registry, lambda: {"gateway": len(gateways), "media": len(media)})
    role_gauge(registry, lambda: standby.active)
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from twisted.web import resource, server

from cmsv6.terminal.session import LOGIN_FAILED, LOGIN_FAILURES

#: ``gateway.counters`` keys with one of these prefixes count messages by id
#: ("msg:0x0200") and are exposed as cmsv6_gateway_messages_total{msg_id="0x0200"}.
MESSAGE_PREFIXES = ("msg:", "rx:")

#: ``gateway.counters`` keys ``login_failed:REASON`` (``LOGIN_FAILED``) are exposed as
#: cmsv6_gateway_login_failures_total{reason="REASON"}, every reason from the start (at 0).


def make_registry(process: bool = True) -> CollectorRegistry:
    """A registry of this process's own (not prometheus-client's global one), with the
    process, platform and garbage-collector collectors."""
    registry = CollectorRegistry(auto_describe=True)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class MetricsResource(resource.Resource):
    """The registry in the text exposition format (OpenMetrics if the scraper asks)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: server.Request) -> bytes:  # noqa: N802
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return encoder(self.registry)  # type: ignore[no-any-return]


class GatewayCollector(Collector):
    """Reads a ``cmsv6.plugins.gateway.gateway.Gateway``: connections, online devices, its counters
    (frames, errors, commands..., messages by id, failed logins by reason), and its position
    writer. Positions stored per second: ``rate(cmsv6_gateway_positions_stored_total[1m])``."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gw = self.gateway
        info = GaugeMetricFamily("cmsv6_gateway_info", "This gateway", labels=["id"])
        info.add_metric([str(getattr(gw, "id", ""))], 1)
        yield info
        yield GaugeMetricFamily(
            "cmsv6_gateway_connections", "Open device connections", value=len(gw.connections)
        )
        yield GaugeMetricFamily(
            "cmsv6_gateway_devices_online", "Authenticated devices (one session each)",
            value=len(gw.sessions),
        )  # fmt: skip
        cache = getattr(getattr(gw, "db", None), "auth_cache", None)
        if cache is not None:
            yield CounterMetricFamily(
                "cmsv6_gateway_auth_cache_invalidations",
                "Devices' cached auth codes dropped because the database said they changed"
                " (NOTIFY cmsv6_devices: disabled, removed, code reset)",
                value=cache.invalidations,
            )  # fmt: skip
        handshakes = getattr(gw, "handshakes", None)
        if handshakes is not None:
            yield GaugeMetricFamily(
                "cmsv6_gateway_handshakes", "Connections accepted, not yet authenticated"
                " (at [gateway] max_handshakes the device port stops accepting)",
                value=len(handshakes.in_flight),
            )  # fmt: skip
            yield CounterMetricFamily(
                "cmsv6_gateway_accept_paused", "Times the device port stopped accepting"
                " (max_handshakes reached: the rest waited in the listen backlog)",
                value=handshakes.pauses,
            )  # fmt: skip
        events = CounterMetricFamily(
            "cmsv6_gateway_events", "Gateway events by name (frames, errors, commands...)",
            labels=["event"],
        )  # fmt: skip
        messages = CounterMetricFamily(
            "cmsv6_gateway_messages", "Messages from devices by message id", labels=["msg_id"]
        )
        failures = dict.fromkeys(LOGIN_FAILURES, 0)
        for name, n in sorted(gw.counters.items()):
            prefix = next((p for p in MESSAGE_PREFIXES if name.startswith(p)), None)
            if prefix is not None:
                messages.add_metric([name[len(prefix):]], n)
            elif name.startswith(LOGIN_FAILED):
                failures[name[len(LOGIN_FAILED):]] = n
            else:
                events.add_metric([name], n)
        yield events
        yield messages
        logins = CounterMetricFamily(
            "cmsv6_gateway_login_failures",
            "Registrations and authentications refused, by reason", labels=["reason"],
        )  # fmt: skip
        for reason, n in failures.items():
            logins.add_metric([reason], n)
        yield logins
        w = gw.writer
        yield GaugeMetricFamily(
            "cmsv6_gateway_writer_pending", "Reports accepted and not yet committed",
            value=w.pending,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "cmsv6_gateway_writer_pressure",
            "1 while the writer is behind and devices are paused", value=1 if w.pressure else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "cmsv6_gateway_positions_stored", "Positions committed to the database",
            value=w.written,
        )  # fmt: skip
        yield CounterMetricFamily(
            "cmsv6_gateway_positions_refused", "Reports that could not be stored", value=w.refused
        )
        yield CounterMetricFamily(
            "cmsv6_gateway_write_batches", "Batches committed", value=w.batches
        )
        yield CounterMetricFamily(
            "cmsv6_gateway_write_failures", "Failed batch writes (retried or split)",
            value=w.failures,
        )  # fmt: skip
        yield CounterMetricFamily(
            "cmsv6_gateway_write_seconds", "Time spent writing batches", value=w.write_seconds
        )


def gateway_collector(gateway: Any, registry: CollectorRegistry | None = None) -> GatewayCollector:
    """The gateway's collector, registered in ``registry`` if one is given."""
    collector = GatewayCollector(gateway)
    if registry is not None:
        registry.register(collector)
    return collector


class MediaCollector(Collector):
    """Reads a ``cmsv6.plugins.media.server.MediaServer``: device streams and connections,
    viewers, bytes in and out, frames dropped by reason, viewers skipped to a keyframe,
    time spent transcoding audio, requests refused by reason."""

    def __init__(self, media: Any) -> None:
        self.media = media

    def collect(self) -> Iterator[Metric]:
        m = self.media
        c = m.counters
        info = GaugeMetricFamily("cmsv6_media_info", "This media server", labels=["id"])
        info.add_metric([str(m.config.id)], 1)
        yield info
        yield GaugeMetricFamily("cmsv6_media_streams", "Device streams received or being opened",
                                value=len(m.entries))
        yield GaugeMetricFamily("cmsv6_media_device_connections",
                                "Open JT/T 1078 device connections", value=len(m.connections))
        yield GaugeMetricFamily("cmsv6_media_viewers", "Viewers served (WS-FLV and HTTP-FLV)",
                                value=len(m.viewers))
        yield CounterMetricFamily("cmsv6_media_bytes_in", "Bytes received from devices",
                                  value=c["bytes_in"])
        yield CounterMetricFamily("cmsv6_media_bytes_out", "Bytes sent to viewers",
                                  value=c["bytes_out"])
        yield CounterMetricFamily("cmsv6_media_viewer_skips",
                                  "Times a viewer's queue overflowed and it skipped to the next"
                                  " keyframe", value=c["viewer_skips"])
        yield CounterMetricFamily("cmsv6_media_transcode_seconds",
                                  "CPU time spent transcoding audio to AAC",
                                  value=c["transcode_seconds"])
        dropped = CounterMetricFamily("cmsv6_media_frames_dropped",
                                      "Frames (or tags, for viewers) dropped, by reason",
                                      labels=["reason"])
        refused = CounterMetricFamily("cmsv6_media_refused", "Connections and requests refused,"
                                      " by reason", labels=["reason"])
        events = CounterMetricFamily("cmsv6_media_events",
                                     "Media server events by name (opens, closes, failures...)",
                                     labels=["event"])
        for name, n in sorted(c.items()):
            if name.startswith("dropped:"):
                dropped.add_metric([name[len("dropped:"):]], n)
            elif name.startswith("refused:"):
                refused.add_metric([name[len("refused:"):]], n)
            elif name not in ("bytes_in", "bytes_out", "viewer_skips", "transcode_seconds"):
                events.add_metric([name], n)
        yield dropped
        yield refused
        yield events


def media_collector(media: Any, registry: CollectorRegistry | None = None) -> MediaCollector:
    """The media server's collector, registered in ``registry`` if one is given."""
    collector = MediaCollector(media)
    if registry is not None:
        registry.register(collector)
    return collector


Reading = Callable[[], "float | Mapping[Any, float]"]


class CallbackGauge(Collector):
    """A gauge whose value is read at scrape time: ``read()`` returns a number, or (with
    ``labels``) a mapping of label values (a string, or a tuple for several labels) to
    numbers."""

    def __init__(
        self, name: str, documentation: str, read: Reading, labels: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.read = read
        self.labels = tuple(labels)

    def collect(self) -> Iterator[Metric]:
        value = self.read()
        if not self.labels:
            yield GaugeMetricFamily(self.name, self.documentation, value=float(value))  # type: ignore[arg-type]
            return
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for key, n in sorted(value.items()):  # type: ignore[union-attr]
            key = key if isinstance(key, tuple) else (key,)
            family.add_metric([str(k) for k in key], float(n))
        yield family


def callback_gauge(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    read: Reading,
    labels: Sequence[str] = (),
) -> CallbackGauge:
    collector = CallbackGauge(name, documentation, read, labels)
    registry.register(collector)
    return collector


def amp_links_gauge(
    registry: CollectorRegistry, read: Callable[[], Mapping[str, int]]
) -> CallbackGauge:
    """``cmsv6_amp_links{peer="gateway"|"media"|"login"...}``: open AMP links by kind."""
    return callback_gauge(registry, "cmsv6_amp_links", "Open AMP links by peer kind", read,
                          labels=("peer",))


def role_gauge(registry: CollectorRegistry, is_active: Callable[[], bool]) -> CallbackGauge:
    """``cmsv6_login_active``: 1 on the active login server, 0 on the standby."""
    return callback_gauge(
        registry, "cmsv6_login_active", "1 if this login server is the active one, 0 if standby",
        lambda: 1.0 if is_active() else 0.0,
    )  # fmt: skip


class WebCollector(Collector):
    """The Open API's client sockets and login limiter (``cmsv6.web.site``)."""

    def __init__(self, hub: Any, limiter: Any) -> None:
        self.hub = hub
        self.limiter = limiter

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("cmsv6_web_clients", "Open client WebSockets",
                                value=len(self.hub.clients))
        yield GaugeMetricFamily("cmsv6_web_subscribed_devices",
                                "Devices with at least one subscriber",
                                value=len(self.hub.subscribers))
        yield CounterMetricFamily("cmsv6_web_polls", "Client push polls", value=self.hub.polls)
        yield CounterMetricFamily("cmsv6_web_pushed", "Messages pushed to clients",
                                  value=self.hub.pushed)
        yield GaugeMetricFamily("cmsv6_web_login_limiter_entries",
                                "Names and addresses with recent failed logins",
                                value=len(self.limiter))

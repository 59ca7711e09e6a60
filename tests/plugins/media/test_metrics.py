"""The media server's Prometheus metrics read its own state at scrape time."""

from __future__ import annotations

from twisted.internet import defer, task

from cmsv6.metrics import make_registry, media_collector
from cmsv6.plugins.media.fanout import StreamKey
from cmsv6.plugins.media.server import MediaServer
from cmsv6.protocols.jt1078.frames import DropReason, FrameDropped
from cmsv6.protocols.jt1078.sim import SimIdentity
from tests.plugins.media.support import (
    PHONE,
    SERVER_KEY,
    SIM,
    Collector,
    clip,
    config,
    frames,
)


class Opener:
    def open(self, phone: str, channel: int, stream: str) -> defer.Deferred[None]:
        return defer.succeed(None)

    def close(self, phone: str, channel: int, stream: str) -> defer.Deferred[None]:
        return defer.succeed(None)


class Source:
    def release(self, stream: object) -> None:
        pass


def test_streams_viewers_bytes_drops_skips_and_transcoding() -> None:
    """After a stream with a fast and a stalled viewer: one stream, the viewer left, the bytes
    sent, frames dropped by reason, the stalled viewer's skips and the time spent
    transcoding audio are what the server counted."""
    media = MediaServer(config(viewer_queue=16 * 1024), task.Clock(), SERVER_KEY, Opener())
    registry = make_registry(process=False)
    media_collector(media, registry)
    key = StreamKey(PHONE, 1, "main")
    fast, slow = Collector(), Collector(16 * 1024)
    media.watch(fast, key)
    media.watch(slow, key)
    slow.pauseProducing()
    stream = media.bind(Source(), SimIdentity(SIM), 1)
    for f in frames(clip()):
        stream.push(f)
    media.dropped(FrameDropped(1, 1, 0, DropReason.LOST, "test"))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    # The stalled viewer overflowed GOP after GOP and was closed as hopeless.
    assert slow.ended and media.viewers == {fast}
    assert value("cmsv6_media_streams") == 1 and value("cmsv6_media_viewers") == 1
    assert value("cmsv6_media_bytes_out_total") == len(fast.data) + len(slow.data)
    assert value("cmsv6_media_viewer_skips_total") == slow.skips > 0
    assert value("cmsv6_media_frames_dropped_total", reason="lost") == 1
    assert value("cmsv6_media_frames_dropped_total",
                 reason="viewer skipping to a keyframe") > 0  # type: ignore[operator]
    assert value("cmsv6_media_transcode_seconds_total") > 0  # type: ignore[operator]
    assert value("cmsv6_media_events_total", event="opens") == 1

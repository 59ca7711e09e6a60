"""``twistd -n media`` as a real process: a DVR pushes its stream, a viewer with a token
watches it over HTTP-FLV, Prometheus reads the counters, and SIGTERM closes viewers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.web.client import Agent, readBody

from cmsv6.rpc import keys
from tests.plugins.media.loopback import dvr, http_viewer, ws_viewer
from tests.plugins.media.support import PHONE, clip, frames, packets, play, token, wire
from tests.plugins.media.test_loopback import play_ok
from tests.support.device import until, within
from tests.support.process import MediaProcess, media_key

MEDIA_ID = "media-proc"


class StandaloneMedia(MediaProcess):
    """``twistd media`` with no login server, started at once."""

    def __init__(self, directory: Path, *extra: str) -> None:
        super().__init__(directory, [], MEDIA_ID, *extra)
        self.key = keys.load(str(media_key(MEDIA_ID))).key
        self.start()

    def url(self, channel: int = 1) -> str:
        tok = token(channel=channel, media=MEDIA_ID, key=self.key)
        return f"/live/{PHONE}/{channel}.flv?stream=main&token={tok}"


@pytest.mark.deadline(180)
@pytest_twisted.inlineCallbacks
def test_twistd_media_serves_a_pushed_stream(tmp_path: Path) -> None:
    """A DVR pushes channel 1 unasked; a viewer who comes half-way gets a keyframe first
    and every picture after it; /metrics counts the stream, the viewer and the bytes; a
    viewer of a channel nobody pushes is told there is no login server to ask."""
    from twisted.internet import reactor

    media = StandaloneMedia(tmp_path, "--linger", "60")
    try:
        sent = frames(clip())
        half = next(i for i, f in enumerate(sent) if f.timestamp - sent[0].timestamp >= 1500)
        pieces = packets(sent)
        cut = sum(len(packets([f])) for f in sent[:half])
        device = yield dvr(reactor, media.jt1078)
        device.send(wire(pieces[:cut]))
        metrics = yield until_metric(media, "cmsv6_media_streams 1.0")
        assert "cmsv6_media_bytes_in_total" in metrics
        viewer = yield http_viewer(reactor, media.web, media.url())
        yield until(lambda: len(viewer.body) > 0, "the start of the stream")
        device.send(wire(pieces[cut:]))
        yield until(lambda: play_ok(viewer.body, 100 - 25), "the viewer's pictures")
        played = play(viewer.body)
        assert played.video_pts[0] == 1000 and played.keyframes[0] == 1000
        assert played.corrupt == 0 and played.errors == 0
        assert played.audio_codec == "aac"
        yield until_metric(media, "cmsv6_media_viewers 1.0")
        factory, _ = ws_viewer(reactor, media.web, media.url(channel=2))
        code, reason = yield within(factory.closed, "the WS viewer of channel 2")
        assert code == 4502 and "no login server configured" in reason
        media.stop()
        yield within(viewer.lost, "the viewer closed at SIGTERM")
        # twistd stopped by its signal ends as the signal says (Twisted re-raises it).
        assert media.proc is not None and media.proc.returncode == -15
        log = media.log.read_text()
        assert "a stream nobody asked for" in log and "Traceback" not in log
    finally:
        media.stop()


@defer.inlineCallbacks
def until_metric(media: MediaProcess, line: str) -> Any:
    from twisted.internet import reactor

    agent = Agent(reactor)
    found: list[str] = []

    @defer.inlineCallbacks
    def scrape() -> Any:
        response = yield agent.request(b"GET", f"http://127.0.0.1:{media.metrics}/metrics".encode())
        text = (yield readBody(response)).decode()
        found[:] = [text]
        return line in text.splitlines()

    for _ in range(200):
        ok = yield scrape()
        if ok:
            return found[0]
        yield task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"/metrics never said {line!r}: {found[:1]}")

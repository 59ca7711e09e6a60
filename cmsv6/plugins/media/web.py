"""Viewers' endpoint: WS-FLV and HTTP-FLV on one path.

``GET /live/{phone}/{channel}.flv?stream=main|sub&codec=h264&token=TOKEN``

Without ``codec`` the video is the device's: H.264, or H.265 as enhanced FLV (``hvc1``:
ffplay, VLC, Chromium with HEVC decoding). ``codec=h264`` asks for H.264 whatever the
device sends: H.265 is transcoded, once per device stream for all such viewers. Any other
``codec`` is refused (400, or close code 4004) in words.

* With ``Upgrade: websocket``: WS-FLV. The FLV byte stream comes in binary messages (one
  tag or so each; players do not care where messages split it). A refused or ended
  stream is a close frame whose code and reason say why (``cmsv6.plugins.media.fanout``
  ``CLOSE_*``): a browser sees the close event, never an HTTP status.
* Otherwise HTTP-FLV (``video/x-flv``, chunked). The response starts with the stream: a
  refusal or a stream that never came is an HTTP status with the reason as text (400,
  403, 415, 502, 503); a stream that ends after it started closes the connection.

The token is the viewing token login put in the URL (``cmsv6.media.viewing``).
Connections are bounded: at most ``max_viewers`` open (more are closed at once), and
``HEADER_TIMEOUT`` seconds to send a request's headers.
"""

from __future__ import annotations

import re
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.logger import Logger
from twisted.web import resource, server

from cmsv6.plugins.media.fanout import VIEWER_CODECS, Viewer, ViewerError, bad_request
from cmsv6.plugins.media.server import MediaServer
from cmsv6.web.bounded import BoundedSite, bounded_socket

_log = Logger()

#: Seconds a connection has to send its request's headers.
HEADER_TIMEOUT = 20.0
#: Bytes of one WebSocket message either way (autobahn bounds both with one setting): a
#: viewer's (none are expected yet), and a piece of the FLV stream (a larger tag is sent in
#: several messages; players do not care where messages split the stream).
MAX_MESSAGE = 64 * 1024
_PATH = re.compile(r"^/live/([^/]{1,40})/([0-9]{1,3})\.flv$")


def parse_request(path: str, params: dict[str, list[str]]) -> tuple[str, str, str, str]:
    """(phone, channel, stream, token) of a viewer's URL; ViewerError if it is not one."""
    m = _PATH.match(path)
    if m is None:
        raise bad_request(f"{path[:80]!r} is not /live/PHONE/CHANNEL.flv")
    stream = (params.get("stream") or ["main"])[0]
    token = (params.get("token") or [""])[0]
    return m.group(1), m.group(2), stream, token


def parse_codec(params: dict[str, list[str]]) -> str | None:
    """The codec a viewer's URL asks for (None: the device's); ViewerError if unknown."""
    codec = (params.get("codec") or [""])[0]
    if not codec:
        return None
    if codec.lower() not in VIEWER_CODECS:
        raise bad_request(f"codec {codec[:20]!r} is not one this server gives: ask for"
                          f" {' or '.join(VIEWER_CODECS)}, or leave codec out for the"
                          " device's own")  # fmt: skip
    return codec.lower()


# -- HTTP-FLV ---------------------------------------------------------------------------------


class HttpViewer(Viewer):
    def __init__(self, request: server.Request, limit: int) -> None:
        super().__init__(limit, request.getClientAddress().host)  # type: ignore[attr-defined]
        self.request = request
        self.responding = False

    def write(self, data: bytes) -> None:
        if not self.responding:
            self.responding = True
            self.request.setHeader(b"content-type", b"video/x-flv")
            self.request.setHeader(b"cache-control", b"no-store")
            self.request.setHeader(b"access-control-allow-origin", b"*")
        self.request.write(data)

    def close(self, error: ViewerError | None) -> None:
        request = self.request
        if request.finished or request._disconnected:
            return
        if request.producer is not None:
            request.unregisterProducer()
        if error is not None and not self.responding:
            request.setResponseCode(error.status)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.setHeader(b"access-control-allow-origin", b"*")
            request.setHeader(b"connection", b"close")
            channel = request.channel
            request.write(error.reason.encode("utf-8") + b"\n")
            request.finish()
            if channel is not None:
                channel.loseConnection()  # after what was written: one request, one answer
            return
        # A stream cut short must not look like one that ended: no last chunk.
        if request.channel is not None:
            request.channel.loseConnection()


class LiveResource(resource.Resource):
    """``/live/...``: WS-FLV when asked to upgrade, HTTP-FLV otherwise."""

    isLeaf = True

    def __init__(self, media: MediaServer, ws: WebSocketResource) -> None:
        super().__init__()
        self.media = media
        self.ws = ws

    def render(self, request: server.Request) -> Any:
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade == b"websocket":
            return self.ws.render(request)
        return super().render(request)

    def render_GET(self, request: server.Request) -> Any:  # noqa: N802
        path = request.path.decode("utf-8", "replace")
        params = {k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs]
                  for k, vs in request.args.items()}  # fmt: skip
        viewer = HttpViewer(request, self.media.config.viewer_queue)
        try:
            key = self.media.authorize(*parse_request(path, params))
            viewer.codec = parse_codec(params)
        except ViewerError as e:
            self.media.counters[f"refused:{e.status}"] += 1
            _log.info("HTTP-FLV viewer {peer} refused: {e}", peer=viewer.peer, e=e)
            viewer.end(e)
            return server.NOT_DONE_YET
        request.registerProducer(viewer, True)
        request.notifyFinish().addBoth(lambda _: viewer.end())
        self.media.watch(viewer, key)
        return server.NOT_DONE_YET

    def render_HEAD(self, request: server.Request) -> bytes:  # noqa: N802
        request.setResponseCode(405)
        return b""


# -- WS-FLV -----------------------------------------------------------------------------------


class WsViewer(Viewer):
    def __init__(self, protocol: FlvSocket, limit: int) -> None:
        super().__init__(limit, protocol.peer)
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        p = self.protocol
        if (
            len(data) <= MAX_MESSAGE
            and p.state == p.STATE_OPEN
            and p.send_state == p.SEND_STATE_GROUND
        ):
            # Every viewer of a stream is sent the same tag: framed once (bench/media_load.py).
            p.sendPreparedMessage(p.factory.prepared(data))
            return
        for at in range(0, len(data), MAX_MESSAGE):
            p.sendMessage(data[at : at + MAX_MESSAGE], isBinary=True)

    def close(self, error: ViewerError | None) -> None:
        p = self.protocol
        if p.state in (p.STATE_CLOSING, p.STATE_CLOSED):
            return
        if error is None:
            p.sendClose(1000)
        else:
            p.sendClose(error.code, error.reason[:120])


class FlvSocket(WebSocketServerProtocol):
    """WS-FLV of a live stream. A kind of WS-FLV (``PlaybackSocket``) says what its URL
    grants (``authorize``), whom the log names (``who``) and what its viewer watches
    (``watch``); refusals and flow control are this class's."""

    factory: FlvSocketFactory
    refused: ViewerError | None = None
    viewer: WsViewer | None = None
    codec: str | None = None
    #: Whom the log lines name.
    who = "WS-FLV viewer"

    def authorize(self, request: ConnectionRequest) -> None:
        """Keep what ``request`` asks for, if its token grants it; ViewerError otherwise."""
        media = self.factory.media
        self.stream_key = media.authorize(*parse_request(request.path, request.params))
        self.codec = parse_codec(request.params)

    def watch(self, viewer: WsViewer) -> None:
        """``viewer`` (open) watches what ``authorize`` kept."""
        self.factory.media.watch(viewer, self.stream_key)

    def onConnect(self, request: ConnectionRequest) -> None:  # noqa: N802
        try:
            self.authorize(request)
        except ViewerError as e:
            self.factory.media.counters[f"refused:{e.status}"] += 1
            _log.info("{who} {peer} refused: {e}", who=self.who, peer=self.peer, e=e)
            # Refused with a close frame after the handshake: a browser sees its code and
            # reason, never a refused handshake's HTTP status.
            self.refused = e

    def onOpen(self) -> None:  # noqa: N802
        if self.refused is not None:
            self.sendClose(self.refused.code, self.refused.reason[:120])
            return
        self.viewer = WsViewer(self, self.factory.media.config.viewer_queue)
        self.viewer.codec = self.codec
        # The HTTP channel that served the upgrade is the transport's producer: the viewer
        # takes its place so that the transport pauses it when its send buffer is full.
        try:
            self.transport.unregisterProducer()
            self.transport.registerProducer(self.viewer, True)
        except Exception:  # noqa: BLE001 - a transport without producers: no flow control
            _log.warn("WS-FLV viewer {peer} without flow control", peer=self.peer)
        self.watch(self.viewer)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        pass  # nothing is asked of viewers yet (playback control and talk-back will be)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if self.viewer is not None:
            self.viewer.end()


class FlvSocketFactory(WebSocketServerFactory):
    protocol = FlvSocket

    def __init__(self, media: MediaServer, reactor: Any) -> None:
        super().__init__(reactor=reactor)
        self.media = media
        bounded_socket(self, MAX_MESSAGE)
        self._prepared: tuple[bytes, Any] | None = None

    def prepared(self, data: bytes) -> Any:
        """``data`` as a binary WebSocket message, framed once for all the viewers it is
        offered to in turn (the last one is kept: the fan-out hands the same tag to each)."""
        last = self._prepared
        if last is None or last[0] is not data:
            last = self._prepared = (data, self.prepareMessage(data, isBinary=True))
        return last[1]


# -- the site ---------------------------------------------------------------------------------


class ViewerSite(BoundedSite):
    """At most ``max_connections`` open connections (an upgraded WebSocket still counts),
    ``HEADER_TIMEOUT`` seconds for a request's headers, and no idle timeout: an HTTP-FLV
    response lasts as long as its stream."""

    header_timeout = HEADER_TIMEOUT

    def __init__(self, root: resource.Resource, max_connections: int, reactor: Any) -> None:
        super().__init__(root, timeout=None, reactor=reactor)
        self.max_connections = max_connections


def make_site(media: MediaServer, reactor: Any) -> ViewerSite:
    """The viewers' site: ``/live/...``; anything else is a 404."""
    ws = WebSocketResource(FlvSocketFactory(media, reactor))
    root = resource.Resource()
    root.putChild(b"live", LiveResource(media, ws))
    # Recordings played back (``/playback/...``) and talk-back (``/talk/...``): their
    # sessions register with ``media`` (claimants, stop hooks, load) when they are made.
    from cmsv6.plugins.media import playback, talk

    root.putChild(b"playback", playback.resource(media, reactor))
    root.putChild(b"talk", talk.resource(media, reactor))
    # Connections a little past max_viewers: a refused viewer is told why, not cut off.
    return ViewerSite(root, media.config.max_viewers + 16, reactor)


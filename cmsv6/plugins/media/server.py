"""The media server's state: device streams, who watches them, and their lifecycle.

A viewer asks for (phone, channel, stream) with a viewing token (``authorize``). The
first viewer of a stream nobody is receiving makes the server ask the device
(``opener.open``: 0x9101 through login and the device's gateway); each step has
``open_timeout`` seconds — login's answer, then the device's connection — and a step that
fails ends every waiting viewer with words saying which device and which step. Every
later viewer shares the one device stream. When the last viewer leaves, the stream is
kept ``linger`` seconds (a viewer coming back starts at once from the kept GOP), then the
device is asked to stop (``opener.close``: 0x9102) and its connection closed.

A device connection (``cmsv6.plugins.media.ingest``) is matched to the stream that asked
for it by its SIM, read every way units write it (BCD or binary, 6 or 10 bytes), and by
channel; the oldest stream waiting for that device and channel takes it. One nobody asked
for (a unit configured to push, a stream outliving a restart) is taken as that channel's
main stream and kept ``linger`` seconds for a viewer to come, like any stream without
viewers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any, Callable

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.config import MediaConfig
from cmsv6.media.viewing import STREAMS, View, ViewRefused, allows, verify_view, view_key
from cmsv6.phone import canonical_phone, valid_phone
from cmsv6.plugins.media.fanout import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_MANY,
    DeviceStream,
    StreamKey,
    Viewer,
    ViewerError,
    bad_request,
    device_error,
    forbidden,
    unauthorized,
)
from cmsv6.plugins.media.opener import NoOpener, StreamOpener
from cmsv6.protocols.jt808.messages.jt1078 import codec_name
from cmsv6.protocols.jt1078.frames import Frame, FrameDropped, Track
from cmsv6.protocols.jt1078.sim import SimIdentity

_log = Logger()

#: Logical channels: one byte in 0x9101 and in stream packets, numbered from 1 (table 2).
MAX_CHANNEL = 255
_LIVE_REFUSAL = ("the viewing token grants device {view.phone} channel {view.channel}"
                 " ({view.stream} stream), not device {phone} channel {channel} ({stream})")


class _Entry:
    """A device stream and its timers."""

    def __init__(self, stream: DeviceStream) -> None:
        self.stream = stream
        #: "opening" (waiting for login's answer), "waiting" (for the device's connection),
        #: "live" (a connection feeds it).
        self.state = "opening"
        self.timer: IDelayedCall | None = None  # open step deadline
        self.linger: IDelayedCall | None = None
        self.opening: defer.Deferred[Any] | None = None
        self.requested = True

    def cancel(self, which: str) -> None:
        call = getattr(self, which)
        setattr(self, which, None)
        if call is not None and call.active():
            call.cancel()


class MediaServer:
    """Device streams by ``StreamKey`` and their viewers; see the module docstring."""

    def __init__(
        self,
        config: MediaConfig,
        reactor: Any,
        server_key: bytes,
        opener: StreamOpener | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.opener: StreamOpener = opener or NoOpener()
        self._view_key = view_key(server_key)
        self.entries: dict[StreamKey, _Entry] = {}
        #: Device connections (``IngestProtocol``), identified or not.
        self.connections: set[Any] = set()
        self.viewers: set[Viewer] = set()
        #: Event counters (``bytes_in``, ``bytes_out``, ``viewer_skips``, ``dropped:REASON``,
        #: ``transcode_seconds``, ``refused:REASON``...), for the metrics.
        self.counters: defaultdict[str, Any] = defaultdict(int)
        self.stopping = False
        #: Streams whose device announced its codecs: the payload type each track should
        #: carry, until a packet says otherwise (then that track is no longer checked).
        self.announced: dict[DeviceStream, dict[Track, int]] = {}
        #: Sessions that take device connections before live streams do (playback,
        #: talk-back): each is asked ``(connection, identity, channel)`` and answers the
        #: stream it takes that channel for, or None. A stream so taken that has a
        #: ``source_lost(connection, reason)`` method is told when the connection goes.
        self.claimants: list[Callable[[Any, SimIdentity, int], DeviceStream | None]] = []
        #: Called on ``stop()`` (the sessions the claimants keep end their viewers).
        self.on_stop: list[Callable[[], None]] = []
        #: Added to ``load()``: each gives ``{"streams": n, "viewers": n}`` of its own.
        self.loads: list[Callable[[], dict[str, int]]] = []

    @property
    def streams(self) -> dict[StreamKey, DeviceStream]:
        return {k: e.stream for k, e in self.entries.items()}

    def load(self) -> dict[str, int]:
        """What login is told: device streams received and viewers served."""
        load = {"streams": len(self.entries), "viewers": len(self.viewers)}
        for more in self.loads:
            for name, n in more().items():
                load[name] = load.get(name, 0) + n
        return load

    def now(self) -> float:
        return float(self.reactor.seconds())

    # -- viewers ---------------------------------------------------------------------------

    def verify(self, token: str) -> View:
        """What viewing ``token`` grants on this media server now; ViewRefused in words if
        it is malformed, not signed for this server, or expired (the caller checks it
        grants what was asked)."""
        return verify_view(self._view_key, token, self.now(), self.config.id)

    def grant(self, phone: str, channel: str | int, stream: str, token: str, refusal: str,
              streams: Collection[str] | None = None) -> tuple[str, int, View]:
        """(phone, channel, view) of a request for ``stream`` of a device's channel, if its
        viewing ``token`` grants exactly that; ViewerError in words otherwise: 400 for a phone
        or channel that is not one (or, where the request chose the stream, one not among
        ``streams``), 401 for a token refused, 403 for a token granting something else, in
        the words of ``refusal`` (a ``str.format`` template of the ``view`` granted and the
        ``phone``, ``channel`` and ``stream`` asked). One check for live, playback and
        talk-back; the view's ``params`` are the caller's to read."""
        if not valid_phone(phone):
            raise bad_request(f"{phone[:40]!r} is not a device phone number")
        try:
            number = int(channel)
        except (TypeError, ValueError):
            raise bad_request(f"channel {str(channel)[:20]!r} is not a number") from None
        if not 1 <= number <= MAX_CHANNEL:
            raise bad_request(f"channel {number} is not 1-{MAX_CHANNEL}")
        if streams is not None and stream not in streams:
            raise bad_request(f"stream {stream[:20]!r} is not one of {', '.join(streams)}")
        phone = canonical_phone(phone)
        try:
            view = self.verify(token)
        except ViewRefused as e:
            raise unauthorized(str(e)) from None
        if not allows(attrs.evolve(view, phone=canonical_phone(view.phone)), phone, number, stream):
            raise forbidden(refusal.format(view=view, phone=phone, channel=number, stream=stream))
        return phone, number, view

    def authorize(self, phone: str, channel: str | int, stream: str, token: str) -> StreamKey:
        """The live stream a request names, if its viewing token grants it; ViewerError (in
        words) otherwise."""
        phone, number, _ = self.grant(phone, channel, stream, token, _LIVE_REFUSAL, STREAMS)
        return StreamKey(phone, number, stream)

    def watch(self, viewer: Viewer, key: StreamKey) -> None:
        """``viewer`` watches ``key``, opening the device's stream if nobody receives it."""
        if self.stopping:
            viewer.end(ViewerError(CLOSE_GOING_AWAY, 503, "the media server is stopping"))
            return
        if len(self.viewers) >= self.config.max_viewers:
            self.counters["refused:too many viewers"] += 1
            viewer.end(ViewerError(CLOSE_TOO_MANY, 503,
                                   f"this media server serves {self.config.max_viewers} viewers"
                                   " already; try again later"))  # fmt: skip
            return
        entry = self.entries.get(key)
        if entry is None:
            entry = self._open(key)
        entry.cancel("linger")
        self.viewers.add(viewer)
        viewer.on_end = self._viewer_ended
        self.counters["viewers_total"] += 1
        _log.info("{key}: viewer {peer} joins ({n} watching)", key=key, peer=viewer.peer,
                  n=len(entry.stream.viewers) + 1)
        entry.stream.add(viewer)

    def _viewer_ended(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        stream = viewer.stream
        if stream is None:
            return
        stream.remove(viewer)
        root = stream.root  # a viewer of H.264 transcoded from it watches it too
        entry = self.entries.get(root.key)
        if entry is not None and entry.stream is root and not root.watched:
            self._linger(entry)

    def _linger(self, entry: _Entry) -> None:
        entry.cancel("linger")
        if self.stopping:
            return
        entry.linger = self.reactor.callLater(self.config.linger, self._close, entry,
                                              "its last viewer left")  # fmt: skip

    # -- opening and closing device streams ------------------------------------------------

    def _new_stream(self, key: StreamKey, audio: bool | None = None) -> DeviceStream:
        return DeviceStream(key, self.config.viewer_queue, self.counters, self.now, audio,
                            reactor=self.reactor)

    def _open(self, key: StreamKey) -> _Entry:
        entry = _Entry(self._new_stream(key))
        self.entries[key] = entry
        self.counters["opens"] += 1
        _log.info("{key}: asking the device to stream", key=key)
        try:
            d = defer.maybeDeferred(self.opener.open, key.phone, key.channel, key.stream)
        except Exception as e:  # noqa: BLE001 - maybeDeferred catches; belt and braces
            d = defer.fail(e)
        entry.opening = d
        if entry.state == "opening" and not d.called:
            entry.timer = self.reactor.callLater(self.config.open_timeout, self._open_late, entry)
        d.addCallbacks(self._opened, self._open_failed, callbackArgs=(entry,),
                       errbackArgs=(entry,))  # fmt: skip
        return entry

    def _opened(self, result: Any, entry: _Entry) -> None:
        entry.opening = None
        entry.cancel("timer")
        if self.entries.get(entry.stream.key) is not entry or entry.state != "opening":
            return  # gone meanwhile, or the device's connection came first
        audio = getattr(result, "audio", None)
        if isinstance(audio, bool) and not entry.stream.started:
            entry.stream.audio_hint = audio
        expected = {track: code for track, code in ((Track.VIDEO, getattr(result, "video_type", None)),
                                                    (Track.AUDIO, getattr(result, "audio_type", None)))
                    if isinstance(code, int)}  # fmt: skip
        if expected:
            self.announced[entry.stream] = expected
        entry.state = "waiting"
        entry.timer = self.reactor.callLater(self.config.open_timeout, self._no_stream, entry)

    def _open_failed(self, failure: Failure, entry: _Entry) -> None:
        entry.opening = None
        entry.cancel("timer")
        if self.entries.get(entry.stream.key) is not entry or entry.state != "opening":
            return
        if failure.check(defer.CancelledError):
            return  # _open_late has said why
        reason = str(failure.value) or failure.getErrorMessage()
        self.counters["open_failures"] += 1
        _log.warn("{key}: not opened: {reason}", key=entry.stream.key, reason=reason)
        self._fail(entry, device_error(reason))

    def _open_late(self, entry: _Entry) -> None:
        entry.timer = None
        if self.entries.get(entry.stream.key) is not entry or entry.state != "opening":
            return
        key = entry.stream.key
        self.counters["open_failures"] += 1
        reason = (f"device {key.phone} channel {key.channel}: the request to stream got no"
                  f" answer from the cluster within {self.config.open_timeout:g} s")  # fmt: skip
        _log.warn("{reason}", reason=reason)
        self._fail(entry, device_error(reason))
        if entry.opening is not None:
            entry.opening.cancel()

    def _no_stream(self, entry: _Entry) -> None:
        entry.timer = None
        if self.entries.get(entry.stream.key) is not entry or entry.state != "waiting":
            return
        key = entry.stream.key
        self.counters["open_failures"] += 1
        reason = (f"device {key.phone} did not open its stream (channel {key.channel}) within"
                  f" {self.config.open_timeout:g} s of accepting the request to")  # fmt: skip
        _log.warn("{reason}", reason=reason)
        self._fail(entry, device_error(reason))
        self._ask_close(key)

    def _fail(self, entry: _Entry, error: ViewerError) -> None:
        """The stream is gone before it ever came: its viewers are told, it is forgotten."""
        self._forget(entry)
        entry.stream.end(error)

    def _forget(self, entry: _Entry) -> None:
        entry.cancel("timer")
        entry.cancel("linger")
        self.announced.pop(entry.stream, None)
        if self.entries.get(entry.stream.key) is entry:
            del self.entries[entry.stream.key]

    def _close(self, entry: _Entry, why: str) -> None:
        """Stop receiving a stream: ask the device to stop, drop its connection."""
        entry.linger = None
        if self.entries.get(entry.stream.key) is not entry:
            return
        key = entry.stream.key
        _log.info("{key}: closing ({why})", key=key, why=why)
        self.counters["closes"] += 1
        self._forget(entry)
        entry.stream.end(device_error(f"{key}: the stream was closed ({why})"))
        source, entry.stream.source = entry.stream.source, None
        self._ask_close(key)
        if source is not None:
            source.release(entry.stream)

    def _ask_close(self, key: StreamKey) -> None:
        try:
            d = defer.maybeDeferred(self.opener.close, key.phone, key.channel, key.stream)
        except Exception as e:  # noqa: BLE001
            d = defer.fail(e)
        d.addErrback(lambda f: _log.warn("{key}: not closed on the device: {e}", key=key,
                                         e=str(f.value) or f.getErrorMessage()))  # fmt: skip

    # -- device connections ------------------------------------------------------------------

    def connection_made(self, connection: Any) -> bool:
        """A device connection opens: False (close it) past ``jt1078_max_connections``."""
        if self.stopping or len(self.connections) >= self.config.jt1078_max_connections:
            self.counters["refused:device connections"] += 1
            return False
        self.connections.add(connection)
        self.counters["device_connections_total"] += 1
        return True

    def bind(self, connection: Any, identity: SimIdentity, channel: int) -> DeviceStream:
        """The stream a connection's frames of ``channel`` go to: the oldest one waiting
        for this device and channel, or a new one nobody asked for."""
        for claim in self.claimants:
            claimed = claim(connection, identity, channel)
            if claimed is not None:
                return claimed
        candidates = [canonical_phone(c) for c in identity.candidates()]
        waiting = [e for e in self.entries.values()
                   if e.stream.key.phone in candidates and e.stream.key.channel == channel
                   and e.stream.source is None and e.state != "live"]  # fmt: skip
        if waiting:
            entry = waiting[0]
        else:
            key = StreamKey(candidates[0], channel, "main")
            live = [e for e in self.entries.values()
                    if e.stream.key.phone in candidates and e.stream.key.channel == channel]
            entry = live[0] if live else None
            if entry is not None:
                # The device connected again (its old connection may not have noticed yet).
                old, entry.stream.source = entry.stream.source, None
                if old is not None and old is not connection:
                    _log.info("{key}: a new connection from the device replaces the old one",
                              key=entry.stream.key)
                    old.release(entry.stream)
            else:
                entry = _Entry(self._new_stream(key))
                entry.requested = False
                self.entries[key] = entry
                self.counters["unrequested_streams"] += 1
                _log.info("{key}: a stream nobody asked for; kept {s:g} s for a viewer",
                          key=key, s=self.config.linger)
                self._linger(entry)
        entry.cancel("timer")
        entry.state = "live"
        entry.stream.source = connection
        match = identity.match(entry.stream.key.phone)
        if match is not None and match.how != "bcd":
            _log.info("{key}: {match}", key=entry.stream.key, match=match)
        return entry.stream

    def unbound(self, connection: Any, stream: DeviceStream, reason: str) -> None:
        """A connection that fed ``stream`` is gone: its viewers are told."""
        lost = getattr(stream, "source_lost", None)
        if lost is not None:
            lost(connection, reason)
            return
        entry = self.entries.get(stream.key)
        if entry is None or entry.stream is not stream or stream.source is not connection:
            return
        stream.source = None
        self._forget(entry)
        key = stream.key
        stream.end(device_error(f"device {key.phone} stopped its stream (channel"
                                f" {key.channel}): {reason}"))  # fmt: skip

    def connection_lost(self, connection: Any) -> None:
        self.connections.discard(connection)

    def dropped(self, event: FrameDropped) -> None:
        self.counters[f"dropped:{event.why.value}"] += 1

    def frame(self, stream: DeviceStream, frame: Frame) -> None:
        if self.announced:
            expected = self.announced.get(stream)
            if expected is not None:
                self._check_codec(stream, expected, frame)
        stream.push(frame)

    def _check_codec(self, stream: DeviceStream, expected: dict[Track, int], frame: Frame) -> None:
        """Log once, in words, a packet whose codec is not the one the device announced."""
        announced = expected.get(frame.track)
        if announced is None or announced == frame.payload_type:
            return
        del expected[frame.track]
        if not expected:
            del self.announced[stream]
        self.counters["codec_mismatches"] += 1
        key = stream.key
        _log.warn("device {phone} channel {channel}: its 0x1003 announced {track} in {announced}"
                  " but its packets carry {actual} (payload type {pt}): going by the packets",
                  phone=key.phone, channel=key.channel, track=frame.track.value,
                  announced=codec_name(announced), actual=codec_name(frame.payload_type),
                  pt=frame.payload_type)  # fmt: skip

    # -- stopping --------------------------------------------------------------------------

    def stop(self) -> None:
        """Every viewer told the server is going away; every device connection closed."""
        self.stopping = True
        for hook in list(self.on_stop):
            try:
                hook()
            except Exception:  # noqa: BLE001 - the rest still stops
                _log.failure("media server: a stop hook failed")
        for entry in list(self.entries.values()):
            self._forget(entry)
            entry.stream.end(ViewerError(CLOSE_GOING_AWAY, 503, "the media server is stopping"))
            if entry.opening is not None:
                entry.opening.cancel()
        for viewer in list(self.viewers):
            viewer.end(ViewerError(CLOSE_GOING_AWAY, 503, "the media server is stopping"))
        for connection in list(self.connections):
            connection.transport.loseConnection()

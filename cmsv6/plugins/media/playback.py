"""Recordings played back on the media server: ``/playback/{phone}/{channel}.flv?token=T``.

A viewer (WS-FLV when it asks to upgrade, HTTP-FLV otherwise, as ``/live``) brings a
viewing token for stream "playback" whose signed ``params`` say what to play: a session id,
``from``/``to`` (ISO 8601 with an offset), mode, speed, media, stream and storage types
(``PlaybackParams``). Every viewer with the same session id shares one ``PlaybackSession``:

1. The first viewer makes the server encode 0x9201 (its ``public_jt1078``, TCP; the times
   written in the device's +08:00) and send it with ``opener.send``; the device must
   answer 0x0001 result 0 within ``open_timeout``.
2. The device then opens a JT/T 1078 connection for the playback: the session claims it
   (``MediaServer.claimants``: the SIM among the phones a session waits for, the
   channel) before any live stream could, so a channel can be live and played back at
   once. No connection within ``open_timeout``: the viewers are told, 0x9202 stop is sent.
3. Controls (pause, resume, stop, fast_forward/rewind ×1–×16, keyframes, seek) come from a
   viewer's WebSocket (JSON text messages) or from login (``ControlPlayback``, by session
   id); each is a 0x9202 checked with ``accepted``.
4. The device closing its connection (the end of the range) ends the viewers normally:
   WebSocket close 1000 "end of the recording", HTTP-FLV finished with its last chunk.
   When the last viewer leaves: 0x9202 stop, and the connection is released.

Each step that fails ends the viewers with words naming the device and the step.

What comes out (``PlaybackStream``): after every control the output restarts at a
keyframe (frames are dropped until the device's next one: a player never sees half a
GOP), and its timestamps keep increasing (``PlaybackTimeline``): the device's clock is
followed from an anchor taken at that keyframe, and at any jump of the device's clock
(backwards, or forwards by more than ``MAX_GAP`` ms of playing time). While fast-forward
or rewind runs at ×N, device time is divided by N, so that a player shows the pictures at
the rate they arrive (wall-clock rate); during rewind, device time runs backwards and is
counted forwards. Audio is sent at ×1 forward only (fast audio is not something a player
can play at wall-clock rate): while fast, in keyframes mode or rewinding, audio frames
are dropped.
"""

from __future__ import annotations

import json
import re
import weakref
from collections import deque
from datetime import datetime
from typing import Any, Callable

from attrs import frozen
from autobahn.twisted.resource import WebSocketResource
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource as web_resource
from twisted.web import server as web_server

from cmsv6.address import split_address
from cmsv6.phone import canonical_phone
from cmsv6.plugins.media.fanout import (
    CLOSE_BAD_REQUEST,
    CLOSE_GOING_AWAY,
    CLOSE_TOO_MANY,
    DeviceStream,
    StreamKey,
    Viewer,
    ViewerError,
    bad_request,
    device_error,
    forbidden,
)
from cmsv6.plugins.media.server import MediaServer
from cmsv6.plugins.media.web import FlvSocket, FlvSocketFactory, HttpViewer, WsViewer
from cmsv6.protocols.flv.muxer import DEFAULT_STEP, Timeline
from cmsv6.protocols.jt808.codec import encode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.messages.jt1078 import PlaybackControl, PlaybackRequest
from cmsv6.protocols.jt1078.frames import Frame, Track
from cmsv6.protocols.jt1078.sim import SimIdentity
from cmsv6.rpc.commands import PLAYBACK_ACTIONS, PLAYBACK_SPEEDS, DeviceRefused, NoSuchPlayback
from cmsv6.rpc.replies import accepted

_log = Logger()

#: The token's ``params``, in words, as 0x9201 codes (table 24).
MODES = {"normal": 0, "fast_forward": 1, "rewind": 2, "keyframes": 3, "single_frame": 4}
MEDIA = {"audio_video": 0, "audio": 1, "video": 2}
RECORD_STREAMS = {"any": 0, "main": 1, "sub": 2}
STORAGE = {"any": 0, "main": 1, "backup": 2}
_SESSION = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_PATH = re.compile(r"^/playback/([^/]{1,40})/([0-9]{1,3})\.flv$")
#: A token that grants something else (``MediaServer.grant``).
_REFUSAL = ("the viewing token grants device {view.phone} channel {view.channel} ({view.stream}"
            " stream), not a playback of device {phone} channel {channel}")

#: Bytes of one control message from a viewer, at most.
MAX_CONTROL = 1024
#: Controls of one session waiting for the device's answer, at most.
MAX_PENDING = 4
#: A step of the device's clock larger than this (ms of playing time; ×N while fast) is
#: a jump (a gap between recordings, a seek the device made on its own): re-anchored.
MAX_GAP = 3000
#: WebSocket close code of a playback that ended as it should.
CLOSE_NORMAL = 1000
END_OF_RECORDING = "end of the recording"
STOPPED = "the playback was stopped"


def ended(reason: str) -> ViewerError:
    """A normal end (not an error): WS close 1000 with ``reason``, HTTP-FLV finished."""
    return ViewerError(CLOSE_NORMAL, 200, reason)


class BadControl(ValueError):
    """A control that cannot be sent as asked (the words say why): a bad request."""


class ControlFailed(Exception):
    """A control the device did not take (no way to reach it, not ready); in words."""


class ControlTimeout(ControlFailed):
    """A control the device did not answer in time; in words."""


# -- params -----------------------------------------------------------------------------------


@frozen
class PlaybackParams:
    """What a playback token's ``params`` ask for."""

    session: str
    start: datetime
    end: datetime | None
    mode: str = "normal"
    speed: int = 1
    media: str = "audio_video"
    stream: str = "any"
    storage: str = "any"

    @property
    def rewind(self) -> bool:
        return self.mode == "rewind"

    @property
    def fast(self) -> int:
        """The speed output time is divided by (1 unless fast-forward or rewind)."""
        return self.speed if self.mode in ("fast_forward", "rewind") else 1


def parse_time(value: Any, what: str) -> datetime:
    """An ISO 8601 time with an explicit offset; BadControl (words) otherwise."""
    if not isinstance(value, str) or len(value) > 40:
        raise BadControl(f"{what} is not an ISO 8601 time such as 2024-05-01T08:00:00+08:00")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise BadControl(f"{what} {value!r} is not an ISO 8601 time such as"
                         " 2024-05-01T08:00:00+08:00") from None  # fmt: skip
    if when.tzinfo is None or when.utcoffset() is None:
        raise BadControl(f"{what} {value!r} has no UTC offset (write +08:00 for the device's"
                         " local time)")  # fmt: skip
    if not 2000 <= when.year <= 2099:
        raise BadControl(f"{what} {value!r} is not between 2000 and 2099 (a DVR's BCD time)")
    return when


def _choice(params: dict[str, Any], name: str, table: dict[str, int], default: str) -> str:
    value = params.get(name, default)
    if value not in table:
        raise BadControl(f"{name} {str(value)[:20]!r} is not one of {', '.join(table)}")
    return str(value)


def parse_speed(value: Any, what: str = "speed") -> int:
    if isinstance(value, bool) or value not in PLAYBACK_SPEEDS:
        raise BadControl(f"{what} {str(value)[:20]!r} is not one of 1, 2, 4, 8, 16")
    return int(value)


def parse_params(params: Any) -> PlaybackParams:
    """The playback a token's ``params`` ask for; BadControl (words) if they are not one."""
    if not isinstance(params, dict):
        raise BadControl("the viewing token has no playback params (ask the Open API for the"
                         " URL: POST /api/v1/devices/PHONE/playback)")  # fmt: skip
    session = params.get("id")
    if not isinstance(session, str) or not _SESSION.match(session):
        raise BadControl("the playback's session id is not 16 to 64 URL-safe characters")
    start = parse_time(params.get("from"), "from")
    end = None if params.get("to") is None else parse_time(params.get("to"), "to")
    if end is not None and end <= start:
        raise BadControl(f"to ({end.isoformat()}) is not after from ({start.isoformat()})")
    media = _choice(params, "media", MEDIA, "audio_video")
    if media == "audio":
        raise BadControl("audio-only playback is not served (a stream starts at a video"
                         " keyframe): ask for media audio_video or video")  # fmt: skip
    return PlaybackParams(
        session=session, start=start, end=end, mode=_choice(params, "mode", MODES, "normal"),
        speed=parse_speed(params.get("speed", 1)), media=media,
        stream=_choice(params, "stream", RECORD_STREAMS, "any"),
        storage=_choice(params, "storage", STORAGE, "any"),
    )  # fmt: skip


@frozen
class Control:
    """One control, checked: the 0x9202 to send and what the output becomes after it
    (``speed``/``rewind`` None: as it was)."""

    action: str
    message: PlaybackControl
    speed: int | None = None
    rewind: bool | None = None
    audio: bool | None = None


def parse_control(channel: int, action: Any, speed: Any = None, time: Any = None) -> Control:
    """The 0x9202 for ``action``; BadControl (words) if it is not a control."""
    if action not in PLAYBACK_ACTIONS:
        raise BadControl(f"action {str(action)[:20]!r} is not one of"
                         f" {', '.join(sorted(PLAYBACK_ACTIONS))}")  # fmt: skip
    code = PLAYBACK_ACTIONS[action]
    if action in ("fast_forward", "rewind"):
        if speed is None:
            raise BadControl(f"{action} needs a speed: 1, 2, 4, 8 or 16")
        n = parse_speed(speed)
        return Control(action, PlaybackControl(channel, code, PLAYBACK_SPEEDS[n]), n,
                       action == "rewind", False)  # fmt: skip
    if action == "seek":
        if time is None:
            raise BadControl("seek needs a time (ISO 8601 with an offset)")
        return Control(action, PlaybackControl(channel, code, 0, parse_time(time, "time")))
    if action in ("resume", "play"):
        return Control(action, PlaybackControl(channel, code), 1, False, True)
    if action == "keyframes":
        return Control(action, PlaybackControl(channel, code), 1, False, False)
    return Control(action, PlaybackControl(channel, code))  # pause, stop


# -- time -------------------------------------------------------------------------------------


class PlaybackTimeline(Timeline):
    """A playback's device clock mapped onto FLV's: strictly increasing video, audio never
    backwards, across every control.

    Output time is ``anchor_out + (clock - anchor_clock) / speed`` (``anchor_clock -
    clock`` while rewinding). The anchor is taken at the stream's first frame, at the first
    frame after ``reanchor()`` (which a control calls; the stream makes it a keyframe),
    and at a step of a track's clock that goes backwards (forwards while rewinding) or
    leaps more than ``max_gap × speed`` ms; a new anchor is one usual step after the last
    output time of any track.
    """

    def __init__(self, speed: int = 1, rewind: bool = False, max_gap: int = MAX_GAP,
                 default_step: int = DEFAULT_STEP) -> None:  # fmt: skip
        super().__init__(max_gap, default_step)
        self.speed = speed
        self.rewind = rewind
        self._anchor: tuple[int, int] | None = None
        self._clock: dict[str, int] = {}
        self._out: dict[str, int] = {}
        self._steps: dict[str, int] = {}
        self._pending = False
        #: Anchors taken after the first (controls and jumps).
        self.anchors = 0

    def reanchor(self, speed: int | None = None, rewind: bool | None = None) -> None:
        """Take a new anchor at the next frame, scaling by ``speed`` from there."""
        if speed is not None:
            self.speed = speed
        if rewind is not None:
            self.rewind = rewind
        self._pending = True

    def map(self, track: str, clock: int) -> int:
        last_clock = self._clock.get(track)
        if self._anchor is None:
            self._anchor = (clock, 0)
            self._pending = False
        elif self._pending:
            self._restart(track, clock)
        elif last_clock is not None:
            step = last_clock - clock if self.rewind else clock - last_clock
            if not 0 <= step <= self.max_gap * self.speed:
                self.jumps += 1
                self._restart(track, clock)
        at, out0 = self._anchor
        span = at - clock if self.rewind else clock - at
        out = max(0, out0 + round(span / self.speed))
        last = self._out.get(track)
        if last is not None:
            floor = last + 1 if track == "video" else last
            if out < floor:
                out = floor
            else:
                self._steps[track] = max(1, out - last)
        self._clock[track] = clock
        self._out[track] = out
        return out

    def _restart(self, track: str, clock: int) -> None:
        self._pending = False
        self.anchors += 1
        step = self._steps.get(track, self.default_step)
        latest = max(self._out.values(), default=-step)
        self._anchor = (clock, latest + step)
        # The other tracks' clocks are from before: their next frames follow this anchor
        # (a step from their own last clock would look like a jump and move it again).
        self._clock.clear()


class PlaybackStream(DeviceStream):
    """A playback's FLV: ``DeviceStream`` with its own timeline, dropping every frame after
    a control until the device's next keyframe, and audio while not at ×1 forward."""

    def __init__(self, session: PlaybackSession, gop_limit: int, counters: dict[str, Any],
                 clock: Callable[[], float], speed: int = 1, rewind: bool = False,
                 audio: bool = True, audio_hint: bool | None = None) -> None:  # fmt: skip
        super().__init__(session.key, gop_limit, counters, clock, audio_hint)
        self.session = session
        self.timeline = PlaybackTimeline(speed, rewind)
        #: Whether audio frames are muxed now (×1 forward).
        self.audio_on = audio
        #: Dropping frames until the next video keyframe (a control was made).
        self.awaiting_keyframe = False
        #: Pictures muxed when each of the last controls was made (where a player should
        #: find a keyframe).
        self.control_marks: deque[int] = deque(maxlen=64)

    def make_muxer(self, audio: bool, *args: Any, **kwargs: Any) -> Any:
        muxer = super().make_muxer(audio, *args, **kwargs)
        muxer.timeline = self.timeline
        return muxer

    def control(self, speed: int | None, rewind: bool | None, audio: bool | None) -> None:
        """The device was asked to change what it sends: the output restarts at its next
        keyframe, re-anchored there, at ``speed``."""
        self.finish_audio()  # what the transcoder holds belongs before the control
        self.awaiting_keyframe = True
        self.control_marks.append(self.muxer.counters.video_tags if self.muxer else 0)
        self.set_mode(speed, rewind, audio)

    def set_mode(self, speed: int | None, rewind: bool | None, audio: bool | None) -> None:
        self.timeline.reanchor(speed, rewind)
        if audio is not None:
            self.audio_on = audio

    def push(self, frame: Frame) -> None:
        if self.failed is not None:
            return
        track = frame.track
        if self.awaiting_keyframe:
            if not (track is Track.VIDEO and frame.is_keyframe):
                self.frames += 1
                if track is not Track.DATA:
                    self._drop("awaiting keyframe after a control")
                return
            self.awaiting_keyframe = False
        if track is Track.AUDIO and not self.audio_on:
            self.frames += 1
            self._drop("audio while playing fast")
            return
        super().push(frame)

    def source_lost(self, connection: Any, reason: str) -> None:
        """``MediaServer.unbound``: the device's connection is gone."""
        self.session.source_lost(connection, reason)


# -- sessions ---------------------------------------------------------------------------------


def _started(reply: dict[str, Any], phone: str, what: str) -> None:
    """The device's answer to 0x9201: JT/T 1078 §5.6.3 has it answer with the resource
    list it will play (0x1205); many units send a general response instead (result 0)."""
    if reply["msg_id"] == 0x1205:
        return
    accepted(reply, phone, 0x9201, what)


class PlaybackSession:
    """One device playback and its viewers (see the module docstring)."""

    def __init__(self, playbacks: Playbacks, phone: str, channel: int, params: PlaybackParams) -> None:
        self.playbacks = playbacks
        self.media = playbacks.media
        self.id = params.session
        self.key = StreamKey(phone, channel, "playback")
        self.params = params
        conf = self.media.config
        fast = params.mode in ("fast_forward", "rewind", "keyframes")
        self.stream = PlaybackStream(self, conf.viewer_queue, self.media.counters, self.media.now,
                                     speed=params.fast, rewind=params.rewind, audio=not fast,
                                     audio_hint=False if params.media == "video" else None)  # fmt: skip
        #: "opening" (0x9201 sent), "waiting" (for the device's connection), "playing",
        #: "over".
        self.state = "opening"
        self.timer: IDelayedCall | None = None
        self.request: defer.Deferred[Any] | None = None
        self.pending = 0
        #: Where the device plays, as ``speed``/``rewind`` (for a control the device refuses).
        self.mode = (params.fast, params.rewind, not fast)

    def __str__(self) -> str:
        return f"playback {self.id[:8]}… of device {self.key.phone} channel {self.key.channel}"

    @property
    def what(self) -> str:
        # Short: a WebSocket close reason is at most 123 bytes.
        return f"0x9201 (channel {self.key.channel} from {self.params.start.isoformat()})"

    # -- viewers ---------------------------------------------------------------------------

    def add(self, viewer: Viewer) -> None:
        viewer.on_end = self._viewer_ended
        self.media.counters["playback_viewers_total"] += 1
        _log.info("{s}: viewer {peer} joins ({n} watching)", s=self, peer=viewer.peer,
                  n=len(self.stream.viewers) + 1)  # fmt: skip
        self.stream.add(viewer)

    def _viewer_ended(self, viewer: Viewer) -> None:
        self.stream.remove(viewer)
        if self.state != "over" and not self.stream.viewers:
            self.close("its last viewer left")

    # -- opening ---------------------------------------------------------------------------

    def start(self) -> None:
        """0x9201 to the device, then wait for its connection."""
        conf = self.media.config
        p = self.params
        host, port = split_address(conf.public_jt1078)
        speed = PLAYBACK_SPEEDS[p.speed] if p.mode in ("fast_forward", "rewind") else 0
        request = PlaybackRequest(host, port, 0, self.key.channel, MEDIA[p.media],
                                  RECORD_STREAMS[p.stream], STORAGE[p.storage], MODES[p.mode],
                                  speed, p.start, p.end)  # fmt: skip
        try:
            body = encode_body(request)
        except CodecError as e:
            self.fail(device_error(f"device {self.key.phone}: {self.what} does not encode: {e}"))
            return
        _log.info("{s}: sending {what}", s=self, what=self.what)
        self.media.counters["playbacks"] += 1
        d = defer.maybeDeferred(self.media.opener.send, self.key.phone, 0x9201, body)
        self.request = d
        if not d.called:
            self.timer = self.media.reactor.callLater(conf.open_timeout, self._late)
        d.addCallback(self._answered)
        d.addErrback(self._not_started)

    def _answered(self, reply: dict[str, Any]) -> None:
        self.request = None
        self._cancel()
        if self.state == "over":
            _started(reply, self.key.phone, self.what)
            self._send_stop()  # nobody watches any more
            return
        if self.state != "opening":
            return
        _started(reply, self.key.phone, self.what)
        self.state = "waiting"
        self.timer = self.media.reactor.callLater(self.media.config.open_timeout, self._no_connection)

    def _not_started(self, failure: Failure) -> None:
        self.request = None
        self._cancel()
        if self.state != "opening":
            return  # over meanwhile (the viewers left, or _late has said why)
        if failure.check(defer.CancelledError):
            return
        reason = str(failure.value) or failure.getErrorMessage()
        self.media.counters["playback_failures"] += 1
        _log.warn("{s}: not started: {reason}", s=self, reason=reason)
        self.fail(device_error(reason))

    def _late(self) -> None:
        self.timer = None
        if self.state != "opening":
            return
        reason = (f"device {self.key.phone} channel {self.key.channel}: {self.what} got no"
                  f" answer within {self.media.config.open_timeout:g} s")  # fmt: skip
        self.media.counters["playback_failures"] += 1
        _log.warn("{reason}", reason=reason)
        self.fail(device_error(reason))
        if self.request is not None:
            self.request.cancel()

    def _no_connection(self) -> None:
        self.timer = None
        if self.state != "waiting":
            return
        reason = (f"device {self.key.phone} did not open its playback connection (channel"
                  f" {self.key.channel}) within {self.media.config.open_timeout:g} s of"
                  " accepting 0x9201")  # fmt: skip
        self.media.counters["playback_failures"] += 1
        _log.warn("{reason}", reason=reason)
        self.fail(device_error(reason))
        self._send_stop()

    def connected(self, connection: Any) -> None:
        """The device's playback connection: its frames come to ``stream``."""
        self._cancel()
        self.state = "playing"
        self.stream.source = connection
        _log.info("{s}: the device's connection from {peer} plays", s=self,
                  peer=getattr(connection, "peer", "?"))  # fmt: skip

    def source_lost(self, connection: Any, reason: str) -> None:
        if self.stream.source is not connection:
            return
        self.stream.source = None
        if self.state != "playing":
            return
        _log.info("{s}: the device closed its connection ({reason})", s=self, reason=reason)
        if not self.stream.started:
            self.fail(device_error(f"device {self.key.phone} closed its playback connection"
                                   f" (channel {self.key.channel}) before sending a picture:"
                                   f" {reason}"))  # fmt: skip
            return
        self.finish(END_OF_RECORDING)

    # -- ending ----------------------------------------------------------------------------

    def _cancel(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _over(self) -> None:
        """Forgotten, its connection released (once)."""
        self.state = "over"
        self._cancel()
        self.playbacks.forget(self)
        source, self.stream.source = self.stream.source, None
        if source is not None:
            source.release(self.stream)

    def fail(self, error: ViewerError) -> None:
        """The playback cannot go on: its viewers are told why."""
        self._over()
        self.stream.end(error)

    def finish(self, why: str) -> None:
        """The playback ended as it should: its viewers are closed normally."""
        if self.state == "over":
            return
        self._over()
        self.stream.finish_audio()
        self.stream.end(ended(why))

    def close(self, why: str) -> None:
        """Stop playing: 0x9202 stop (once the device has said yes to 0x9201), release."""
        was = self.state
        _log.info("{s}: closing ({why})", s=self, why=why)
        # The connection is released once the device has answered the stop: closed first,
        # a unit ends the playback itself and then refuses the stop of one it no longer has.
        source, self.stream.source = self.stream.source, None
        self._over()
        self.stream.end(device_error(f"{self}: closed ({why})"))
        if was in ("waiting", "playing"):
            self._send_stop(source)
        elif source is not None:
            source.release(self.stream)

    def _send_stop(self, source: Any = None) -> None:
        """0x9202 stop; ``source``, the connection, is released when the device answered."""

        released: list[bool] = []

        def release(result: Any) -> Any:
            if source is not None and not released:
                released.append(True)
                source.release(self.stream)
            if late.active():
                late.cancel()
            return result

        # An answer that never comes does not hold the connection for ever.
        late = self.media.reactor.callLater(self.media.config.open_timeout, release, None)
        try:
            body = encode_body(PlaybackControl(self.key.channel, PLAYBACK_ACTIONS["stop"]))
        except CodecError:  # pragma: no cover - a channel is one byte
            release(None)
            return
        d = defer.maybeDeferred(self.media.opener.send, self.key.phone, 0x9202, body)
        d.addBoth(release)
        d.addCallback(accepted, self.key.phone, 0x9202, "0x9202 (stop the playback)")
        d.addErrback(lambda f: _log.warn("{s}: not stopped on the device: {e}", s=self,
                                         e=str(f.value) or f.getErrorMessage()))  # fmt: skip

    # -- control ---------------------------------------------------------------------------

    def control(self, action: Any, speed: Any = None, time: Any = None) -> defer.Deferred[None]:
        """Send one control; fires when the device accepted it, or fails with BadControl,
        DeviceRefused or ControlFailed (in words)."""
        try:
            control = parse_control(self.key.channel, action, speed, time)
            body = encode_body(control.message)
        except BadControl as e:
            return defer.fail(e)
        except CodecError as e:
            return defer.fail(BadControl(f"0x9202 does not encode: {e}"))
        if self.state == "opening":
            return defer.fail(ControlFailed(f"{self}: the device has not accepted the playback yet"))
        if self.state == "over":
            return defer.fail(NoSuchPlayback(f"{self} is over"))
        if self.pending >= MAX_PENDING:
            return defer.fail(ControlFailed(f"{self}: {MAX_PENDING} controls wait for the"
                                            " device's answer already"))  # fmt: skip
        before = self.mode
        after = (control.speed if control.speed is not None else before[0],
                 control.rewind if control.rewind is not None else before[1],
                 control.audio if control.audio is not None else before[2])  # fmt: skip
        self.mode = after
        self.stream.control(control.speed, control.rewind, control.audio)
        self._hold(control.action == "pause")
        self.pending += 1
        self.media.counters["playback_controls"] += 1
        what = f"0x9202 ({control.action} the playback of channel {self.key.channel})"
        _log.info("{s}: {what}", s=self, what=what)
        d = defer.maybeDeferred(self.media.opener.send, self.key.phone, 0x9202, body)
        d.addTimeout(self.media.config.open_timeout, self.media.reactor)
        d.addCallback(accepted, self.key.phone, 0x9202, what)

        def done(result: Any) -> Any:
            self.pending -= 1
            if isinstance(result, Failure):
                if self.mode == after and self.state != "over":
                    self.mode = before  # the device plays on as it did
                    self.stream.set_mode(*before)
                    self._hold(False)
                if result.check(defer.TimeoutError, defer.CancelledError):
                    return Failure(ControlTimeout(f"device {self.key.phone}: {what} got no answer"
                                                 f" within {self.media.config.open_timeout:g} s"))  # fmt: skip
                if not result.check(DeviceRefused, BadControl, ControlFailed):
                    return Failure(ControlFailed(str(result.value) or result.getErrorMessage()))
                return result
            if control.action == "stop":
                # After the answer has gone to whoever asked.
                self.media.reactor.callLater(0, self.finish, STOPPED)
            return None

        return d.addBoth(done)

    def _hold(self, paused: bool) -> None:
        """A paused device sends nothing: its connection's silence timeout is off meanwhile
        (``IngestProtocol`` is a ``TimeoutMixin``)."""
        source = self.stream.source
        set_timeout = getattr(source, "setTimeout", None)
        if set_timeout is not None:
            set_timeout(None if paused else self.media.config.open_timeout)


class Playbacks:
    """A media server's playback sessions, by id; registered with its hooks (claimants,
    stop, load) once (``playbacks_of``)."""

    def __init__(self, media: MediaServer) -> None:
        self.media = media
        self.sessions: dict[str, PlaybackSession] = {}
        media.claimants.append(self.claim)
        media.on_stop.append(self.stop)
        media.loads.append(self.load)

    def viewers(self) -> int:
        return sum(len(s.stream.viewers) for s in self.sessions.values())

    def load(self) -> dict[str, int]:
        return {"streams": len(self.sessions), "viewers": self.viewers()}

    def watch(self, viewer: Viewer, phone: str, channel: int, params: PlaybackParams) -> PlaybackSession | None:
        """``viewer`` watches the playback ``params`` name: the session's, or a new one."""
        media = self.media
        if media.stopping:
            viewer.end(ViewerError(CLOSE_GOING_AWAY, 503, "the media server is stopping"))
            return None
        cap = media.config.max_viewers
        if len(media.viewers) + self.viewers() >= cap or len(self.sessions) >= cap:
            media.counters["refused:too many viewers"] += 1
            viewer.end(ViewerError(CLOSE_TOO_MANY, 503, f"this media server serves {cap} viewers"
                                   " already; try again later"))  # fmt: skip
            return None
        session = self.sessions.get(params.session)
        if session is not None and (session.key.phone, session.key.channel) != (phone, channel):
            viewer.end(forbidden(f"playback session {params.session[:8]}… plays device"
                                 f" {session.key.phone} channel {session.key.channel}, not"
                                 f" device {phone} channel {channel}"))  # fmt: skip
            return None
        if session is None:
            session = PlaybackSession(self, phone, channel, params)
            self.sessions[session.id] = session
            session.add(viewer)
            session.start()
        else:
            session.add(viewer)
        return session

    def forget(self, session: PlaybackSession) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def claim(self, connection: Any, identity: SimIdentity, channel: int) -> DeviceStream | None:
        """``MediaServer.claimants``: the oldest session waiting for this device's channel."""
        phones = {canonical_phone(c) for c in identity.candidates()}
        for session in self.sessions.values():
            # Its answer to 0x9201 may come after its connection (through login).
            if (session.state in ("opening", "waiting") and session.key.channel == channel
                    and session.key.phone in phones):  # fmt: skip
                session.connected(connection)
                return session.stream
        return None

    def control(self, session_id: str, action: Any, speed: Any = None, time: Any = None) -> defer.Deferred[None]:
        """Control session ``session_id``: NoSuchPlayback if there is none."""
        session = self.sessions.get(session_id)
        if session is None:
            return defer.fail(NoSuchPlayback(f"this media server plays back no session"
                                             f" {str(session_id)[:64]!r} (never opened, or over)"))  # fmt: skip
        return session.control(action, speed, time)

    def stop(self) -> None:
        """``MediaServer.on_stop``: every viewer told, every device asked to stop."""
        for session in list(self.sessions.values()):
            was = session.state
            session._over()
            session.stream.end(ViewerError(CLOSE_GOING_AWAY, 503, "the media server is stopping"))
            if session.request is not None:
                session.request.cancel()
            if was in ("waiting", "playing"):
                session._send_stop()


_PLAYBACKS: weakref.WeakKeyDictionary[MediaServer, Playbacks] = weakref.WeakKeyDictionary()


def playbacks_of(media: MediaServer) -> Playbacks:
    """``media``'s playback sessions (made, and hooked into it, on first use)."""
    playbacks = _PLAYBACKS.get(media)
    if playbacks is None:
        playbacks = _PLAYBACKS[media] = Playbacks(media)
    return playbacks


# -- viewers' requests ------------------------------------------------------------------------


def authorize(media: MediaServer, path: str, params: dict[str, Any]) -> tuple[str, int, PlaybackParams]:
    """(phone, channel, params) of a playback URL whose token grants it; ViewerError (in
    words) otherwise."""
    m = _PATH.match(path)
    if m is None:
        raise bad_request(f"{path[:80]!r} is not /playback/PHONE/CHANNEL.flv")
    token = (params.get("token") or [""])[0]
    phone, number, view = media.grant(m.group(1), m.group(2), "playback", token, _REFUSAL)
    try:
        return phone, number, parse_params(view.params)
    except BadControl as e:
        raise bad_request(f"the viewing token's playback: {e}") from None


class PlaybackHttpViewer(HttpViewer):
    """HTTP-FLV: a playback that ended as it should is finished (its last chunk)."""

    def close(self, error: ViewerError | None) -> None:
        request = self.request
        if error is None or error.code != CLOSE_NORMAL or not self.responding:
            if error is not None and error.code == CLOSE_NORMAL:
                error = device_error(f"the playback ended before it started: {error.reason}")
            super().close(error)
            return
        if request.finished or request._disconnected:
            return
        if request.producer is not None:
            request.unregisterProducer()
        channel = request.channel
        request.finish()
        if channel is not None:
            channel.loseConnection()  # after the last chunk: one request, one answer


class PlaybackResource(web_resource.Resource):
    """``/playback/...``: WS-FLV when asked to upgrade, HTTP-FLV otherwise."""

    isLeaf = True

    def __init__(self, media: MediaServer, ws: WebSocketResource) -> None:
        super().__init__()
        self.media = media
        self.ws = ws

    def render(self, request: web_server.Request) -> Any:
        if (request.getHeader(b"upgrade") or b"").lower() == b"websocket":
            return self.ws.render(request)
        return super().render(request)

    def render_GET(self, request: web_server.Request) -> Any:  # noqa: N802
        path = request.path.decode("utf-8", "replace")
        params = {k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs]
                  for k, vs in request.args.items()}  # fmt: skip
        viewer = PlaybackHttpViewer(request, self.media.config.viewer_queue)
        try:
            phone, channel, playback = authorize(self.media, path, params)
        except ViewerError as e:
            self.media.counters[f"refused:{e.status}"] += 1
            _log.info("HTTP-FLV playback viewer {peer} refused: {e}", peer=viewer.peer, e=e)
            viewer.end(e)
            return web_server.NOT_DONE_YET
        request.registerProducer(viewer, True)
        request.notifyFinish().addBoth(lambda _: viewer.end())
        playbacks_of(self.media).watch(viewer, phone, channel, playback)
        return web_server.NOT_DONE_YET

    def render_HEAD(self, request: web_server.Request) -> bytes:  # noqa: N802
        request.setResponseCode(405)
        return b""


_MISSING = object()


class PlaybackSocket(FlvSocket):
    """WS-FLV of a playback, and its controls: JSON text messages (at most
    ``MAX_CONTROL`` bytes) ``{"action", "speed", "time", "id"}``, answered
    ``{"id", "ok": true}`` or ``{"id", "ok": false, "error"}`` only when they have an id."""

    factory: PlaybackSocketFactory
    session: PlaybackSession | None = None
    who = "WS-FLV playback viewer"

    def authorize(self, request: ConnectionRequest) -> None:
        # The module's ``authorize``, as for HTTP-FLV.
        self.playback = authorize(self.factory.media, request.path, request.params)

    def watch(self, viewer: WsViewer) -> None:
        # A normal end (``ended``) closes with 1000 and its reason, as any ViewerError does.
        self.session = playbacks_of(self.factory.media).watch(viewer, *self.playback)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        try:
            self._message(payload, isBinary)
        except Exception:  # noqa: BLE001 - one viewer's message never reaches the reactor
            _log.failure("WS-FLV playback viewer {peer}: control message", peer=self.peer)

    def _message(self, payload: bytes, binary: bool) -> None:
        if binary or len(payload) > MAX_CONTROL:
            why = ("playback controls are JSON text messages, not binary" if binary else
                   f"a playback control message is at most {MAX_CONTROL} bytes")  # fmt: skip
            _log.info("WS-FLV playback viewer {peer}: {why}; closing", peer=self.peer, why=why)
            self.sendClose(CLOSE_BAD_REQUEST, why)
            return
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            message = None
        if not isinstance(message, dict):
            # Nothing to answer to (no id): said in the log only.
            _log.info("WS-FLV playback viewer {peer}: a control message that is not a JSON"
                      " object: {text!r}", peer=self.peer, text=payload[:80])  # fmt: skip
            return
        ident = message.get("id", _MISSING)
        session = self.session
        if session is None or session.state == "over":
            self._answer(ident, "the playback is not running")
            return
        d = session.control(message.get("action"), message.get("speed"), message.get("time"))
        d.addCallbacks(lambda _: self._answer(ident, None),
                       lambda f: self._answer(ident, str(f.value) or f.getErrorMessage()))  # fmt: skip

    def _answer(self, ident: Any, error: str | None) -> None:
        """The answer to a control, if it had an id (mpegts.js breaks on text messages)."""
        if error is not None:
            _log.info("WS-FLV playback viewer {peer}: control not made: {why}", peer=self.peer,
                      why=error)  # fmt: skip
        if ident is _MISSING or self.state != self.STATE_OPEN:
            return
        answer: dict[str, Any] = {"id": ident, "ok": error is None}
        if error is not None:
            answer["error"] = error
        self.sendMessage(json.dumps(answer).encode("utf-8"), isBinary=False)


class PlaybackSocketFactory(FlvSocketFactory):
    protocol = PlaybackSocket


def resource(media: MediaServer, reactor: Any) -> web_resource.Resource:
    """``/playback``: mounted by ``cmsv6.plugins.media.web.make_site``."""
    playbacks_of(media)
    return PlaybackResource(media, WebSocketResource(PlaybackSocketFactory(media, reactor)))

"""Simulated cameras: a device's channels stream the clip over JT/T 1078, as units do.

After answering a 0x9101, a unit opens a TCP connection to the address in it and sends that
channel's video (H.264) and/or audio (G.711A) as stream packets: its phone as the SIM (BCD,
6 bytes from a 2013 unit, 10 from a 2019 one), one sequence counter for the connection,
timestamps in ms, each frame cut into bodies of at most 950 bytes marked first / middle /
last. A 0x9102 closes, pauses, resumes or switches the stream.

Here every camera plays the same clip (``cmsv6.media.clip``: a moving picture with a clock,
a 1 kHz tone), looped for ever with timestamps that keep increasing. What keeps a fleet of
cameras cheap:

* the clip is encoded once per process (and cached on disk), and cut into packets once per
  SIM length (``Track``): a camera only writes each packet's sequence number, SIM, channel,
  timestamp and intervals into a copy of it (``stamp``);
* one timer per fleet (``Streamer``) sends every camera what is due, a tick at a time;
* a camera whose connection cannot take more (the transport pauses its producer), that is
  paused, or that falls far behind skips ahead as a live camera does, and starts its video
  again at the next I-frame. Nothing queues up in the simulator.

``VideoConfig.pace`` plays the clip faster than real time (tests); 1.0, the default, is
real time.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from cmsv6.media.clip import FPS, ClipFrame
from cmsv6.protocols.jt808.fields import bcd_encode
from cmsv6.protocols.jt808.messages.jt1078 import (
    AvCodec,
    CloseType,
    LiveStream,
    RealtimeAvRequest,
    RequestDataType,
)
from cmsv6.protocols.jt1078.packet import DataType, Packet, build_packet, split_frame

_log = Logger()

AUDIO_HEADERS = ("hisilicon", "none")
#: 0x9101 data types a camera serves: what it then sends (video, audio).
SERVED = {
    RequestDataType.AUDIO_VIDEO: (True, True),
    RequestDataType.VIDEO: (True, False),
    RequestDataType.LISTEN: (False, True),
}
#: The sub-stream: QCIF at 15 frames a second (the main stream is the clip's CIF at 25).
SUB = (176, 144, 15)
#: Distinct reasons a stream ended that are kept for the status line (others are counted).
MAX_REASONS = 64


@frozen
class VideoConfig:
    """How a fleet's cameras stream (the channel count is the device's, ``DeviceConfig``)."""

    #: "hisilicon": G.711A frames carry the ``00 01 LL 00`` header; "none": bare samples.
    audio_header: str = "hisilicon"
    #: Clip time per real time: 1.0 is real time; more fast-forwards (tests).
    pace: float = 1.0
    #: Where the encoded clip is kept between runs (None: encoded in every process).
    cache_dir: str | None = None
    #: Seconds between the fleet's sending turns.
    tick: float = 1.0 / FPS
    #: Seconds of clip a camera may fall behind before it skips ahead.
    max_lag: float = 1.0


# -- packets --------------------------------------------------------------------------------


def sim_digits(phone: str, version: int) -> str:
    """The SIM field's digits: the phone as 6 BCD bytes (2013 units) or 10 (2019 ones)."""
    return phone.rjust(20 if version == 2019 else 12, "0")


def hisilicon(payload: bytes) -> bytes:
    """``payload`` behind the HiSilicon header ``00 01 LL 00`` (LL: 16-bit words after it)."""
    words = len(payload) // 2
    if len(payload) % 2 or words > 0xFF:
        raise ValueError(f"{len(payload)} bytes do not fit a HiSilicon header")
    return bytes((0, 1, words, 0)) + payload


def stamp(
    template: bytes,
    sim_size: int,
    sequence: int,
    sim_channel: bytes,
    timestamp: int,
    intervals: bytes | None,
) -> bytes:
    """A packet from its template (``Track``): the header fields that vary written in.

    ``sim_channel`` is the SIM's BCD bytes and the channel byte; ``intervals`` the last
    I-frame and last frame intervals (two WORDs), for video only."""
    out = bytearray(template)
    out[6] = (sequence >> 8) & 0xFF
    out[7] = sequence & 0xFF
    at = 8 + sim_size
    out[8 : at + 1] = sim_channel
    out[at + 2 : at + 10] = timestamp.to_bytes(8, "big")
    if intervals is not None:
        out[at + 10 : at + 14] = intervals
    return bytes(out)


@frozen
class Cut:
    """A clip frame as packet templates (sequence numbers from 0, SIM, channel, timestamp
    and intervals zero)."""

    timestamp: int
    data_type: int
    packets: tuple[bytes, ...]


@frozen
class Track:
    """One kind of a clip's frames (video or audio), cut for one SIM length, in order."""

    cuts: tuple[Cut, ...]
    times: tuple[int, ...]
    keys: tuple[int, ...]  # indexes of the I-frames (video)
    duration: int
    video: bool
    sim_size: int
    #: Frames a second (video), for the log.
    fps: int = 0
    size: tuple[int, int] = (0, 0)


def cut_track(
    frames: tuple[ClipFrame, ...],
    payload_type: int,
    duration: int,
    sim_size: int,
    wrap: Callable[[bytes], bytes] | None = None,
    fps: int = 0,
    size: tuple[int, int] = (0, 0),
) -> Track:
    """``frames`` cut into packet templates once (``wrap`` changes each payload first)."""
    video = bool(frames) and frames[0].data_type <= DataType.B_FRAME
    cuts = []
    for f in frames:
        payload = wrap(f.payload) if wrap is not None else f.payload
        template = Packet(
            sim="0" * 2 * sim_size,
            channel=1,  # stamped per camera, like the SIM
            data_type=f.data_type,
            timestamp=0,
            last_i_frame_interval=0 if video else None,
            last_frame_interval=0 if video else None,
            payload_type=payload_type,
        )
        packets = tuple(build_packet(p) for p in split_frame(template, payload))
        cuts.append(Cut(f.timestamp, f.data_type, packets))
    return Track(
        cuts=tuple(cuts),
        times=tuple(c.timestamp for c in cuts),
        keys=tuple(i for i, c in enumerate(cuts) if c.data_type == DataType.I_FRAME),
        duration=duration,
        video=video,
        sim_size=sim_size,
        fps=fps,
        size=size,
    )


# -- one camera -----------------------------------------------------------------------------

CONNECTING, STREAMING, CLOSING, CLOSED = "connecting", "streaming", "closing", "closed"


class _Position:
    """Where a camera is in a looping track: frame ``index`` of loop ``loop``."""

    __slots__ = ("index", "loop", "track")

    def __init__(self, track: Track) -> None:
        self.track = track
        self.index = 0
        self.loop = 0

    @property
    def due(self) -> int:
        """The clip time (ms since the stream began) of the next frame."""
        return self.loop * self.track.duration + self.track.times[self.index]

    def advance(self) -> None:
        self.index += 1
        if self.index == len(self.track.cuts):
            self.index = 0
            self.loop += 1

    def seek(self, at: int, keyframe: bool = False) -> None:
        """To the first frame at or after clip time ``at`` (the first I-frame: ``keyframe``)."""
        track = self.track
        loop, offset = divmod(at, track.duration)
        index = bisect.bisect_left(track.times, offset)
        if keyframe:
            k = bisect.bisect_left(track.keys, index)
            index = track.keys[k] if k < len(track.keys) else len(track.cuts)
        if index >= len(track.cuts):
            loop, index = loop + 1, track.keys[0] if keyframe else 0
        self.loop, self.index = loop, index


class Sender:
    """A connection a unit opens to the media server on a request (a live stream, a
    playback, a talk-back) and sends packets on; the producer of its connection
    (``IPushProducer``). Subclasses say what to send (``run``) and what to do with what
    comes back (``received``); ``kind`` names them in the log and ``registry`` is the
    streamer's table they are kept in, by (phone, channel)."""

    kind = "stream"
    registry = "cameras"

    def __init__(
        self, streamer: Any, phone: str, version: int, channel: int, address: str
    ) -> None:
        self.streamer = streamer
        self.phone = phone
        self.channel = channel
        self.address = address
        digits = sim_digits(phone, version)
        self.sim_size = len(digits) // 2
        self._sim_channel = bcd_encode(digits, self.sim_size) + bytes((channel,))
        self.state = CONNECTING
        self.held = False  # by the transport: it cannot take more now
        self.connecting: Deferred[Any] | None = None
        self.transport: Any = None
        self.bytes = 0
        self._sequence = 0
        self._by_request = False
        self._close_reason = "closed"
        #: Whether the connection was made (it counts among the open streams).
        self.streamed = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.phone, self.channel)

    def describe(self) -> str:
        """What is being sent, for the log: "streaming video and audio to ..."."""
        return f"{self.kind} to {self.address}"

    # -- the connection -------------------------------------------------------------------

    def connected(self, transport: Any, now: float) -> None:
        if self.state != CONNECTING:
            transport.loseConnection()
            return
        self.state = STREAMING
        self.transport = transport
        self.streamed = True
        self.begin(now)
        transport.registerProducer(self, True)
        self.streamer.started(self)
        self.run(now)

    def begin(self, now: float) -> None:
        """The connection is up (before the first ``run``)."""

    def received(self, data: bytes) -> None:
        """Bytes from the media server: dropped unless a subclass listens."""

    def lost(self, reason: Failure) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.transport = None
        if self._by_request:
            why = self._close_reason
        elif reason.check(ConnectionDone):
            why = f"closed by the media server {self.address}"
        else:
            why = f"connection to {self.address} lost: {reason.getErrorMessage()}"
        self.streamer.finished(self, why, failed=not self._by_request)

    def connect_failed(self, reason: Failure) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        if reason.check(CancelledError) or self._by_request:
            self.streamer.finished(self, self._close_reason, failed=False)
        else:
            why = f"cannot connect to {self.address}: {reason.getErrorMessage()}"
            self.streamer.finished(self, why, failed=True)

    def close(self, why: str) -> None:
        """End it (a control, a new request for the channel, the fleet stopping)."""
        if self.state in (CLOSING, CLOSED):
            return
        self._by_request = True
        self._close_reason = why
        if self.state == CONNECTING:
            if self.connecting is not None:
                self.connecting.cancel()
            return
        self.state = CLOSING
        self.transport.loseConnection()

    def abort(self) -> None:
        if self.state == CLOSING and self.transport is not None:
            self.transport.abortConnection()

    # -- IPushProducer --------------------------------------------------------------------

    def pauseProducing(self) -> None:
        self.held = True

    def resumeProducing(self) -> None:
        self.held = False

    def stopProducing(self) -> None:
        pass  # connectionLost follows

    # -- sending --------------------------------------------------------------------------

    def run(self, now: float) -> None:
        """Send what is due."""

    def stamped(self, cut: Cut, timestamp: int, intervals: bytes | None, out: list[bytes]) -> int:
        """A frame's packets stamped for this connection, added to ``out``; their size."""
        size = 0
        for template in cut.packets:
            packet = stamp(
                template, self.sim_size, self._sequence, self._sim_channel, timestamp, intervals
            )
            self._sequence = (self._sequence + 1) & 0xFFFF
            out.append(packet)
            size += len(packet)
        return size

    def write(self, out: list[bytes], video_bytes: int) -> None:
        if out:
            data = b"".join(out)
            self.bytes += len(data)
            self.streamer.sent(len(data), video_bytes)
            self.transport.write(data)


def intervals(timestamp: int, last_i: int | None, last_frame: int | None) -> bytes:
    """A video packet's last I-frame and last frame intervals (ms, two WORDs; 0 when there
    was none, and the distance either way: a rewind goes back in time)."""
    i = 0 if last_i is None else min(0xFFFF, abs(timestamp - last_i))
    f = 0 if last_frame is None else min(0xFFFF, abs(timestamp - last_frame))
    return i.to_bytes(2, "big") + f.to_bytes(2, "big")


class Camera(Sender):
    """One channel's live stream."""

    def __init__(
        self,
        streamer: Any,
        phone: str,
        version: int,
        request: RealtimeAvRequest,
        audio_codec: str = "g711a",
        video_codec: int = AvCodec.H264,
    ) -> None:
        super().__init__(
            streamer, phone, version, request.channel, f"{request.server_ip}:{request.tcp_port}"
        )
        self.stream_type = request.stream_type
        self.send_video, self.send_audio = SERVED[RequestDataType(request.data_type)]
        self.video_codec = video_codec
        self.paused = False  # by 0x9102
        self._t0 = 0.0
        self._video = _Position(streamer.video_track(self.stream_type, self.sim_size, video_codec))
        self._audio = _Position(streamer.audio_track(self.sim_size, audio_codec))
        self._last_i: int | None = None
        self._last_frame: int | None = None

    def describe(self) -> str:
        what = " and ".join(
            w for w, on in (("video", self.send_video), ("audio", self.send_audio)) if on
        )
        track = self._video.track
        stream = "main" if self.stream_type == LiveStream.MAIN else "sub"
        return (
            f"streaming {what} to {self.address} ({stream} stream {track.size[0]}x"
            f"{track.size[1]} at {track.fps} fps, SIM of {self.sim_size} bytes)"
        )

    def clip_time(self, now: float) -> int:
        """ms of clip since the stream began."""
        return int((now - self._t0) * 1000 * self.streamer.config.pace)

    def begin(self, now: float) -> None:
        self._t0 = now

    # -- IPushProducer --------------------------------------------------------------------

    def resumeProducing(self) -> None:
        if self.held:
            self.held = False
            self._skip_to(self.clip_time(self.streamer.now()))

    # -- 0x9102 ---------------------------------------------------------------------------

    def pause(self) -> None:
        self.paused = True

    def resume(self, now: float) -> None:
        if self.paused:
            self.paused = False
            self._skip_to(self.clip_time(now))

    def switch(self, stream_type: int) -> None:
        """Main ⇄ sub stream: the new one's pictures from its next I-frame."""
        if stream_type == self.stream_type:
            return
        self.stream_type = stream_type
        at = self._video.due
        self._video = _Position(
            self.streamer.video_track(stream_type, self.sim_size, self.video_codec)
        )
        self._video.seek(at, keyframe=True)
        self._last_i = self._last_frame = None

    def stop_media(self, close_type: int) -> bool:
        """0x9102 close: stop the audio, the video or both; True when nothing is left."""
        if close_type in (CloseType.AUDIO_AND_VIDEO, CloseType.VIDEO):
            self.send_video = False
        if close_type in (CloseType.AUDIO_AND_VIDEO, CloseType.AUDIO):
            self.send_audio = False
        return not (self.send_video or self.send_audio)

    # -- sending --------------------------------------------------------------------------

    def _skip_to(self, at: int) -> None:
        """Go on from clip time ``at`` as a live camera does after a gap: audio at once,
        pictures from the next I-frame."""
        self._video.seek(at, keyframe=True)
        self._audio.seek(at)
        self._last_i = self._last_frame = None

    def run(self, now: float) -> None:
        """Send every frame that is due."""
        if self.state != STREAMING or self.paused or self.held:
            return
        at = self.clip_time(now)
        video, audio = self._video, self._audio
        late = at - int(self.streamer.config.max_lag * 1000)
        if (self.send_video and video.due < late) or (self.send_audio and audio.due < late):
            self._skip_to(at)
        out: list[bytes] = []
        video_bytes = 0
        while True:
            tv = video.due if self.send_video else None
            ta = audio.due if self.send_audio else None
            if tv is not None and tv <= at and (ta is None or tv <= ta):
                cut = video.track.cuts[video.index]
                video_bytes += self.stamped(
                    cut, tv, intervals(tv, self._last_i, self._last_frame), out
                )
                if cut.data_type == DataType.I_FRAME:
                    self._last_i = tv
                self._last_frame = tv
                video.advance()
            elif ta is not None and ta <= at:
                self.stamped(audio.track.cuts[audio.index], ta, None, out)
                audio.advance()
            else:
                break
        self.write(out, video_bytes)


class _StreamProtocol(Protocol):
    """A sender's connection: what the media server sends goes to ``received``."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def connectionMade(self) -> None:
        self.sender.connected(self.transport, self.sender.streamer.now())

    def dataReceived(self, data: bytes) -> None:
        try:
            self.sender.received(data)
        except Exception:  # noqa: BLE001 - logged; the connection is closed
            _log.failure("{phone} channel {channel}: reading failed",
                         phone=self.sender.phone, channel=self.sender.channel)
            self.sender.close("reading failed")

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.sender.lost(reason)


class StreamFactory(Factory):
    noisy = False

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    def buildProtocol(self, addr: object) -> _StreamProtocol:
        return _StreamProtocol(self.sender)

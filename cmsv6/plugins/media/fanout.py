"""One device stream's FLV, prepared once and sent to every viewer: the muxer, the audio
transcoder, the last GOP for viewers who join, and each viewer's bounded queue.

``DeviceStream`` takes a channel's frames (``cmsv6.protocols.jt1078.frames.Frame``) and
turns them into FLV tags once, whoever watches:

* It starts at a keyframe. Whether the FLV announces audio is decided then, because a
  player told to expect audio that never comes stalls: audio is on when the opener said
  the device sends audio (its 0x1003 attributes), or when an audio frame in a codec we
  can give browsers (AAC, or one ``AudioTranscoder`` turns into AAC) arrives before the
  first keyframe or within ``AUDIO_WAIT`` ms of video after it (the frames in between
  are held, then muxed). Otherwise the stream is video only, and audio is dropped.
* The last GOP (from the last keyframe; the sequence headers kept apart) is kept, up to
  ``gop_limit`` bytes, so that a viewer who joins gets the header, the sequence headers
  and a keyframe at once, and plays at once.
* H.265 is served as it comes, as enhanced FLV (``hvc1``). A viewer who asked for H.264
  (``Viewer.codec == "h264"``, for players without HEVC) watches the same stream when the
  device sends H.264; when it sends H.265, a ``TranscodedStream`` made with the first such
  viewer: one ``cmsv6.media.transcode.VideoTranscoder`` (a thread) turns the pictures into
  H.264 for all of them, the audio going along in step, and is stopped when the last of
  them leaves or the stream ends.
* Any other codec ends the stream for every viewer with the muxer's words
  (``UnsupportedCodec``).

``Viewer`` is one viewer's end: whatever connection it sits behind (WS-FLV, HTTP-FLV)
registers it as its transport's push producer, so it knows when the connection is full.
Tags then wait in its queue, bounded by ``limit`` bytes; past the bound the queue is
emptied and the viewer skips to the next keyframe (the rest of the GOP would not decode
without what was dropped), resuming with the sequence headers. A viewer whose queue
overflows ``MAX_SKIPS`` times without once draining is hopeless and closed. A slow viewer
costs the others nothing: a tag is written to each connection that takes it and queued
for the others.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from attrs import frozen
from twisted.logger import Logger

from cmsv6.media.audio import AudioTranscoder, TranscodeError
from cmsv6.media.transcode import Picture, VideoTranscoder
from cmsv6.protocols.flv.muxer import (
    H264,
    H265,
    BadFrame,
    FlvError,
    FlvMuxer,
    FlvTag,
    UnsupportedCodec,
)
from cmsv6.protocols.flv.tags import TagType
from cmsv6.protocols.jt1078.audio import AUDIO_CODECS
from cmsv6.protocols.jt1078.frames import Frame, Track
from cmsv6.protocols.jt1078.packet import DataType

if TYPE_CHECKING:
    from cmsv6.plugins.media.ingest import IngestProtocol

_log = Logger()

#: How much video (ms after the first keyframe) waits for a first audio frame before the
#: stream starts without audio.
AUDIO_WAIT = 300
#: Times a viewer's queue may overflow without once draining before it is closed.
MAX_SKIPS = 3
#: Seconds between two log lines about one stream's audio frames that did not transcode.
AUDIO_LOG_EVERY = 30.0
#: What a viewer may ask for (``codec=``): H.264 whatever the device sends.
VIEWER_CODECS = ("h264",)


@frozen
class StreamKey:
    phone: str
    channel: int
    stream: str

    def __str__(self) -> str:
        return f"device {self.phone} channel {self.channel} ({self.stream} stream)"


@frozen
class ViewerError(Exception):
    """Why a viewer is refused or its stream ends, in words; ``code`` is the WebSocket close
    code, ``status`` the HTTP status (if the response has not started yet)."""

    code: int
    status: int
    reason: str

    def __str__(self) -> str:
        return self.reason


#: WebSocket close codes (HTTP-FLV gets the status instead, or a closed connection once
#: the stream has started). Documented in docs/architecture.md's media section.
CLOSE_GOING_AWAY = 4000  # the media server is stopping
CLOSE_UNAUTHORIZED = 4001  # no valid viewing token (missing, malformed, expired, another server's)
CLOSE_FORBIDDEN = 4003  # the token grants another device, channel or stream
CLOSE_BAD_REQUEST = 4004  # not /live/{phone}/{channel}.flv?stream=main|sub&token=...
CLOSE_TOO_SLOW = 4008  # the viewer could not keep up
CLOSE_TOO_MANY = 4029  # max_viewers reached
CLOSE_UNSUPPORTED = 4015  # the device sends a codec FLV output does not carry
CLOSE_DEVICE = 4502  # the device could not be asked, did not stream, or stopped
CLOSE_INTERNAL = 4500  # a fault of this server's


def unauthorized(reason: str) -> ViewerError:
    return ViewerError(CLOSE_UNAUTHORIZED, 403, reason)


def forbidden(reason: str) -> ViewerError:
    return ViewerError(CLOSE_FORBIDDEN, 403, reason)


def bad_request(reason: str) -> ViewerError:
    return ViewerError(CLOSE_BAD_REQUEST, 400, reason)


def device_error(reason: str) -> ViewerError:
    return ViewerError(CLOSE_DEVICE, 502, reason)


class Viewer:
    """One viewer's bounded queue in front of its connection (an IPushProducer the
    connection's transport pauses and resumes). Subclasses write and end the connection."""

    def __init__(self, limit: int, peer: str = "") -> None:
        self.limit = limit
        self.peer = peer
        self.stream: DeviceStream | None = None
        self.queue: deque[bytes] = deque()
        #: Bytes in ``queue``, and the most it ever held.
        self.queued = 0
        self.max_queued = 0
        self.paused = False
        #: Waiting for a keyframe after the queue overflowed.
        self.skipping = False
        self.skips = 0
        self._skips_in_a_row = 0
        #: Bytes handed to the connection.
        self.sent = 0
        self.started = False
        self.ended = False
        #: "h264": H.264 whatever the device sends (transcoded from H.265); None: as sent.
        self.codec: str | None = None
        #: Called once when the viewer has ended (the server forgets it).
        self.on_end: Callable[[Viewer], None] | None = None

    # -- the connection's side (subclasses) ------------------------------------------------

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self, error: ViewerError | None) -> None:
        """End the connection; with an error, tell the viewer why if the protocol can."""
        raise NotImplementedError

    # -- IPushProducer -----------------------------------------------------------------------

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self._drain()

    def stopProducing(self) -> None:  # noqa: N802
        self.paused = True

    # -- from the stream ---------------------------------------------------------------------

    def begin(self, items: list[bytes], at_keyframe: bool) -> None:
        """The stream's start for this viewer: the FLV header and sequence headers, then the
        GOP so far (``at_keyframe``), or nothing more until the next keyframe."""
        self.started = True
        # The FLV header goes out whatever the queue: a stream without it is no FLV, and
        # it is a few dozen bytes. What follows may be skipped (the sequence headers are
        # sent again with the next keyframe).
        self._send(items[0])
        for data in items[1:]:
            self._put(data)
        if not at_keyframe:
            self.skipping = True

    def offer(self, tag: FlvTag) -> bool:
        """Send or queue ``tag``; False if it was skipped."""
        if self.ended or not self.started:
            return False
        if self.skipping:
            if not (tag.keyframe and tag.kind == TagType.VIDEO):
                return False
            self.skipping = False
            assert self.stream is not None
            for config in self.stream.configs():
                self._put(config)
            if self.skipping:  # the sequence headers alone overflowed
                return False
        self._put(tag.data)
        return not self.skipping

    def end(self, error: ViewerError | None = None) -> None:
        """The viewer is done (its connection closed, or the stream ended): forget it once."""
        if self.ended:
            return
        self.ended = True
        self.queue.clear()
        self.queued = 0
        if self.stream is not None:
            self.stream.remove(self)
        callback, self.on_end = self.on_end, None
        if callback is not None:
            callback(self)
        try:
            self.close(error)
        except Exception:  # noqa: BLE001 - a connection already gone
            _log.failure("viewer {peer}: closing", peer=self.peer)

    # -- the queue -------------------------------------------------------------------------

    def _put(self, data: bytes) -> None:
        if self.skipping or self.ended:
            return
        if not self.paused and not self.queue:
            self._send(data)
            return
        if self.queued + len(data) > self.limit:
            self._overflow()
            return
        self.queue.append(data)
        self.queued += len(data)
        self.max_queued = max(self.max_queued, self.queued)
        if not self.paused:
            self._drain()

    def _send(self, data: bytes) -> None:
        self.sent += len(data)
        if self.stream is not None:
            self.stream.counters["bytes_out"] += len(data)
        self.write(data)

    def _drain(self) -> None:
        while self.queue and not self.paused and not self.ended:
            data = self.queue.popleft()
            self.queued -= len(data)
            self._send(data)
        if not self.queue:
            self._skips_in_a_row = 0

    def _overflow(self) -> None:
        self.queue.clear()
        self.queued = 0
        self.skipping = True
        self.skips += 1
        self._skips_in_a_row += 1
        if self.stream is not None:
            self.stream.counters["viewer_skips"] += 1
        if self._skips_in_a_row > MAX_SKIPS:
            self.end(ViewerError(
                CLOSE_TOO_SLOW, 503,
                f"this connection cannot keep up with the stream: more than {self.limit}"
                f" bytes waited for it {self._skips_in_a_row} times in a row",
            ))  # fmt: skip


class DeviceStream:
    """One (phone, channel, stream) of one device: FLV tags prepared once for every viewer.

    ``counters`` is shared with the server (``bytes_out``, ``viewer_skips``, ``dropped:*``
    and ``transcode_seconds`` are summed there)."""

    def __init__(
        self,
        key: StreamKey,
        gop_limit: int,
        counters: dict[str, Any],
        clock: Callable[[], float],
        audio: bool | None = None,
        reactor: Any = None,
    ) -> None:
        self.key = key
        #: For the video transcoder's thread to hand its pictures back (None: no H.264
        #: for viewers of H.265).
        self.reactor = reactor
        self.gop_limit = gop_limit
        self.counters = counters
        self.clock = clock
        #: What the opener said about the device's audio (None: not known).
        self.audio_hint = audio
        self.viewers: set[Viewer] = set()
        #: The device connection feeding it (None while it is being opened).
        self.source: IngestProtocol | None = None
        self.muxer: FlvMuxer | None = None
        self.header: bytes | None = None
        self.video_config: bytes | None = None
        self.audio_config: bytes | None = None
        #: The last GOP's tags, from its keyframe; None when it outgrew ``gop_limit``.
        self.gop: list[bytes] | None = None
        self._gop_bytes = 0
        #: Frames from the first keyframe, while audio is undecided.
        self._held: list[Frame] = []
        self._held_bytes = 0
        self._audio_type: int | None = None  # the first audio frame's payload type
        self.transcoder: AudioTranscoder | None = None
        self._transcoder_type: int | None = None
        self._audio_refused: int | None = None  # a payload type that has no transcoder
        self._audio_logged = float("-inf")
        self.failed: ViewerError | None = None
        self.frames = 0
        #: The device's video codec (JT/T 1078 payload type), once the stream started.
        self.video_codec: int | None = None
        #: The H.264 for viewers who asked for it, while the device sends H.265.
        self.derived: TranscodedStream | None = None

    @property
    def started(self) -> bool:
        return self.header is not None

    @property
    def root(self) -> DeviceStream:
        """The stream the device feeds (this one; a transcoded stream's is its parent's)."""
        return self

    @property
    def watched(self) -> bool:
        """Whether anybody watches this stream or what is transcoded from it."""
        return bool(self.viewers) or (self.derived is not None and bool(self.derived.viewers))

    # -- viewers ---------------------------------------------------------------------------

    def configs(self) -> list[bytes]:
        return [c for c in (self.video_config, self.audio_config) if c is not None]

    def add(self, viewer: Viewer) -> None:
        """A viewer joins: it starts at once if the stream has (from the last keyframe)."""
        if self.failed is not None:
            viewer.end(self.failed)
            return
        if viewer.codec == "h264" and self.video_codec == H265:
            derived = self._derived()
            if derived is None:
                viewer.end(ViewerError(CLOSE_UNSUPPORTED, 415,
                                       f"{self.key} sends H.265, which this stream cannot"
                                       " transcode to H.264; leave codec=h264 out to watch"
                                       " it as H.265"))  # fmt: skip
            else:
                derived.add(viewer)
            return
        viewer.stream = self
        self.viewers.add(viewer)
        if self.header is not None:
            self._begin(viewer)

    def remove(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    def _begin(self, viewer: Viewer) -> None:
        assert self.header is not None
        items = [self.header, *self.configs()]
        if self.gop is not None:
            viewer.begin(items + self.gop, at_keyframe=True)
        else:
            viewer.begin(items, at_keyframe=False)

    def fail(self, error: ViewerError) -> None:
        """The stream cannot go on: every viewer is told why and closed; viewers who come
        later are told at once."""
        if self.failed is None:
            self.failed = error
        derived, self.derived = self.derived, None
        if derived is not None:
            derived.fail(error)
        for viewer in list(self.viewers):
            viewer.end(error)
        self.viewers.clear()

    # -- H.264 for viewers of H.265 --------------------------------------------------------

    def _derived(self) -> TranscodedStream | None:
        """The transcoded stream, made now if there is none; None (and the viewer told
        why) when this server cannot make one."""
        if self.derived is None:
            if self.reactor is None:
                return None
            self.derived = TranscodedStream(self, self.reactor)
            _log.info("{key}: transcoding H.265 to H.264 for the viewers who asked for it",
                      key=self.key)  # fmt: skip
        return self.derived

    def derived_gone(self, derived: TranscodedStream) -> None:
        """The transcoded stream has no viewer left: it is stopped."""
        if self.derived is derived:
            self.derived = None
            derived.stop()
            _log.info("{key}: transcoding stopped (no viewer asks for H.264)", key=self.key)

    def _forward(self, frame: Frame) -> None:
        if self.derived is not None:
            self.derived.take(frame)

    def end(self, error: ViewerError) -> None:
        """The stream is over (the device stopped, or the server closes it)."""
        self.fail(error)
        self.finish_audio()

    # -- frames in ---------------------------------------------------------------------------

    def push(self, frame: Frame) -> None:
        """One frame of the device's channel. Never raises on input."""
        if self.failed is not None:
            return
        self.frames += 1
        track = frame.track
        if track is Track.DATA:
            return
        if self.muxer is None:
            self._before_start(frame)
        elif track is Track.VIDEO:
            self._video(frame)
            self._forward(frame)
        else:
            self._audio(frame)
            self._forward(frame)

    def _drop(self, why: str, n: int = 1) -> None:
        self.counters[f"dropped:{why}"] += n

    def _before_start(self, frame: Frame) -> None:
        if frame.track is Track.AUDIO:
            if self._audio_type is None and frame.payload_type in AUDIO_CODECS:
                self._audio_type = frame.payload_type
            if not self._held:
                self._drop("before the first keyframe")
                return
        elif not self._held and not frame.is_keyframe:
            self._drop("before the first keyframe")
            return
        self._held.append(frame)
        self._held_bytes += len(frame.payload)
        first = self._held[0].timestamp or 0
        if (
            self.audio_hint is not None
            or self._audio_type is not None
            or (frame.timestamp or 0) - first >= AUDIO_WAIT
            or self._held_bytes > self.gop_limit
        ):
            self._start()

    def _start(self) -> None:
        # A codec FLV output does not carry is said before any byte goes out (an HTTP-FLV
        # viewer then gets a status, not a stream that stops).
        video = next(f for f in self._held if f.track is Track.VIDEO)
        try:
            FlvMuxer().video(b"", 0, video.payload_type)
        except UnsupportedCodec as e:
            self._held, self._held_bytes = [], 0
            self._unsupported(e)
            return
        except FlvError:
            pass  # an empty frame in a codec the muxer takes
        audio = self.audio_hint if self.audio_hint is not None else self._audio_type is not None
        self.muxer = self.make_muxer(audio)
        self.video_codec = self.muxer.codec = video.payload_type
        self.header = self.muxer.header()
        held, self._held, self._held_bytes = self._held, [], 0
        _log.info("{key}: streaming {codec}, {what}", key=self.key,
                  codec="H.265" if video.payload_type == H265 else "H.264",
                  what="video and audio (AAC)" if audio else "video only")  # fmt: skip
        if self.video_codec == H265:
            for viewer in [v for v in self.viewers if v.codec == "h264"]:
                self.viewers.discard(viewer)
                self.add(viewer)
        for viewer in list(self.viewers):
            self._begin(viewer)
        for frame in held:
            if self.failed is not None:
                return
            if frame.track is Track.VIDEO:
                self._video(frame)
            else:
                self._audio(frame)
            self._forward(frame)

    def make_muxer(self, audio: bool) -> FlvMuxer:
        """The stream's muxer (a playback's brings its own timeline)."""
        return FlvMuxer(audio=audio)

    def _video(self, frame: Frame) -> None:
        assert self.muxer is not None
        try:
            tags = self.muxer.video(frame.payload, frame.timestamp or 0, frame.payload_type)
        except UnsupportedCodec as e:
            self._unsupported(e)
            return
        except FlvError as e:
            self._drop("not muxable")
            _log.debug("{key}: video frame skipped: {e}", key=self.key, e=e)
            return
        for tag in tags:
            self._publish(tag)

    def _unsupported(self, e: UnsupportedCodec) -> None:
        _log.warn("{key}: {e}; closing its viewers", key=self.key, e=e)
        self.fail(ViewerError(CLOSE_UNSUPPORTED, 415, f"{self.key}: {e}"))

    def _audio(self, frame: Frame) -> None:
        assert self.muxer is not None
        if not self.muxer.audio:
            self._drop("audio not announced")
            return
        pt = frame.payload_type
        if AUDIO_CODECS.get(pt) == "aac":
            self._aac(frame.payload, frame.timestamp or 0, None)
            return
        if pt != self._transcoder_type:
            if pt == self._audio_refused:
                self._drop("audio codec not supported")
                return
            self.finish_audio()
            try:
                self.transcoder = AudioTranscoder.for_payload_type(pt)
            except TranscodeError as e:
                self._audio_refused = pt
                self._drop("audio codec not supported")
                _log.warn("{key}: audio dropped: {e}", key=self.key, e=e)
                return
            self._transcoder_type = pt
        transcoder = self.transcoder
        assert transcoder is not None
        skipped = transcoder.counters.skipped
        began = time.perf_counter()
        out = transcoder.feed(frame.payload, frame.timestamp or 0)
        self.counters["transcode_seconds"] += time.perf_counter() - began
        if transcoder.counters.skipped != skipped:
            self._drop("audio not decodable")
            now = self.clock()
            if now - self._audio_logged >= AUDIO_LOG_EVERY:
                self._audio_logged = now
                _log.warn("{key}: audio frame skipped ({n} so far): {e}", key=self.key,
                          n=transcoder.counters.skipped, e=transcoder.last_error)
        for aac in out:
            self._aac(aac.data, aac.timestamp, aac.config)

    def finish_audio(self) -> None:
        """Flush the transcoder (the unit changed codec, or the stream ends)."""
        transcoder, self.transcoder, self._transcoder_type = self.transcoder, None, None
        if transcoder is None:
            return
        began = time.perf_counter()
        out = transcoder.flush()
        self.counters["transcode_seconds"] += time.perf_counter() - began
        if self.failed is None:
            for aac in out:
                self._aac(aac.data, aac.timestamp, aac.config)

    def _aac(self, data: bytes, timestamp: int, config: bytes | None) -> None:
        assert self.muxer is not None
        try:
            tags = self.muxer.aac(data, timestamp, config)
        except (BadFrame, FlvError) as e:
            self._drop("not muxable")
            _log.debug("{key}: audio frame skipped: {e}", key=self.key, e=e)
            return
        for tag in tags:
            self._publish(tag)

    # -- tags out ----------------------------------------------------------------------------

    def _publish(self, tag: FlvTag) -> None:
        if tag.config:
            if tag.kind == TagType.VIDEO:
                self.video_config = tag.data
            else:
                self.audio_config = tag.data
        elif tag.keyframe and tag.kind == TagType.VIDEO:
            self.gop = [tag.data]
            self._gop_bytes = len(tag.data)
        elif self.gop is not None:
            self._gop_bytes += len(tag.data)
            if self._gop_bytes > self.gop_limit:
                self.gop = None  # joiners wait for the next keyframe
            else:
                self.gop.append(tag.data)
        for viewer in list(self.viewers):
            try:
                if not viewer.offer(tag):
                    self._drop("viewer skipping to a keyframe")
            except Exception:  # noqa: BLE001 - one viewer's trouble is not the stream's
                _log.failure("{key}: viewer {peer} failed; closing it", key=self.key,
                             peer=viewer.peer)
                viewer.end(ViewerError(CLOSE_INTERNAL, 500, "internal error sending the stream"))


class TranscodedStream(DeviceStream):
    """H.264 for the viewers of an H.265 device stream who asked for it: the parent's
    pictures through one ``VideoTranscoder``, its audio frames along with them (so that
    they stay in step), muxed and fanned out as any device stream's. Made with the first
    such viewer, stopped when the last one leaves or the parent ends."""

    def __init__(self, parent: DeviceStream, reactor: Any) -> None:
        audio = parent.muxer.audio if parent.muxer is not None else parent.audio_hint
        super().__init__(parent.key, parent.gop_limit, parent.counters, parent.clock, audio)
        self.parent = parent
        self.video_transcoder = VideoTranscoder(reactor, self._transcoded, name=str(parent.key))
        self._seconds = 0.0

    @property
    def root(self) -> DeviceStream:
        return self.parent

    def take(self, frame: Frame) -> None:
        """One of the parent's frames (H.265 pictures, audio)."""
        if frame.track is Track.VIDEO:
            if not self.video_transcoder.feed(frame.payload, frame.timestamp or 0):
                self._drop("not transcoded to H.264")
        elif frame.track is Track.AUDIO:
            if not self.video_transcoder.along(frame):
                self._drop("not transcoded to H.264")

    def _transcoded(self, items: list[Any]) -> None:
        seconds = self.video_transcoder.seconds
        self.counters["video_transcode_seconds"] += seconds - self._seconds
        self._seconds = seconds
        for item in items:
            if isinstance(item, Picture):
                kind = DataType.I_FRAME if item.keyframe else DataType.P_FRAME
                self.push(Frame(self.key.channel, int(kind), item.timestamp, item.data, H264))
            else:
                self.push(item)

    def remove(self, viewer: Viewer) -> None:
        super().remove(viewer)
        if not self.viewers:
            self.parent.derived_gone(self)

    def fail(self, error: ViewerError) -> None:
        super().fail(error)
        self.stop()

    def stop(self) -> None:
        """End the transcoder's thread and what this stream holds."""
        self.video_transcoder.stop()
        self.finish_audio()

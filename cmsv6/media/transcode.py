"""Units' H.265 to H.264 for players without HEVC, with FFmpeg (PyAV), off the reactor.

Browsers without HEVC decoding cannot play what H.265 cameras send; a viewer asking for
``codec=h264`` gets the stream transcoded, once per device stream whoever watches:

* ``H265ToH264`` is the codec work, synchronous: FFmpeg's ``hevc`` decoder (one thread)
  and libx264 (``preset=ultrafast``, ``tune=zerolatency``: no B-frames, no lookahead, a
  packet out for each picture in; one thread), Annex B out with SPS/PPS in front of every
  IDR picture. An IDR picture is made exactly where the input has an IRAP picture, so the
  output's GOP is the input's; the unit's timestamps are kept. The bit rate is
  ``BITS_PER_PIXEL`` of the picture's pixels a second (about 2.3 Mbit/s at 720p25, 250
  kbit/s at CIF). A picture size change starts a new encoder (new SPS/PPS). Input that
  does not decode is counted with its reason in ``counters.errors``; it never raises.
* ``VideoTranscoder`` runs it in a thread of its own (one per transcoder), fed from the
  reactor through a bounded queue. PyAV holds the GIL inside the codec calls (two such
  threads take longer than one doing both streams in turn), so the reactor thread waits
  at most one call at a time (a picture's decode or encode: a few ms at 720p), never a
  stream's worth; the transcoders of a process share one core's worth of Python time. When the
  thread falls behind (``max_frames`` pictures or ``max_bytes`` waiting) the picture that
  does not fit and every one after it up to the next IRAP picture is dropped, counted in
  ``dropped``: the output then resumes at a keyframe, never with a picture missing its
  reference. What comes out is handed to ``deliver`` on the reactor thread
  (``reactor.callFromThread``), in the order it went in; ``along`` puts anything else
  (the stream's audio frames) in that order too, so audio stays in step with pictures
  that come out later than they went in. ``stop`` ends the thread (after the picture in
  hand) and nothing more is delivered.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from fractions import Fraction
from typing import Any, Callable

import av
from attrs import Factory, define, frozen
from av.video.frame import PictureType
from twisted.logger import Logger

from cmsv6.protocols.flv import hevc
from cmsv6.protocols.flv.h264 import split_annexb

_log = Logger()

#: Output bit rate per pixel per second (x264 ABR): 0.1 bit a pixel a picture.
BITS_PER_PIXEL = 0.1
#: The least output bit rate, for tiny pictures.
MIN_BIT_RATE = 100_000
#: Pictures a second assumed for the encoder's rate control.
FPS = 25
#: An IDR picture at least this often (pictures) if the input never has another IRAP.
MAX_GOP = 250
#: What may wait for the thread: pictures, other items (audio), bytes.
MAX_FRAMES = 50
MAX_ALONG = 200
MAX_BYTES = 16 * 1024 * 1024
#: Why pictures are dropped when the thread falls behind.
BEHIND = "transcoding behind: skipped to the next keyframe"


@frozen
class Picture:
    """One H.264 access unit out: Annex B (SPS/PPS first when ``keyframe``), the unit's
    timestamp (ms) of the picture it came from."""

    data: bytes
    timestamp: int
    keyframe: bool


@define
class CodecCounters:
    pictures_in: int = 0
    pictures_out: int = 0
    #: Input not transcoded, by reason.
    errors: Counter[str] = Factory(Counter)
    #: Encoders made (more than one: the picture size changed).
    encoders: int = 0


def bit_rate(width: int, height: int, fps: int = FPS) -> int:
    return max(MIN_BIT_RATE, int(width * height * fps * BITS_PER_PIXEL))


def is_irap(access_unit: bytes) -> bool:
    """Whether an H.265 access unit is an IRAP picture (where decoding can start)."""
    return any(hevc.nal_type(n) in hevc.IRAP for n in split_annexb(access_unit))


class H265ToH264:
    """The codec work for one stream, synchronous (see the module docstring)."""

    def __init__(self, fps: int = FPS) -> None:
        self.fps = fps
        self.counters = CodecCounters()
        self.last_error: str | None = None
        self._decoder = av.CodecContext.create("hevc", "r")
        self._decoder.thread_count = 1
        self._encoder: Any = None
        self._size: tuple[int, int] | None = None
        self._n = 0
        self._times: dict[int, int] = {}

    def transcode(self, access_unit: bytes, timestamp: int, keyframe: bool | None = None) -> list[Picture]:
        """The H.264 pictures for one H.265 access unit (Annex B) at ``timestamp`` (ms);
        ``keyframe`` (an IRAP picture) is read from the unit if not given. Never raises."""
        self.counters.pictures_in += 1
        if keyframe is None:
            keyframe = is_irap(access_unit)
        packet = av.Packet(access_unit)
        packet.pts = packet.dts = timestamp
        packet.time_base = Fraction(1, 1000)
        try:
            frames = self._decoder.decode(packet)
        except (av.error.FFmpegError, ValueError) as e:
            self._error("not decodable as H.265", e)
            return []
        out: list[Picture] = []
        for frame in frames:
            ts = timestamp if frame.pts is None else int(frame.pts)
            out += self._encode(frame, ts, keyframe)
        return out

    def flush(self) -> list[Picture]:
        """What the codecs still hold (the stream ends)."""
        out: list[Picture] = []
        try:
            for frame in self._decoder.decode(None):
                out += self._encode(frame, int(frame.pts or 0), False)
        except (av.error.FFmpegError, ValueError) as e:
            self._error("not decodable as H.265", e)
        if self._encoder is not None:
            out += self._packets(None)
        return out

    def _encode(self, frame: av.VideoFrame, timestamp: int, keyframe: bool) -> list[Picture]:
        out: list[Picture] = []
        size = (frame.width, frame.height)
        if size != self._size:
            if self._encoder is not None:
                out += self._packets(None)
            self._open(*size)
            keyframe = True
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")  # 10-bit or 4:2:2 in: what browsers take
        frame.pts = self._n
        frame.time_base = Fraction(1, self.fps)
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        self._times[self._n] = timestamp
        self._n += 1
        return out + self._packets(frame)

    def _open(self, width: int, height: int) -> None:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base = Fraction(1, self.fps)
        enc.framerate = self.fps
        enc.bit_rate = bit_rate(width, height, self.fps)
        enc.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "bframes": "0",
            "g": str(MAX_GOP),
            "sc_threshold": "0",  # IDR pictures where the input has IRAP pictures only
            "forced-idr": "1",  # a picture forced to I is an IDR picture
            "threads": "1",
        }
        self._encoder = enc
        self._size = (width, height)
        self.counters.encoders += 1

    def _packets(self, frame: av.VideoFrame | None) -> list[Picture]:
        try:
            packets = self._encoder.encode(frame)
        except (av.error.FFmpegError, ValueError) as e:
            self._error("not encodable as H.264", e)
            return []
        out = []
        for p in packets:
            n = int(p.pts) if p.pts is not None else -1
            ts = self._times.pop(n, None)
            if ts is None:
                continue
            out.append(Picture(bytes(p), ts, bool(p.is_keyframe)))
            self.counters.pictures_out += 1
        if frame is None:
            self._times.clear()
        return out

    def _error(self, why: str, e: Exception) -> None:
        self.counters.errors[why] += 1
        self.last_error = f"{why}: {e}"


@frozen
class _Along:
    item: Any


_STOP = object()


class VideoTranscoder:
    """``H265ToH264`` in a thread of its own, fed and answered on the reactor thread (see
    the module docstring). ``deliver`` gets lists of ``Picture`` and ``along`` items."""

    def __init__(
        self,
        reactor: Any,
        deliver: Callable[[list[Any]], None],
        name: str = "",
        fps: int = FPS,
        max_frames: int = MAX_FRAMES,
        max_along: int = MAX_ALONG,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.reactor = reactor
        self.deliver = deliver
        self.name = name
        self.max_frames = max_frames
        self.max_along = max_along
        self.max_bytes = max_bytes
        self.codec = H265ToH264(fps)
        #: Input not transcoded before it reached the thread, by reason.
        self.dropped: Counter[str] = Counter()
        #: CPU seconds the thread spent on the codecs.
        self.seconds = 0.0
        self._queue: deque[Any] = deque()
        self._frames = 0
        self._along = 0
        self._bytes = 0
        #: Why pictures are dropped up to the next keyframe (None: they are not).
        self._skipping: str | None = "before the first keyframe"
        self._cond = threading.Condition()
        self.stopped = False
        self._thread = threading.Thread(target=self._run, name=f"transcoder {name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread is still running."""
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Items waiting for the thread (pictures and others)."""
        return len(self._queue)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- the reactor's side ------------------------------------------------------------------

    def feed(self, access_unit: bytes, timestamp: int) -> bool:
        """One H.265 access unit (Annex B) at the unit's ``timestamp`` (ms); False if it
        was dropped (counted in ``dropped``). Never raises."""
        if self.stopped:
            return False
        nals = split_annexb(access_unit)
        if not nals:
            self.dropped["no H.265 NAL unit"] += 1
            return False
        keyframe = any(hevc.nal_type(n) in hevc.IRAP for n in nals)
        with self._cond:
            if self._skipping is not None and not keyframe:
                self.dropped[self._skipping] += 1
                return False
            if self._frames >= self.max_frames or self._bytes + len(access_unit) > self.max_bytes:
                self._skipping = BEHIND
                self.dropped[BEHIND] += 1
                return False
            self._skipping = None
            self._queue.append((access_unit, timestamp, keyframe))
            self._frames += 1
            self._bytes += len(access_unit)
            self._cond.notify()
        return True

    def along(self, item: Any) -> bool:
        """``item`` handed to ``deliver`` after the pictures fed before it; False if it was
        dropped (the queue is full)."""
        if self.stopped:
            return False
        with self._cond:
            if self._along >= self.max_along:
                self.dropped["transcoding behind: audio"] += 1
                return False
            self._queue.append(_Along(item))
            self._along += 1
            self._cond.notify()
        return True

    def stop(self) -> None:
        """End the thread (after the picture in hand); nothing more is delivered."""
        with self._cond:
            self.stopped = True
            self._queue.clear()
            self._queue.append(_STOP)
            self._cond.notify()

    def _deliver(self, out: list[Any]) -> None:
        if self.stopped:
            return
        try:
            self.deliver(out)
        except Exception:  # noqa: BLE001 - the thread must not be told; the stream goes on
            _log.failure("transcoder {name}: delivering", name=self.name)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
                if item is _STOP:
                    return
                if isinstance(item, _Along):
                    self._along -= 1
                else:
                    self._frames -= 1
                    self._bytes -= len(item[0])
            if isinstance(item, _Along):
                out: list[Any] = [item.item]
            else:
                began = time.thread_time()
                try:
                    out = list(self.codec.transcode(*item))
                except Exception as e:  # noqa: BLE001 - one picture's trouble, not the thread's
                    self.codec._error("transcoder fault", e)
                    _log.failure("transcoder {name}: picture not transcoded", name=self.name)
                    out = []
                self.seconds += time.thread_time() - began
            if out and not self.stopped:
                self.reactor.callFromThread(self._deliver, out)

"""JT/T 1078 frames from stream packets, sans-IO: reassembly, loss and keyframe waiting.

A unit cuts each frame into packets marked atomic, or first / middle... / last (5.5.3), all
with the frame's timestamp, and numbers every packet it sends on the connection (one
counter for audio and video alike in the captures we have; some units count each kind on
its own, which the gap check accepts too).

``FrameAssembler`` turns those packets back into frames:

* A frame whose pieces do not all arrive (a sequence gap, a middle or last piece without
  its first, a first piece before the previous frame's last) is dropped whole: a piece
  missing inside a picture would decode as garbage.
* After a lost video frame, the channel waits for the next I-frame and drops the P- and
  B-frames before it: they refer to the picture that was lost, so they would decode to a
  corrupt picture too. A connection also starts out waiting, as it may begin mid-GOP.
* A frame is bounded (``max_frame`` bytes); a larger one is dropped, as is everything
  else the assembler can hold (at most ``MAX_OPEN`` frames in progress).

Drops are returned as ``FrameDropped`` values, in words, for the server to log and count;
nothing here raises on input.
"""

from __future__ import annotations

from enum import Enum

from attrs import define, field, frozen

from cmsv6.protocols.jt1078.packet import DataType, Packet, Subpackage

#: The largest frame kept, in bytes: a 1080p I-frame from a DVR is well below it.
MAX_FRAME = 1 << 20
#: Frames in progress at once on one connection (a channel's video, audio and
#: pass-through data); a further one pushes out the one that waited longest.
MAX_OPEN = 3


class Track(Enum):
    """Which of a channel's frame sequences a packet belongs to."""

    VIDEO = "video"
    AUDIO = "audio"
    DATA = "pass-through"


def track_of(data_type: int) -> Track:
    if data_type <= DataType.B_FRAME:
        return Track.VIDEO
    return Track.AUDIO if data_type == DataType.AUDIO else Track.DATA


@frozen
class Frame:
    """One whole frame: an access unit of video, an audio frame, or pass-through data.

    ``timestamp`` is the unit's clock in ms (None for pass-through data); ``payload_type``
    the table 12 coding type of the packets (98 H.264, 99 H.265, 6 G.711A...); ``sequence``
    the number of its first packet.
    """

    channel: int
    data_type: int
    timestamp: int | None
    payload: bytes
    payload_type: int
    sequence: int = 0
    last_i_frame_interval: int | None = None
    last_frame_interval: int | None = None

    @property
    def track(self) -> Track:
        return track_of(self.data_type)

    @property
    def is_keyframe(self) -> bool:
        return self.data_type == DataType.I_FRAME


class DropReason(Enum):
    LOST = "lost"  # a piece never arrived
    OVERSIZE = "oversize"  # larger than max_frame
    AWAITING_KEYFRAME = "awaiting keyframe"  # whole, but refers to a lost picture


@frozen
class FrameDropped:
    """A frame that is not handed over, and why (``reason`` in words for the log)."""

    channel: int
    data_type: int
    timestamp: int | None
    why: DropReason
    reason: str
    size: int = 0


@define
class FrameCounters:
    """What the assembler did, for the server's metrics."""

    packets: int = 0
    frames: int = 0
    #: Frames dropped because a piece of them was missing.
    lost: int = 0
    #: Frames dropped for being larger than ``max_frame``.
    oversize: int = 0
    #: Whole video frames dropped while the channel waited for a keyframe.
    dropped: int = 0
    #: Breaks in the packet numbering (each may have cost one or more packets).
    sequence_gaps: int = 0


@define
class _Partial:
    """A frame whose first piece has arrived (or whose pieces are being discarded)."""

    channel: int
    data_type: int
    timestamp: int | None
    payload_type: int
    sequence: int
    intervals: tuple[int | None, int | None]
    pieces: list[bytes] = field(factory=list)
    size: int = 0
    #: Set once the frame cannot be handed over: the remaining pieces are only counted.
    broken: DropReason | None = None
    why: str = ""

    def drop(self) -> FrameDropped:
        assert self.broken is not None
        return FrameDropped(
            self.channel, self.data_type, self.timestamp, self.broken, self.why, self.size
        )


class FrameAssembler:
    """Packets of one connection in, whole frames and ``FrameDropped`` notes out.

    ``push`` never raises and holds at most ``MAX_OPEN`` frames of ``max_frame`` bytes.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.counters = FrameCounters()
        self._open: dict[tuple[int, Track], _Partial] = {}
        #: Channels whose video waits for an I-frame; unseen channels wait too.
        self._video_ready: set[int] = set()
        self._last_sequence: int | None = None
        self._track_sequence: dict[tuple[int, Track], int] = {}
        #: False once the unit repeats a sequence number: gaps then tell nothing.
        self.sequence_counts = True

    @property
    def buffered(self) -> int:
        """Bytes held in frames in progress."""
        return sum(p.size for p in self._open.values() if p.broken is None)

    def waiting_for_keyframe(self, channel: int) -> bool:
        return channel not in self._video_ready

    def push(self, packet: Packet) -> list[Frame | FrameDropped]:
        p = packet
        self.counters.packets += 1
        out: list[Frame | FrameDropped] = []
        key = (p.channel, track_of(p.data_type))
        if self._sequence_gap(p, key):
            self.counters.sequence_gaps += 1
            # The missing packet may have belonged to any frame in progress, or been a
            # whole video frame between two: every open frame is suspect (its remaining
            # pieces are discarded, one note when it ends), and so is every channel's
            # next picture.
            for open_ in self._open.values():
                self._break(open_, DropReason.LOST, f"sequence jumped to {p.sequence}")
            self._video_ready.clear()

        partial = self._open.get(key)
        if (
            partial is not None
            and p.subpackage in (Subpackage.MIDDLE, Subpackage.LAST)
            and (p.timestamp, p.data_type) != (partial.timestamp, partial.data_type)
        ):
            # A piece of another frame: this one's end and that one's start are gone.
            self._break(partial, DropReason.LOST, "its last piece never came")
            out += self._close(partial)
            partial = None

        if p.subpackage in (Subpackage.ATOMIC, Subpackage.FIRST):
            if partial is not None:
                self._break(partial, DropReason.LOST, "its last piece never came")
                out += self._close(partial)
            partial = self._start(p, key, out)
        elif partial is None:
            partial = self._start(p, key, out)
            self._break(partial, DropReason.LOST, "its first piece never came")

        self._add(partial, p.payload)
        if p.subpackage in (Subpackage.ATOMIC, Subpackage.LAST):
            out += self._close(partial)
        return out

    def _sequence_gap(self, p: Packet, key: tuple[int, Track]) -> bool:
        last, last_here = self._last_sequence, self._track_sequence.get(key)
        self._last_sequence = p.sequence
        self._track_sequence[key] = p.sequence
        if last is None or last_here is None or not self.sequence_counts:
            # A kind's first packet may carry its own counter's number; video waits for
            # a keyframe at the start anyway.
            return False
        if p.sequence == last:
            self.sequence_counts = False  # a unit that does not number its packets
            return False
        # One counter for the connection, or one per kind of data.
        return p.sequence not in ((last + 1) & 0xFFFF, (last_here + 1) & 0xFFFF)

    def _start(self, p: Packet, key: tuple[int, Track], out: list[Frame | FrameDropped]) -> _Partial:
        if len(self._open) >= MAX_OPEN:
            oldest = next(iter(self._open.values()))
            self._break(oldest, DropReason.LOST, f"more than {MAX_OPEN} frames in progress")
            out += self._close(oldest)
        partial = _Partial(
            p.channel,
            p.data_type,
            p.timestamp,
            p.payload_type,
            p.sequence,
            (p.last_i_frame_interval, p.last_frame_interval),
        )
        self._open[key] = partial
        return partial

    def _break(self, partial: _Partial, why: DropReason, reason: str) -> None:
        if partial.broken is None:
            partial.broken = why
            partial.why = reason
            partial.pieces.clear()

    def _add(self, partial: _Partial, piece: bytes) -> None:
        partial.size += len(piece)
        if partial.broken is not None:
            return
        if partial.size > self.max_frame:
            self._break(
                partial, DropReason.OVERSIZE, f"frame exceeds the {self.max_frame}-byte limit"
            )
            return
        partial.pieces.append(piece)

    def _close(self, partial: _Partial) -> list[Frame | FrameDropped]:
        """Hand over (or drop) a frame that is over, and forget it."""
        key = (partial.channel, track_of(partial.data_type))
        if self._open.get(key) is partial:
            del self._open[key]
        video = track_of(partial.data_type) is Track.VIDEO
        if partial.broken is not None:
            if partial.broken is DropReason.OVERSIZE:
                self.counters.oversize += 1
            else:
                self.counters.lost += 1
            if video:
                self._video_ready.discard(partial.channel)
            return [partial.drop()]
        if video and partial.channel not in self._video_ready:
            if partial.data_type != DataType.I_FRAME:
                self.counters.dropped += 1
                return [
                    FrameDropped(
                        partial.channel,
                        partial.data_type,
                        partial.timestamp,
                        DropReason.AWAITING_KEYFRAME,
                        "waiting for a keyframe after a lost frame or at the start",
                        partial.size,
                    )
                ]
            self._video_ready.add(partial.channel)
        self.counters.frames += 1
        return [
            Frame(
                partial.channel,
                partial.data_type,
                partial.timestamp,
                b"".join(partial.pieces),
                partial.payload_type,
                partial.sequence,
                *partial.intervals,
            )
        ]

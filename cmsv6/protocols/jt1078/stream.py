"""One unit's JT/T 1078 TCP connection, sans-IO: bytes in, frames and notes out.

``MediaStream`` is what the media server's thin protocol feeds: it cuts packets
(``PacketReader``: bounded, resynchronises on the next ``30 31 63 64``), checks that they
all come from one SIM, and reassembles frames (``FrameAssembler``). Everything that goes
wrong comes back as a value, in words, for the server to log and count; ``feed`` never
raises. A connection that keeps sending bytes no packet can be cut from (more than
``max_garbage`` since the last packet) gets ``StreamFailed``, and the server closes it.
"""

from __future__ import annotations

from attrs import define, frozen

from cmsv6.protocols.jt1078.frames import (
    MAX_FRAME,
    Frame,
    FrameAssembler,
    FrameCounters,
    FrameDropped,
)
from cmsv6.protocols.jt1078.packet import (
    MAX_BODY,
    Packet,
    PacketError,
    PacketReader,
    header_size,
)
from cmsv6.protocols.jt1078.sim import SimIdentity, SimMatch

#: Bytes of garbage in a row after which a connection is given up on.
MAX_GARBAGE = 64 * 1024


@frozen
class SimSeen:
    """The stream's first packet named this SIM; ``match`` says how it names the phone
    the server expected (None when it does not, or when no phone was given)."""

    identity: SimIdentity
    match: SimMatch | None

    @property
    def reason(self) -> str:
        if self.match is not None:
            return str(self.match)
        return (
            f"SIM {self.identity.seen} ({self.identity.sim_size} bytes) reads as phone "
            f"{' or '.join(self.identity.candidates())}"
        )


@frozen
class ForeignPacket:
    """A packet naming another SIM than the stream's first one; it is dropped."""

    seen: str
    expected: str

    @property
    def reason(self) -> str:
        return f"packet from SIM {self.seen} on the stream of SIM {self.expected}, dropped"


@frozen
class Garbage:
    """Bytes that were not a packet, skipped (``sample`` is at most one packet's worth)."""

    size: int
    reason: str
    sample: bytes


@frozen
class StreamFailed:
    """The connection is not (or no longer) a JT/T 1078 stream: close it."""

    reason: str


StreamEvent = Frame | FrameDropped | SimSeen | ForeignPacket | Garbage | StreamFailed


@define
class StreamCounters(FrameCounters):
    """``FrameCounters`` plus what the packet layer saw."""

    bytes: int = 0
    garbage_bytes: int = 0
    garbage_runs: int = 0
    foreign_packets: int = 0


class MediaStream:
    """A unit's 1078 connection: ``feed`` bytes, get ``StreamEvent`` values back.

    ``phone`` is the 808 terminal phone the server expects on this connection, if it
    knows one; the first packet's SIM is matched against it (``SimSeen``). The SIM length
    (6 or 10 bytes) is detected from the stream itself.
    """

    def __init__(
        self,
        phone: str | None = None,
        max_body: int = MAX_BODY,
        max_frame: int = MAX_FRAME,
        max_garbage: int = MAX_GARBAGE,
    ) -> None:
        self.phone = phone
        self.max_garbage = max_garbage
        self._reader = PacketReader(max_body)
        self._frames = FrameAssembler(max_frame)
        self.counters = StreamCounters()
        self._frames.counters = self.counters
        self.sim: SimIdentity | None = None
        self.failed: StreamFailed | None = None
        self._garbage_run = 0

    @property
    def sim_size(self) -> int | None:
        return self._reader.sim_size

    @property
    def buffered(self) -> int:
        """Bytes held: a packet being cut plus frames in progress."""
        return self._reader.buffered + self._frames.buffered

    def waiting_for_keyframe(self, channel: int) -> bool:
        return self._frames.waiting_for_keyframe(channel)

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.failed is not None:
            return []
        self.counters.bytes += len(data)
        before = self._reader.buffered
        items = self._reader.feed(data)
        return self._handle(items, before + len(data) - self._reader.buffered)

    def close(self) -> list[StreamEvent]:
        """The connection ended: a packet cut short is reported; frames in progress are
        simply gone with it."""
        if self.failed is not None:
            return []
        before = self._reader.buffered
        return self._handle(self._reader.close(), before)

    def _handle(self, items: list[Packet | PacketError], consumed: int) -> list[StreamEvent]:
        # An error's sample is cut to one packet's worth; what it stands for is what the
        # reader consumed that no packet accounts for. The excess goes to the first cut one.
        garbage = consumed - sum(packet_size(x) for x in items if isinstance(x, Packet))
        excess = garbage - sum(len(x.data) for x in items if isinstance(x, PacketError))
        out: list[StreamEvent] = []
        for item in items:
            if isinstance(item, PacketError):
                size = len(item.data)
                if excess and size >= self._reader.max_buffer:
                    size, excess = size + excess, 0
                out += self._garbage(item, size)
                if self.failed is not None:
                    break
                continue
            self._garbage_run = 0
            out += self._packet(item)
        return out

    def _garbage(self, error: PacketError, size: int) -> list[StreamEvent]:
        self.counters.garbage_bytes += size
        self.counters.garbage_runs += 1
        self._garbage_run += size
        out: list[StreamEvent] = [Garbage(size, error.reason, error.data)]
        if self._garbage_run > self.max_garbage:
            self.failed = StreamFailed(
                f"{self._garbage_run} bytes in a row are no JT/T 1078 packet"
                f" (limit {self.max_garbage})"
            )
            out.append(self.failed)
        return out

    def _packet(self, p: Packet) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if self.sim is None:
            self.sim = SimIdentity(p.sim)
            match = None if self.phone is None else self.sim.match(self.phone)
            out.append(SimSeen(self.sim, match))
        elif p.sim != self.sim.seen:
            self.counters.foreign_packets += 1
            return [ForeignPacket(p.sim, self.sim.seen)]
        out += self._frames.push(p)
        return out


def packet_size(p: Packet) -> int:
    """Bytes a packet took on the wire."""
    return header_size(p.sim_size, p.data_type) + len(p.payload)

"""Uplink sub-package reassembly, sans-IO (one ``Reassembler`` per device session).

A long message (a photo 0x0801, a recording list 0x1205) arrives as packets ``index`` of
``total`` with consecutive serial numbers; 0x8003 asks for missing ones by the first
packet's serial. ``add`` takes each packet and returns the whole message once every packet
is in; ``overdue`` lists what to re-request; ``expire`` gives up on stale messages. Pending
bytes are bounded: the oldest pending message is dropped to make room.
"""

from __future__ import annotations

from attrs import define, field, frozen

from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import Frame
from cmsv6.protocols.jt808.header import Header

#: At most this many bytes pending per session (a 2 MB photo fits).
MAX_PENDING_BYTES = 4 * 1024 * 1024
#: At most this many messages pending per session.
MAX_PENDING_MESSAGES = 16


@frozen
class Assembled:
    """A whole message: the first packet's header (without packet numbers) and the body."""

    header: Header
    body: bytes


@frozen
class Missing:
    """Packets to ask for again (0x8003, or 0x8800 for a photo): the first packet's serial,
    the indexes, and the first packet's body when it is in (a photo's media id is there)."""

    msg_id: int
    first_serial: int
    indexes: tuple[int, ...]
    first: bytes | None = field(default=None, eq=False, repr=False)


@frozen
class Dropped:
    msg_id: int
    first_serial: int
    reason: str


@define
class _Pending:
    header: Header
    total: int
    pieces: dict[int, bytes]
    size: int
    first_seen: float
    last_seen: float
    requests: int = 0

    def missing(self) -> tuple[int, ...]:
        return tuple(i for i in range(1, self.total + 1) if i not in self.pieces)

    def request(self, now: float) -> Missing:
        """What to ask for now, counted as a request."""
        self.requests += 1
        self.last_seen = now
        return Missing(self.header.msg_id, self.header.serial, self.missing(), self.pieces.get(1))


class Reassembler:
    def __init__(
        self,
        max_bytes: int = MAX_PENDING_BYTES,
        max_messages: int = MAX_PENDING_MESSAGES,
    ) -> None:
        self._pending: dict[tuple[int, int, int], _Pending] = {}
        #: Recently completed messages, so a late duplicate packet does not start a new one.
        self._done: dict[tuple[int, int, int], None] = {}
        self._bytes = 0
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        #: Messages given up on (evicted, expired or refused), for metrics.
        self.dropped: list[Dropped] = []

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def add(self, frame: Frame, now: float) -> Assembled | None:
        """Take one packet; the whole message when this was its last missing packet.

        Raises CodecError for impossible packet numbers or a message larger than the bound.
        """
        h = frame.header
        if h.packet is None:
            raise CodecError("not a sub-package")
        total, index = h.packet.total, h.packet.index
        if not 1 <= index <= total:
            raise CodecError(f"packet {index} of {total}")
        first_serial = (h.serial - (index - 1)) & 0xFFFF
        if total == 1:
            return Assembled(_whole_header(h, first_serial), frame.body)
        key = (h.msg_id, first_serial, total)
        if key in self._done:
            return None
        entry = self._pending.get(key)
        if entry is None:
            entry = _Pending(_whole_header(h, first_serial), total, {}, 0, now, now)
            self._make_room(0, exclude=None)
            self._pending[key] = entry
        entry.last_seen = now
        if index in entry.pieces:
            return None  # a duplicate (our re-request crossed the original)
        size = len(frame.body)
        if entry.size + size > self.max_bytes:
            self._drop(key, "message larger than the pending bound")
            raise CodecError(f"0x{h.msg_id:04x} message exceeds {self.max_bytes} bytes")
        self._make_room(size, exclude=key)
        entry.pieces[index] = frame.body
        entry.size += size
        self._bytes += size
        if len(entry.pieces) < total:
            return None
        del self._pending[key]
        self._bytes -= entry.size
        self._done[key] = None
        if len(self._done) > 2 * self.max_messages:
            del self._done[next(iter(self._done))]
        return Assembled(entry.header, b"".join(entry.pieces[i] for i in range(1, total + 1)))

    def overdue(self, now: float, after: float) -> list[Missing]:
        """Messages with packets missing and nothing new for ``after`` seconds (counted as a
        request: the caller sends 0x8003 for each)."""
        return [e.request(now) for e in self._pending.values() if now - e.last_seen >= after]

    def ask_now(self, frame: Frame, now: float) -> Missing | None:
        """After ``add`` took ``frame``: when it is its message's last packet and others are
        missing, what to ask for at once (counted as a request; ``overdue`` asks again
        ``after`` seconds later if they do not come)."""
        h = frame.header
        if h.packet is None or h.packet.index != h.packet.total:
            return None
        first_serial = (h.serial - (h.packet.index - 1)) & 0xFFFF
        entry = self._pending.get((h.msg_id, first_serial, h.packet.total))
        if entry is None or len(entry.pieces) == entry.total:
            return None
        return entry.request(now)

    def expire(self, now: float, max_age: float, max_requests: int = 3) -> list[Dropped]:
        """Give up on messages older than ``max_age`` or re-requested ``max_requests`` times."""
        stale = [
            key
            for key, e in self._pending.items()
            if now - e.first_seen >= max_age or e.requests > max_requests
        ]
        return [self._drop(key, "incomplete after re-requests or timeout") for key in stale]

    def _make_room(self, size: int, exclude: tuple[int, int, int] | None) -> None:
        while self._pending and (
            self._bytes + size > self.max_bytes or len(self._pending) >= self.max_messages + (
                exclude is not None
            )
        ):
            oldest = min(
                (k for k in self._pending if k != exclude),
                key=lambda k: self._pending[k].last_seen,
                default=None,
            )
            if oldest is None:
                return
            self._drop(oldest, "evicted to bound pending memory")

    def _drop(self, key: tuple[int, int, int], reason: str) -> Dropped:
        entry = self._pending.pop(key)
        self._bytes -= entry.size
        dropped = Dropped(entry.header.msg_id, entry.header.serial, reason)
        self.dropped.append(dropped)
        del self.dropped[:-100]
        return dropped


def _whole_header(h: Header, first_serial: int) -> Header:
    return Header(h.msg_id, h.phone, first_serial, h.version, h.protocol_version, h.encryption)

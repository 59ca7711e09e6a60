"""Which unit a JT/T 1078 stream comes from: the packet's SIM against the 808 phone.

The standard writes the SIM as BCD, 6 bytes (10 in some 2019 units), and expects it to
be the unit's JT/T 808 terminal phone. Units in the field differ: some pad differently
(6 vs 10 bytes), some write the number in binary (``13800138999`` as ``00 03 36 a8 f0
f7``), so a media server that compares the digits as sent never finds the stream it
asked for ("I sent 0x9101 and nothing arrives"). ``SimIdentity`` reads the field every
way units write it and says which reading matched, for the server to log.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class SimMatch:
    """How a stream's SIM field names an 808 phone: ``how`` is ``"bcd"`` (as the standard
    says) or ``"binary"`` (a unit that writes the number as an integer)."""

    phone: str
    how: str
    seen: str  # the field as sent, hex
    sim_size: int

    def __str__(self) -> str:
        return f"SIM {self.seen} ({self.sim_size} bytes, {self.how}) is phone {self.phone}"


def _plain(number: str) -> str:
    return number.lstrip("0") or "0"


@frozen
class SimIdentity:
    """A stream's SIM field, read every way units write it.

    ``seen`` is the field as sent, in hex (``Packet.sim``: BCD digits, or hex letters where
    a nibble is no decimal digit).
    """

    seen: str

    @property
    def sim_size(self) -> int:
        return len(self.seen) // 2

    @property
    def bcd(self) -> str | None:
        """The number read as BCD without its zero padding, None if a nibble is no digit."""
        return _plain(self.seen) if self.seen.isdigit() else None

    @property
    def binary(self) -> str:
        """The number read as a big-endian integer."""
        return str(int(self.seen, 16)) if self.seen else "0"

    def candidates(self) -> tuple[str, ...]:
        """The phone numbers the field may stand for, the standard's reading first."""
        out = [] if self.bcd is None else [self.bcd]
        if self.binary not in out:
            out.append(self.binary)
        return tuple(out)

    def match(self, phone: str) -> SimMatch | None:
        """How the field names ``phone`` (an 808 terminal phone, padded or not), or None."""
        want = _plain(phone)
        if self.bcd == want:
            return SimMatch(want, "bcd", self.seen, self.sim_size)
        if self.binary == want:
            return SimMatch(want, "binary", self.seen, self.sim_size)
        return None

"""Retransmission of a message that expects an answer, by JT/T 808 §6.1, sans-IO.

The sender waits T(1) = T (the terminal's parameter 0x0002, or the platform's own) for
the answer; without one it sends the same frame again, serial and all, and waits
T(N+1) = T(N) × (N+1): T, 2T, 6T, 24T… It gives up after ``retries`` retransmissions
(parameter 0x0003) and the wait after the last. The gateway's downlink commands and the
simulated terminals' uplinks both follow it from here.
"""

from __future__ import annotations

from attrs import define


@define
class Retransmission:
    """One message's retransmissions: ``wait`` is the time to wait after the latest send."""

    wait: float
    retries: int
    attempts: int = 0

    def again(self) -> bool:
        """The answer did not come within ``wait``: True (and ``wait`` becomes the next
        one) to send again, False to give up."""
        if self.attempts >= self.retries:
            return False
        self.attempts += 1
        self.wait *= self.attempts + 1
        return True


def waits(timeout: float, retries: int) -> list[float]:
    """Every wait, first send's to last retransmission's: T(1) … T(retries + 1)."""
    r = Retransmission(timeout, retries)
    out = [r.wait]
    while r.again():
        out.append(r.wait)
    return out

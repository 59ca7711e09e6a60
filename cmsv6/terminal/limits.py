"""What a device port grants a peer that has not authenticated yet.

Anyone who can reach a JT/T 808 port can connect, so until a terminal has proved who it is
(0x0102 accepted) it gets little: a place among at most ``max_connections`` connections and
``max_per_address`` from its address, ``max_frames_before_auth`` frames (registration,
authentication and their retransmissions; a device needs two to four), no sub-packaged
messages (nothing goes into the reassembler), and ``auth_deadline`` seconds, after which
the connection is closed. Only an authenticated terminal's frames keep its connection
from the idle timeout. The same on every server (gateway and login's assignment port),
set in each one's section (``cmsv6.config``).
"""

from __future__ import annotations

from typing import Any

from attrs import frozen


@frozen
class Limits:
    """A device port's bounds for peers (None: no bound)."""

    #: Open connections at most; past it a new one is closed at once.
    max_connections: int | None = 20_000
    #: Open connections from one address at most (devices behind one NAT or private APN
    #: share an address: raise it for them).
    max_per_address: int | None = 500
    #: Seconds a connection has to authenticate before it is closed.
    auth_deadline: float = 30.0
    #: Frames (and undecodable pieces of input) taken before authentication; the next
    #: one closes the connection.
    max_frames_before_auth: int = 8

    @classmethod
    def of(cls, section: Any) -> Limits:
        """The limits of a server's configuration section (``[gateway]``, ``[login]``)."""
        return cls(
            max_connections=section.jt808_max_connections,
            max_per_address=section.jt808_max_per_address,
            auth_deadline=section.auth_deadline,
            max_frames_before_auth=section.max_frames_before_auth,
        )

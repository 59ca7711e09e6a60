"""The one fake link of the tests: what a session (the terminal layer's, or a simulated
device's) sends through, and what login's directory holds for a gateway, in memory."""

from __future__ import annotations

from typing import Any

from cmsv6.protocols.jt808.codec import Message, decode


class FakeLink:
    """Records the frames sent (``messages`` decodes them), whether it was closed and
    whether reading is paused; ``callRemote`` is not expected (a gateway's link that is
    never used for commands)."""

    def __init__(self, peer: str = "test") -> None:
        self.peer = peer
        self.frames: list[bytes] = []
        self.closed = False
        self.paused = False

    def send(self, data: bytes) -> None:
        assert not self.closed, "sent after close"
        self.frames.append(data)

    def close(self) -> None:
        self.closed = True

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def callRemote(self, command: Any, **kw: Any) -> Any:  # noqa: N802
        raise AssertionError(f"{command.__name__} was not expected")

    @property
    def messages(self) -> list[Message]:
        return [decode(f) for f in self.frames]

    def take(self) -> list[Message]:
        """The messages sent since the last call."""
        out = self.messages
        self.frames.clear()
        return out

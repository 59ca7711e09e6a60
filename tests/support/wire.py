"""Frames as a test's device would send them, and what a server wrote back."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport

from cmsv6.protocols.jt808.codec import Message, decode_frame, encode
from cmsv6.protocols.jt808.framing import Deframer, Frame
from cmsv6.protocols.jt808.header import Header


def frame(body: Any, serial: int = 1, phone: str = "013800000001", version: int = 2013) -> bytes:
    """The frame of ``body`` from ``phone`` (its 2019 form when ``version`` is 2019)."""
    if version == 2019:
        return encode(Header(body.MSG_ID, phone.rjust(20, "0"), serial, 2019, 1), body)
    return encode(Header(body.MSG_ID, phone, serial), body)


def answers(transport: StringTransport) -> list[Message]:
    """The messages written to ``transport`` since the last call (which it then forgets)."""
    out = []
    for item in Deframer().feed(transport.value()):
        assert isinstance(item, Frame)
        out.append(decode_frame(item))
    transport.clear()
    return out

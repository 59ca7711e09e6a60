"""A gateway session's 0x8001 (made from a template of the terminal's header) follows the
terminal's header: a terminal that changes its header version or phone form mid-connection
is answered in the new one."""

from __future__ import annotations

from twisted.internet import task

from cmsv6.db.devices import Device
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.session import DeviceSession
from cmsv6.protocols.jt808.codec import encode
from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import Heartbeat
from tests.support.link import FakeLink


def test_replies_follow_the_terminals_header() -> None:
    """Heartbeats in 2013, then 2019, then 2013 with another phone form: each 0x8001 is in
    the header of the message it answers, with that message's serial."""
    clock = task.Clock()
    gw = Gateway(db=None, clock=clock, gateway_id="gw", public_address="x")  # type: ignore[arg-type]
    link = FakeLink()
    session = DeviceSession(gw, link)
    session.device = Device(1, "13800000001", None, None, None, 4, None)
    sent = [
        Header(0x0002, "013800000001", 5),
        Header(0x0002, "00000000013800000001", 6, version=2019, protocol_version=1),
        Header(0x0002, "013800000001", 7),
    ]
    for h in sent:
        session.frame_received(parse_frame(encode(h, Heartbeat())))
    replies = link.messages
    assert [(m.header.version, m.header.phone, m.header.protocol_version) for m in replies] == [
        (h.version, h.phone, h.protocol_version) for h in sent
    ]
    assert [(m.body.reply_serial, m.body.reply_id, m.body.result) for m in replies] == [
        (5, 2, 0), (6, 2, 0), (7, 2, 0)
    ]
    assert [m.header.serial for m in replies] == [0, 1, 2]

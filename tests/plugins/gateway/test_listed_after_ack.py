"""Devices that acknowledge a recording query (0x9205) with a general response before
they send the list (0x1205): the command waits for the list, and the list answers it."""

from __future__ import annotations

from typing import Any

from twisted.internet import task

from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.session import DeviceSession
from cmsv6.protocols.jt808.codec import encode, encode_body
from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import Heartbeat, TerminalResponse
from cmsv6.protocols.jt808.messages.jt1078 import ResourceList
from tests.support.link import FakeLink

PHONE = "13800000001"
SIM = "013800000001"


def session_of(clock: task.Clock) -> tuple[Gateway, DeviceSession, FakeLink]:
    gw = Gateway(db=None, clock=clock, gateway_id="gw", public_address="x")  # type: ignore[arg-type]
    link = FakeLink()
    session = DeviceSession(gw, link)
    session.frame_received(parse_frame(encode(Header(0x0002, SIM, 1), Heartbeat())))
    session.device = object()  # type: ignore[assignment]
    gw.sessions[PHONE] = session
    link.take()
    return gw, session, link


def answer(session: DeviceSession, msg_id: int, serial: int, body: Any) -> None:
    session.frame_received(parse_frame(encode(Header(msg_id, SIM, serial), body)))


def test_the_list_after_an_acknowledgement_answers_the_query() -> None:
    clock = task.Clock()
    gw, session, link = session_of(clock)
    replies: list[Any] = []
    gw.send_command(PHONE, 0x9205, b"\x00" * 24, timeout=10.0, retries=2).addBoth(replies.append)
    (query,) = link.take()
    serial = query.header.serial
    answer(session, 0x0001, 2, TerminalResponse(serial, 0x9205, 0))
    clock.advance(5)
    assert replies == []  # waiting for the list
    answer(session, 0x1205, 3, ResourceList(serial, ()))
    assert len(replies) == 1 and replies[0]["msg_id"] == 0x1205
    assert replies[0]["body"] == encode_body(ResourceList(serial, ()))
    clock.advance(100)
    assert [f.header.msg_id for f in link.take() if f.header.msg_id == 0x9205] == []  # not sent again


def test_an_acknowledgement_alone_answers_after_a_wait_and_a_refusal_at_once() -> None:
    clock = task.Clock()
    gw, session, link = session_of(clock)
    replies: list[Any] = []
    gw.send_command(PHONE, 0x9205, b"\x00" * 24, timeout=10.0, retries=2).addBoth(replies.append)
    serial = link.take()[0].header.serial
    answer(session, 0x0001, 2, TerminalResponse(serial, 0x9205, 0))
    clock.advance(9)
    assert replies == []
    clock.advance(2)
    assert len(replies) == 1 and replies[0]["msg_id"] == 0x0001
    assert [f for f in link.take() if f.header.msg_id == 0x9205] == []
    # A refusal (result 3, not supported) is the answer at once.
    refused: list[Any] = []
    gw.send_command(PHONE, 0x9205, b"\x00" * 24, timeout=10.0).addBoth(refused.append)
    serial = link.take()[0].header.serial
    answer(session, 0x0001, 4, TerminalResponse(serial, 0x9205, 3))
    assert len(refused) == 1 and refused[0]["msg_id"] == 0x0001


def test_other_commands_are_answered_by_the_acknowledgement() -> None:
    clock = task.Clock()
    gw, session, link = session_of(clock)
    replies: list[Any] = []
    gw.send_command(PHONE, 0x9201, b"\x00" * 30, timeout=10.0).addBoth(replies.append)
    serial = link.take()[0].header.serial
    answer(session, 0x0001, 2, TerminalResponse(serial, 0x9201, 0))
    assert len(replies) == 1 and replies[0]["msg_id"] == 0x0001

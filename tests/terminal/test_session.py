"""The terminal layer on its own (no database, no sockets): what every server's session
does before its own logic, driven through the fake link."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from twisted.internet import task
from twisted.internet.testing import StringTransport

from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.messages.core import Heartbeat
from cmsv6.terminal.protocol import MAX_FRAME_ERRORS, TerminalFactory
from cmsv6.terminal.session import TerminalSession
from tests.support.device import location
from tests.support.link import FakeLink
from tests.support.wire import frame

PHONE = "013800000001"


class Host:
    db: Any = None
    open_registration = False

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.counters: Counter[str] = Counter()

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)


class Bounded(TerminalSession):
    MAX_FRAMES = 3


def test_answers_in_the_terminals_version() -> None:
    """An authenticated terminal's heartbeat is answered with 0x8001 result 0 in its own
    version and phone form, our serials counting from 0."""
    link = FakeLink()
    session = TerminalSession(Host(), link)
    session.device = object()  # type: ignore[assignment]  # authenticated, as the database says
    session.frame_received(parse_frame(frame(Heartbeat(), 5, version=2019)))
    session.frame_received(parse_frame(frame(Heartbeat(), 6, version=2019)))
    first, second = link.take()
    assert first.header.version == 2019 and first.header.phone == PHONE.rjust(20, "0")
    assert (first.header.serial, second.header.serial) == (0, 1)
    assert (first.body.reply_serial, first.body.reply_id, first.body.result) == (5, 0x0002, 0)


def test_bad_check_code_answered_without_taking_the_phone() -> None:
    """A frame with a wrong check code gets result 2 and does not fix the connection's phone."""
    link = FakeLink()
    session = TerminalSession(Host(), link)
    data = bytearray(frame(Heartbeat(), phone="019999999999"))
    data[-2] ^= 0xFF
    session.frame_received(parse_frame(bytes(data)))
    (answer,) = link.take()
    assert answer.body.result == 2 and session.phone is None
    session.frame_received(parse_frame(frame(Heartbeat())))
    assert session.phone == "13800000001" and not link.closed


def test_reports_refused_before_authentication() -> None:
    """Before authentication a report is answered with result 1, so the terminal keeps it."""
    link = FakeLink()
    host = Host()
    session = TerminalSession(host, link)
    session.frame_received(parse_frame(frame(location(), 9)))
    (answer,) = link.take()
    assert (answer.body.reply_serial, answer.body.result) == (9, 1)
    assert host.counters["unauthenticated"] == 1


def test_frame_bound_closes_and_nothing_after_close() -> None:
    """Past MAX_FRAMES the connection is closed, and frames after that are not answered."""
    link = FakeLink()
    host = Host()
    session = Bounded(host, link)
    for serial in range(1, 6):
        session.frame_received(parse_frame(frame(Heartbeat(), serial)))
    assert link.closed and len(link.take()) == 3
    assert host.counters["too_many_frames"] == 1 and host.counters["frames"] == 4


def test_bad_input_in_a_row_closes() -> None:
    """MAX_FRAME_ERRORS undecodable pieces in a row close the connection; a good frame in
    between starts the count again."""
    host = Host()
    factory = TerminalFactory(host, lambda link: TerminalSession(host, link))
    proto = factory.buildProtocol(None)
    assert proto is not None
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.session.device = object()  # type: ignore[assignment,union-attr]  # past the budget before authentication
    junk = b"\x7e\x01\x7e" * (MAX_FRAME_ERRORS - 1)
    proto.dataReceived(junk + frame(Heartbeat()) + junk)
    assert not transport.disconnecting
    proto.dataReceived(b"\x7e\x01\x7e")
    assert transport.disconnecting and host.counters["frame_errors"] == 2 * MAX_FRAME_ERRORS - 1


def test_phone_checked_on_every_frame_in_either_form() -> None:
    """The phone is the same in its 2013 and 2019 forms, however often each comes; another
    phone after several frames of the same one still closes the connection unanswered."""
    link = FakeLink()
    host = Host()
    session = TerminalSession(host, link)
    session.device = object()  # type: ignore[assignment]
    for serial, version in ((1, 2013), (2, 2013), (3, 2019), (4, 2019), (5, 2013)):
        session.frame_received(parse_frame(frame(Heartbeat(), serial, version=version)))
    assert len(link.take()) == 5 and not link.closed and session.phone == "13800000001"
    session.frame_received(parse_frame(frame(Heartbeat(), 6, phone="013800000002")))
    assert link.closed and link.take() == [] and host.counters["phone_changed"] == 1

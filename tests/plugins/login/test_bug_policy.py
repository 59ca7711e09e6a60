"""Login's error policy per connection: a body that does not decode is answered as a bad
message; a bug in our code on one device's frame is logged with the frame and closes that
connection only, and no exception escapes ``dataReceived``."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from cmsv6.plugins.login.assignment import (
    Assigner,
    AssignmentFactory,
    AssignmentProtocol,
)
from cmsv6.plugins.login.directory import Directory
from cmsv6.protocols.jt808 import codec
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.messages.core import (
    RESULT_BAD_MESSAGE,
    RESULT_OK,
    Heartbeat,
    TerminalResponse,
)
from tests.support.wire import answers, frame

#: The message whose body decoder the tests break (login decodes it before authentication).
BROKEN = 0x0001


@pytest.fixture
def factory() -> Iterator[AssignmentFactory]:
    clock = task.Clock()
    assigner = Assigner(None, Directory(clock), clock, "127.0.0.2:6608")  # type: ignore[arg-type]
    f = AssignmentFactory(assigner)
    yield f
    for p in list(f.connections):  # the sessions' timers
        p.connectionLost()


def _device(factory: AssignmentFactory) -> tuple[AssignmentProtocol, StringTransport]:
    proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40000))
    assert proto is not None
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def _bug(data: bytes, version: int) -> Any:
    return None.oops  # type: ignore[attr-defined]


def test_a_bug_closes_that_connection_only(
    monkeypatch: pytest.MonkeyPatch, factory: AssignmentFactory, logged: list[dict[str, Any]]
) -> None:
    """A decoder bug on one device's frame is logged with the frame and the device, closes
    that connection without answering, and another device goes on being served."""
    monkeypatch.setitem(codec.FAST_DECODERS, BROKEN, _bug)
    bad, bad_transport = _device(factory)
    good, good_transport = _device(factory)
    broken = frame(TerminalResponse(1, 0x8103, 0), 5, "013800000001")
    bad.dataReceived(broken + frame(Heartbeat(), 6, "013800000001"))
    assert bad_transport.disconnecting
    assert bad_transport.value() == b""
    assert factory.assigner.counters["errors"] == 1
    (event,) = [e for e in logged if "log_failure" in e]
    assert event["log_failure"].check(AttributeError)
    assert event["peer"] == bad.peer and event["phone"] == "013800000001"
    assert event["msg_id"] == BROKEN and event["header"] == parse_frame(broken).header
    assert event["body"] == parse_frame(broken).body.hex() == "0001810300"

    good.dataReceived(frame(Heartbeat(), 9, "013800000002"))
    (answer,) = answers(good_transport)
    assert (answer.header.msg_id, answer.body.reply_serial, answer.body.result) == (
        0x8001, 9, RESULT_OK,
    )  # fmt: skip
    assert not good_transport.disconnecting
    assert factory.assigner.counters["errors"] == 1


def test_a_body_that_does_not_decode_is_answered(
    monkeypatch: pytest.MonkeyPatch, factory: AssignmentFactory
) -> None:
    """A CodecError is the device's bad message: answered with result 2, connection kept."""

    def refuse(data: bytes, version: int) -> Any:
        raise CodecError("not a body")

    monkeypatch.setitem(codec.FAST_DECODERS, BROKEN, refuse)
    proto, transport = _device(factory)
    proto.dataReceived(frame(TerminalResponse(1, 0x8103, 0), 7, "013800000003"))
    (answer,) = answers(transport)
    assert (answer.body.reply_serial, answer.body.reply_id, answer.body.result) == (
        7, BROKEN, RESULT_BAD_MESSAGE,
    )  # fmt: skip
    assert not transport.disconnecting
    assert factory.assigner.counters["bad_body"] == 1
    assert factory.assigner.counters["errors"] == 0


def test_no_exception_escapes_data_received(
    monkeypatch: pytest.MonkeyPatch, factory: AssignmentFactory, logged: list[dict[str, Any]]
) -> None:
    """A bug below the session (here in the deframer) is logged with the input and closes
    the connection; dataReceived returns normally."""
    proto, transport = _device(factory)

    def broken_feed(data: bytes) -> list[Any]:
        raise TypeError("a bug")

    monkeypatch.setattr(proto.deframer, "feed", broken_feed)
    proto.dataReceived(b"\x7e\x01\x7e")
    assert transport.disconnecting
    assert proto.session is not None and proto.session.closed
    (event,) = [e for e in logged if "log_failure" in e]
    assert event["log_failure"].check(TypeError) and event["data"] == "7e017e"
    assert factory.assigner.counters["errors"] == 1

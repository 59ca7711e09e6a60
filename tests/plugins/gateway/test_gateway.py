"""The gateway end to end: a real PostgreSQL, a real loopback socket, a scripted device."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, task

from cmsv6.db.devices import add_device
from cmsv6.db.service import Database
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.protocol import JT808Factory
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.core import Heartbeat, TerminalResponse
from cmsv6.protocols.jt808.messages.location import LocationBatch
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.rpc.commands import CommandTimeout, DeviceOffline
from tests.support.database import query
from tests.support.device import connect, location, shipping_writer, until, within
from tests.support.link import FakeLink

PHONE = "13800000001"



@pytest.fixture
def gateway(dsn: str, tmp_path: Any) -> Any:
    from twisted.internet import reactor

    db = Database(dsn, reactor, size=2, writer_threads=2)
    db.startService()
    writer, stop_writer = shipping_writer(db, reactor)
    gw = Gateway(db, reactor, "gw-test", "127.0.0.1:7611", open_registration=True,
                 media_dir=tmp_path / "media", writer=writer)
    gw.dsn = dsn  # type: ignore[attr-defined]
    pytest_twisted.blockon(db.ready())
    port = pytest_twisted.blockon(
        endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(JT808Factory(gw))
    )
    gw.port = port.getHost().port  # type: ignore[attr-defined]
    yield gw
    for session in list(gw.connections):
        session.link.close()
    stop_writer()
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
    pytest_twisted.blockon(defer.maybeDeferred(db.stopService))


def _device(gw: Gateway, phone: str = PHONE, version: int = 2013) -> Any:
    from twisted.internet import reactor

    return connect(reactor, gw.port, phone, version)  # type: ignore[attr-defined]


@pytest_twisted.inlineCallbacks
def test_register_authenticate_report(gateway: Gateway) -> None:
    """A device registers, authenticates and reports; the 0x8001 comes after the row is
    stored with every field, and the session is recorded with both addresses."""
    dev = yield _device(gateway)
    yield dev.login()
    serial = dev.send(location(alarm=0, extras={0x01: 1234, 0x31: 9, 0xE1: b"\x01\x02"}))
    ack = yield dev.next(0x8001)
    assert (ack.body.reply_serial, ack.body.reply_id, ack.body.result) == (serial, 0x0200, 0)
    (row,) = query(gateway.dsn, "SELECT p.latitude, p.longitude, p.altitude, p.speed, p.direction,"
                  " p.time, p.extras, p.blind FROM positions p JOIN devices d ON d.id = p.device_id"
                  " WHERE d.phone = %s", (PHONE,))
    assert row[:5] == (22.5431, 114.0579, 12, 36.5, 90)
    assert row[5] == datetime(2026, 11, 25, 10, 0, 0, tzinfo=BEIJING)
    assert row[6] == {"0x01": 1234, "0x31": 9, "0xe1": "0102"} and row[7] is False
    (session,) = query(gateway.dsn, "SELECT gateway_id, gateway_address, device_address,"
                      " disconnected FROM device_sessions")
    assert session[:2] == ("gw-test", "127.0.0.1:7611") and session[2].startswith("127.0.0.1:")
    assert session[3] is None
    (last,) = query(gateway.dsn, "SELECT latitude FROM last_positions")
    assert last == (22.5431,)
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_2019_device_gets_2019_replies(gateway: Gateway) -> None:
    """A 2019 device is answered in the 2019 header (version flag, BCD[10] phone)."""
    dev = yield _device(gateway, "13800000002", version=2019)
    yield dev.login()
    dev.send(Heartbeat())
    yield dev.next(0x8001)
    assert all(f.header.version == 2019 for f in dev.raw)
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_known_registration_refuses_unknown(gateway: Gateway) -> None:
    """With registration 'known', an unknown terminal gets 0x8100 result 4; a known one
    registers."""
    from cmsv6.protocols.jt808.messages.core import Register

    gateway.open_registration = False
    add_device(gateway.dsn, "13800000003")  # type: ignore[attr-defined]
    dev = yield _device(gateway, "13800000004")
    dev.send(Register(44, 300, "CMSV6", "SIM-1", "T000001", 1, "X"))
    reply = yield dev.next(0x8100)
    assert reply.body.result == 4 and reply.body.auth_code is None
    dev.transport.loseConnection()
    known = yield _device(gateway, "013800000003")
    yield known.login()
    known.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_nothing_before_authentication(gateway: Gateway) -> None:
    """Before authentication a report is refused (result 1) and nothing is stored; a wrong
    auth code fails."""
    from cmsv6.protocols.jt808.messages.core import Authenticate

    dev = yield _device(gateway, "13800000005")
    dev.send(location())
    ack = yield dev.next(0x8001)
    assert ack.body.result == 1
    dev.send(Authenticate("wrong"))
    ack = yield dev.next(0x8001)
    assert ack.body.result == 1
    assert query(gateway.dsn, "SELECT count(*) FROM positions") == [(0,)]
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_new_connection_replaces_old(gateway: Gateway) -> None:
    """A second authenticated connection for the same phone closes the first."""
    first = yield _device(gateway)
    code = yield first.login()
    from cmsv6.protocols.jt808.messages.core import Authenticate

    second = yield _device(gateway)
    second.send(Authenticate(code))
    yield second.next(0x8001)
    yield within(first.lost, "the first connection to close")
    assert gateway.sessions[PHONE].link.peer.endswith(f":{second.transport.getHost().port}")
    second.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_blind_area_batch_and_duplicates(gateway: Gateway) -> None:
    """A 0x0704 blind-area batch is stored with its original times and flagged; a report
    sent again (its ack was lost) is stored once."""
    dev = yield _device(gateway)
    yield dev.login()
    t0 = datetime(2026, 11, 24, 8, 0, 0, tzinfo=BEIJING)
    batch = LocationBatch(1, [location(time=t0 + timedelta(seconds=10 * i)) for i in range(5)])
    dev.send(batch)
    yield dev.next(0x8001)
    dev.send(batch)
    yield dev.next(0x8001)
    stored = query(gateway.dsn, "SELECT time, blind FROM positions ORDER BY time")
    assert [r[0] for r in stored] == [t0 + timedelta(seconds=10 * i) for i in range(5)]
    assert all(r[1] for r in stored)
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_alarm_opens_and_closes(gateway: Gateway) -> None:
    """An alarm bit opens an alarm when it rises and closes it when it falls."""
    dev = yield _device(gateway)
    yield dev.login()
    t = datetime(2026, 11, 25, 9, 0, 0, tzinfo=BEIJING)
    for i, alarm in enumerate([0, 1, 1, 0]):
        dev.send(location(alarm=alarm, time=t + timedelta(seconds=i)))
        yield dev.next(0x8001)
    (alarm_row,) = query(gateway.dsn, "SELECT kind, started, ended FROM alarms")
    assert alarm_row == ("bit:emergency", t + timedelta(seconds=1), t + timedelta(seconds=3))
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_bad_check_code_is_answered(gateway: Gateway) -> None:
    """A frame with a wrong check code gets 0x8001 result 2 and is not stored."""
    from cmsv6.protocols.jt808.codec import encode

    dev = yield _device(gateway)
    yield dev.login()
    frame = bytearray(encode(dev.header(0x0200), location()))
    frame[-2] ^= 0x01
    if frame[-2] in (0x7D, 0x7E):
        frame[-2] ^= 0x02
    dev.transport.write(bytes(frame))
    ack = yield dev.next(0x8001)
    assert ack.body.result == 2
    assert query(gateway.dsn, "SELECT count(*) FROM positions") == [(0,)]
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_photo_in_subpackages(gateway: Gateway, tmp_path: Any) -> None:
    """A 0x0801 photo in packets gets an answer per packet, is written to a file with a
    database row, and is acknowledged with 0x8800; a missing packet is re-requested."""
    from cmsv6.protocols.jt808.codec import encode_body
    from cmsv6.protocols.jt808.messages.multimedia import MultimediaData

    dev = yield _device(gateway)
    yield dev.login()
    jpeg = b"\xff\xd8" + bytes(range(256)) * 10 + b"\xff\xd9"
    body = encode_body(MultimediaData(77, 0, 0, 0, 1, location(extras={}), jpeg))
    frames = dev.send_packets(0x0801, body, size=1000, skip=(2,))
    for _ in range(len(frames) - 1):
        ack = yield dev.next(0x8001)
        assert ack.body.result == 0
    # The last packet is in and packet 2 is not: the gateway asks for it at once, with
    # 0x8800 and its retransmit list (JT/T 808 §8.58).
    request = yield dev.next(0x8800)
    assert (request.body.media_id, request.body.retransmit_ids) == (77, (2,))
    dev.transport.write(frames[1])
    done = yield dev.next(0x8800)
    assert (done.body.media_id, done.body.retransmit_ids) == (77, ())
    ((path, size),) = query(gateway.dsn, "SELECT path, size FROM media_files")
    assert size == len(jpeg)
    with open(path, "rb") as f:
        assert f.read() == jpeg
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_downlink_command_matched_by_serial(gateway: Gateway) -> None:
    """A command to an online device fires with the reply matched by serial number; an
    offline device fails at once."""
    from cmsv6.protocols.jt808.codec import decode_body, encode_body
    from cmsv6.protocols.jt808.messages.info import TextMessage

    dev = yield _device(gateway)
    yield dev.login()
    body = encode_body(TextMessage(flag=8, text="hello"))
    d = gateway.send_command(PHONE, 0x8300, body)
    command = yield dev.next(0x8300)
    assert command.body.text == "hello"
    dev.send(TerminalResponse(command.header.serial, 0x8300, 0))
    reply = yield d
    assert (reply["msg_id"], reply["version"]) == (0x0001, 2013)
    assert decode_body(0x0001, reply["body"]) == TerminalResponse(command.header.serial, 0x8300, 0)
    with pytest.raises(DeviceOffline):
        yield gateway.send_command("13899999999", 0x8300, body)
    dev.transport.loseConnection()


def test_retransmission_schedule() -> None:
    """Unanswered commands are re-sent T, then T·2, then T·2·3 after the previous send
    (JT/T 808 §6.1: T(N+1) = T(N)·(N+1)), then fail with CommandTimeout."""
    from cmsv6.plugins.gateway.session import DeviceSession
    from cmsv6.protocols.jt808.header import Header

    clock = task.Clock()
    gw = Gateway(db=None, clock=clock, gateway_id="gw", public_address="x")  # type: ignore[arg-type]

    link = FakeLink()
    session = DeviceSession(gw, link)
    session.header = Header(0x0002, "013800000001", 1)
    session.phone = PHONE
    session.device = object()  # type: ignore[assignment]
    gw.sessions[PHONE] = session
    d = gw.send_command(PHONE, 0x8201, b"", timeout=10.0, retries=3)
    failures: list[Any] = []
    d.addErrback(failures.append)
    times = []
    for step in range(100):
        before = len(link.frames)
        clock.advance(1)
        if len(link.frames) > before:
            times.append(clock.seconds())
    assert times == [0 + 10, 10 + 20, 30 + 60][: len(times)] and len(times) == 3
    clock.advance(1000)
    assert failures and failures[0].check(CommandTimeout)


def test_command_framed_in_the_live_session_version() -> None:
    """A command goes out in the version of the device's live session, with the body given
    for that version; the reply comes back as its raw bytes, and a reply that does not
    decode still answers the command, bytes kept."""
    from cmsv6.plugins.gateway.session import DeviceSession
    from cmsv6.protocols.jt808.codec import decode_body, encode, encode_body
    from cmsv6.protocols.jt808.framing import parse_frame
    from cmsv6.protocols.jt808.header import Header
    from cmsv6.protocols.jt808.messages.info import TextMessage

    clock = task.Clock()
    gw = Gateway(db=None, clock=clock, gateway_id="gw", public_address="x")  # type: ignore[arg-type]
    link = FakeLink()
    session = DeviceSession(gw, link)
    phone = "00000000013800000001"
    session.frame_received(parse_frame(encode(Header(0x0002, phone, 1, 2019, 1), Heartbeat())))
    session.device = object()  # type: ignore[assignment]
    gw.sessions[PHONE] = session
    link.take()
    body_2013 = encode_body(TextMessage(flag=8, text="hi"), 2013)
    body_2019 = encode_body(TextMessage(flag=8, text="hi", text_type=2), 2019)
    replies: list[Any] = []
    gw.send_command(PHONE, 0x8300, body_2013, body_2019=body_2019).addBoth(replies.append)
    (command,) = link.take()
    assert command.header.version == 2019 and command.header.phone == phone
    assert command.body.text_type == 2
    answer = encode_body(TerminalResponse(command.header.serial, 0x8300, 0), 2019)
    session.frame_received(parse_frame(encode(Header(0x0001, phone, 2, 2019, 1),
                                              RawBody(answer))))  # fmt: skip
    assert replies == [{"msg_id": 0x0001, "version": 2019, "body": answer}]
    assert decode_body(0x0001, replies[0]["body"], 2019).reply_serial == command.header.serial

    gw.send_command(PHONE, 0x8201, b"").addBoth(replies.append)
    (query,) = link.take()
    broken = query.header.serial.to_bytes(2, "big") + b"\x01"  # a 0x0201 cut short
    session.frame_received(parse_frame(encode(Header(0x0201, phone, 3, 2019, 1), RawBody(broken))))
    assert replies[1] == {"msg_id": 0x0201, "version": 2019, "body": broken}
    (refused,) = link.take()
    assert refused.header.msg_id == 0x8001 and refused.body.result == 2


def test_backpressure_holds_reporting_devices_only() -> None:
    """When the writer is behind, authenticated devices are paused and devices still
    registering are not; all are resumed when it catches up."""
    from cmsv6.plugins.gateway.session import DeviceSession

    clock = task.Clock()
    gw = Gateway(db=None, clock=clock, gateway_id="gw", public_address="x")  # type: ignore[arg-type]

    reporting, registering = FakeLink(), FakeLink()
    for phone, link in ((PHONE, reporting), (None, registering)):
        session = DeviceSession(gw, link)
        gw.connected(session)
        if phone:
            session.phone = phone
            session.device = object()  # type: ignore[assignment]
            gw.sessions[phone] = session
    gw.writer.on_pressure(True)
    assert reporting.paused and not registering.paused
    gw.writer.on_pressure(False)
    assert not reporting.paused


def test_reading_paused_for_either_reason() -> None:
    """A connection stops being read while the writer is behind or while the device does
    not read what we send, and resumes only when neither holds."""
    from twisted.internet.testing import StringTransport

    from cmsv6.plugins.gateway.protocol import JT808Protocol

    gw = Gateway(db=None, clock=task.Clock(), gateway_id="gw", public_address="x")  # type: ignore[arg-type]
    proto = JT808Protocol(gw)
    transport = StringTransport()
    proto.makeConnection(transport)
    assert transport.producer is proto  # the transport pauses us when its buffer is full
    proto.pauseProducing()  # the device does not read
    proto.pause()  # and the writer is behind
    assert transport.producerState == "paused"
    proto.resumeProducing()
    assert transport.producerState == "paused"
    proto.resume()
    assert transport.producerState == "producing"


@pytest_twisted.inlineCallbacks
def test_photos_in_one_second_are_two_files(gateway: Gateway, monkeypatch: Any) -> None:
    """Two uploads with the same media id and channel within one second (a unit that
    reuses its ids) are two files with two rows; neither replaces the other."""
    from datetime import datetime, timezone

    from cmsv6.protocols.jt808.messages.multimedia import MultimediaData

    second = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
    ticks = iter(range(1, 1000))  # microseconds apart, all in one second
    monkeypatch.setattr(gateway, "now", lambda: second.replace(microsecond=next(ticks)))
    dev = yield _device(gateway)
    yield dev.login()
    photos = [b"\xff\xd8first\xff\xd9", b"\xff\xd8second\xff\xd9"]
    for jpeg in photos:
        dev.send(MultimediaData(5, 0, 0, 0, 1, location(extras={}), jpeg))
        done = yield dev.next(0x8800)
        assert (done.body.media_id, done.body.retransmit_ids) == (5, ())
    yield until(lambda: len(query(gateway.dsn, "SELECT id FROM media_files")) == 2,
                "two media rows", in_thread=True)  # fmt: skip
    stored = query(gateway.dsn, "SELECT path FROM media_files ORDER BY id")
    assert len({p for (p,) in stored}) == 2
    contents = []
    for (path,) in stored:
        with open(path, "rb") as f:
            contents.append(f.read())
    assert contents == photos
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_sessions_opened_together_are_recorded_together(gateway: Gateway) -> None:
    """Sessions opened while one is being recorded go in one statement (a reconnect storm
    is a few commits, not one per device), and each gets back its own row's id."""
    phones = [f"1380000{i:04d}" for i in range(50)]
    for phone in phones:
        add_device(gateway.dsn, phone)  # type: ignore[attr-defined]
    ids = dict(query(gateway.dsn, "SELECT phone, id FROM devices"))  # type: ignore[attr-defined]
    now = gateway.now()
    opened = [gateway.session_log.open(ids[p], f"10.0.0.{i}:{5000 + i}", now + timedelta(seconds=i))
              for i, p in enumerate(phones)]  # fmt: skip
    session_ids = yield defer.gatherResults(opened)
    assert gateway.session_log.statements == 2  # the first alone, the 49 others together
    rows = {r[0]: r[1:] for r in query(
        gateway.dsn, "SELECT id, device_id, device_address, connected, gateway_id"  # type: ignore[attr-defined]
        " FROM device_sessions")}  # fmt: skip
    assert len(set(session_ids)) == 50
    for i, (phone, session_id) in enumerate(zip(phones, session_ids)):
        assert rows[session_id] == (ids[phone], f"10.0.0.{i}:{5000 + i}",
                                    now + timedelta(seconds=i), "gw-test")

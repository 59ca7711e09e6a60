"""The simulated device's JT/T 808 behaviour, sans-IO: frames in and out, time given."""

from __future__ import annotations

import io
from random import Random
from typing import Any

import attrs
import av
import pytest

from cmsv6.protocols.jt808.codec import Message, decode_body, encode_body
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.core import (
    Authenticate,
    PlatformResponse,
    Register,
    RegisterResponse,
    ResendRequest,
    TerminalResponse,
)
from cmsv6.protocols.jt808.messages.info import TextMessage
from cmsv6.protocols.jt808.messages.location import (
    ALARM_EMERGENCY,
    ALARM_OVERSPEED,
    Location,
    LocationBatch,
    LocationQueryResponse,
    QueryLocation,
)
from cmsv6.protocols.jt808.messages.multimedia import MultimediaData, MultimediaUploadResponse, TakePhoto, TakePhotoResponse
from cmsv6.protocols.jt808.messages.params import (
    ParametersResponse,
    QueryParameters,
    QuerySpecifiedParameters,
    SetParameters,
    TerminalControl,
)
from cmsv6.protocols.jt808.model import RawBody
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.sim.address import host_port
from tests.support.link import FakeLink
from cmsv6.sim.device import (
    ONLINE,
    Counters,
    Device,
    DeviceConfig,
    DeviceEvents,
    batch_body,
    beijing,
)

PHONE = "013800000001"
SERVER = "tcp:127.0.0.1:6608"
T0 = 1_750_000_000.0  # 2025-06-15, Beijing
QUIET = DeviceConfig(alarm_probability=0.0, gap_probability=0.0, heartbeat=1000.0)


class Events(DeviceEvents):
    def __init__(self) -> None:
        self.acks: list[tuple[Location, int]] = []
        self.registrations = 0
        self.refusals: list[str | None] = []

    def acknowledged(self, device: Device, body: bytes, serial: int) -> None:
        self.acks.append((decode_body(0x0200, body), serial))

    def registered(self, device: Device) -> None:
        self.registrations += 1

    def refused(self, device: Device) -> None:
        self.refusals.append(device.refusal)


class Rig:
    """A device, its link, and a platform side that answers by hand."""

    def __init__(self, config: DeviceConfig = QUIET, version: int = 2013, auth_code: str | None = None, seed: int = 7) -> None:
        self.counters = Counters()
        self.events = Events()
        self.now = T0
        self.device = Device(
            PHONE,
            server=SERVER,
            config=config,
            rng=Random(seed),
            counters=self.counters,
            version=version,
            plate="粤B00001",
            auth_code=auth_code,
            events=self.events,
            start_at=T0,
            now=T0,
        )
        self.link = FakeLink()
        self._serial = 100
        self._reported: set[int] = set()

    def header(self, msg_id: int) -> Header:
        self._serial += 1
        if self.device.version == 2019:
            return Header(msg_id, PHONE, self._serial, 2019, 1)
        return Header(msg_id, PHONE, self._serial)

    def platform(self, body: Any) -> Header:
        """Deliver a platform message; its header."""
        h = self.header(body.MSG_ID)
        self.device.received(Message(h, body), self.now)
        return h

    def ack(self, message: Message, result: int = 0) -> None:
        self.platform(PlatformResponse(message.header.serial, message.header.msg_id, result))

    def tick(self, at: float | None = None) -> str | None:
        if at is not None:
            self.now = at
        return self.device.tick(self.now)

    def until_wake(self) -> str | None:
        """Advance to the device's next wake-up and tick."""
        return self.tick(self.device.wake)

    def connect(self) -> list[Message]:
        """Tick until the device asks for a connection, then connect it."""
        for _ in range(100):
            address = self.until_wake()
            if address is not None:
                break
        else:
            raise AssertionError("the device never asked for a connection")
        self.link = FakeLink()
        self.device.connected(self.link, self.now)
        return self.link.take()

    def login(self) -> None:
        """Connect, register if asked to, authenticate."""
        (first,) = self.connect()
        if first.header.msg_id == 0x0100:
            self.platform(RegisterResponse(first.header.serial, 0, "CODE-1"))
            (first,) = self.link.take()
        assert first.header.msg_id == 0x0102
        self.ack(first)
        assert self.device.state == ONLINE

    def report(self) -> Message:
        """Advance to the next position report; the frame it sent."""
        for _ in range(100):
            self.until_wake()
            sent = [
                m
                for m in self.link.take()
                if m.header.msg_id in (0x0200, 0x0704) and m.header.serial not in self._reported
            ]
            if sent:
                (m,) = sent
                self._reported.add(m.header.serial)
                return m
        raise AssertionError("no report")

    def disconnect(self) -> None:
        self.link.closed = True
        self.device.disconnected(self.now)


def test_register_authenticate_report() -> None:
    """A new device registers, authenticates with the code it got, then reports positions
    with Beijing time from the clock and the mileage, signal and satellite items."""
    rig = Rig()
    (reg,) = rig.connect()
    assert reg.header.msg_id == 0x0100 and reg.header.phone == PHONE
    assert isinstance(reg.body, Register) and reg.body.plate == "粤B00001"
    rig.platform(RegisterResponse(reg.header.serial, 0, "CODE-1"))
    assert rig.device.auth_code == "CODE-1" and rig.events.registrations == 1
    (auth,) = rig.link.take()
    assert auth.body == Authenticate("CODE-1")
    rig.ack(auth)
    assert rig.device.state == ONLINE and rig.counters.authenticated == 1
    pos = rig.report()
    assert pos.header.msg_id == 0x0200
    loc = pos.body
    assert loc.time == beijing(rig.now) and loc.time.utcoffset() == BEIJING.utcoffset(None)
    assert set(loc.extras) >= {0x01, 0x30, 0x31}
    assert abs(loc.latitude - 22.54) < 0.5 and abs(loc.longitude - 114.06) < 0.5
    assert 20 <= loc.speed <= 80
    rig.ack(pos)
    assert rig.counters.acknowledged == 1
    assert rig.events.acks == [(loc, pos.header.serial)]
    assert rig.device.unacknowledged == 0


def test_known_code_authenticates_directly() -> None:
    """A device that kept its code authenticates without registering."""
    rig = Rig(auth_code="KEPT")
    (first,) = rig.connect()
    assert first.header.msg_id == 0x0102 and first.body.auth_code == "KEPT"


def test_refused_code_registers_again() -> None:
    """When the platform refuses the code, the device forgets it and registers again."""
    rig = Rig(auth_code="STALE")
    (auth,) = rig.connect()
    rig.ack(auth, result=1)
    (reg,) = rig.link.take()
    assert reg.header.msg_id == 0x0100
    assert rig.device.auth_code is None and rig.counters.auth_failures == 1


def test_refusals_in_words() -> None:
    """A refused registration or authentication is kept in words with its code, told to
    the owner once per new reason (the unit retries without end), and forgotten once the
    device gets in."""
    rig = Rig()
    (reg,) = rig.connect()
    rig.platform(RegisterResponse(reg.header.serial, 4))
    assert rig.link.closed
    assert rig.device.refusal == "registration refused: terminal not in the database (4)"
    rig.device.disconnected(rig.now)
    (reg,) = rig.connect()
    rig.platform(RegisterResponse(reg.header.serial, 4))
    assert rig.events.refusals == ["registration refused: terminal not in the database (4)"]
    rig.device.disconnected(rig.now)
    (reg,) = rig.connect()
    rig.platform(RegisterResponse(reg.header.serial, 0, "CODE"))
    (auth,) = rig.link.take()
    rig.ack(auth, result=1)
    assert rig.device.refusal == "authentication refused: failed (1)"
    (reg,) = rig.link.take()
    rig.platform(RegisterResponse(reg.header.serial, 9))
    assert rig.device.refusal == (
        "registration refused: a result the standard does not define (9)"
    )
    rig.device.disconnected(rig.now)
    (reg,) = rig.connect()
    rig.platform(RegisterResponse(reg.header.serial, 0, "CODE"))
    (auth,) = rig.link.take()
    rig.ack(auth)
    assert rig.device.online and rig.device.refusal is None
    assert len(rig.events.refusals) == 3 and rig.counters.register_failures == 3


def test_2019_device() -> None:
    """A 2019 device sends the 2019 header, register layout and authentication fields."""
    rig = Rig(version=2019)
    (reg,) = rig.connect()
    assert reg.header.version == 2019 and reg.header.protocol_version == 1
    assert reg.body.layout == 2019
    rig.platform(RegisterResponse(reg.header.serial, 0, "C19"))
    (auth,) = rig.link.take()
    assert auth.body.auth_code == "C19" and auth.body.imei and auth.body.software_version
    rig.ack(auth)
    assert rig.report().header.version == 2019


def test_response_matched_by_serial_and_id() -> None:
    """A 0x8001 acknowledges a position only when both its reply serial and reply id match."""
    rig = Rig()
    rig.login()
    pos = rig.report()
    rig.platform(PlatformResponse(pos.header.serial, 0x0002, 0))
    rig.platform(PlatformResponse((pos.header.serial + 1) & 0xFFFF, 0x0200, 0))
    assert rig.counters.acknowledged == 0 and rig.device.unacknowledged == 1
    rig.ack(pos)
    assert rig.counters.acknowledged == 1 and rig.device.unacknowledged == 0


def test_retransmission_after_t_2t_6t() -> None:
    """An unanswered 0x0200 is sent again, same serial, T, 2T and 6T after each send
    (JT/T 808 §6.1: T(N+1) = T(N)·(N+1)); 24T after the last it is kept for a blind-area
    upload, not lost."""
    config = attrs.evolve(QUIET, interval=1000.0, timeout=10.0, retries=3)
    rig = Rig(config)
    rig.login()
    pos = rig.report()
    sent_at = rig.now
    times = []
    for _ in range(3):
        rig.until_wake()
        (again,) = rig.link.take()
        assert again.header == pos.header and again.body == pos.body
        times.append(rig.now - sent_at)
    assert times == [10.0, 30.0, 90.0]
    rig.until_wake()
    assert rig.now - sent_at == 330.0
    assert rig.counters.retransmissions == 3 and rig.counters.timeouts == 1
    assert rig.device.unacknowledged == 1
    (batch,) = [m for m in rig.link.take() if m.header.msg_id == 0x0704]
    assert batch.body.locations == (pos.body,)


def test_refused_position_is_kept() -> None:
    """A position answered with a failure is not acknowledged: it is offered again later."""
    config = attrs.evolve(QUIET, interval=1000.0, timeout=5.0)
    rig = Rig(config)
    rig.login()
    pos = rig.report()
    rig.ack(pos, result=1)
    assert rig.counters.acknowledged == 0 and rig.device.unacknowledged == 1
    batch = rig.report()
    assert batch.header.msg_id == 0x0704 and batch.body.locations == (pos.body,)
    assert rig.now - T0 >= 5.0
    rig.ack(batch)
    assert rig.counters.acknowledged == 1


def test_set_server_redirects() -> None:
    """0x8103 with a new main server (0x0013/0x0018) is answered, then the device drops the
    connection and reconnects at once to the new address, keeping 0x0017 as backup."""
    rig = Rig()
    rig.login()
    h = rig.platform(SetParameters({0x0013: "10.1.2.3", 0x0018: 7611, 0x0017: "127.0.0.1:6608"}))
    (answer,) = rig.link.take()
    assert answer.body == TerminalResponse(h.serial, 0x8103, 0)
    assert rig.link.closed
    rig.disconnect()
    address = rig.tick()
    assert address is not None and host_port(address) == ("10.1.2.3", 7611)
    assert rig.counters.redirects == 1
    assert rig.device.backup_host == "127.0.0.1" and rig.device.backup_port == 6608


def test_set_server_without_backup_port_uses_the_senders_port() -> None:
    """A backup without a port is on the port of the server that named it (login)."""
    rig = Rig()
    rig.login()
    rig.platform(SetParameters({0x0013: "10.1.2.3", 0x0018: 7611, 0x0017: "127.0.0.1"}))
    assert rig.device.backup_port == 6608


def test_falls_back_to_backup_after_failures() -> None:
    """After N failed connections to the main server the device tries the backup, and the
    other way round."""
    config = attrs.evolve(QUIET, fallback_after=3)
    rig = Rig(config)
    rig.login()
    rig.platform(SetParameters({0x0013: "10.1.2.3:7611", 0x0017: "127.0.0.1:6608"}))
    rig.disconnect()
    attempts = []
    for _ in range(7):
        address = None
        while address is None:
            address = rig.until_wake()
        attempts.append(host_port(address))
        rig.device.connect_failed(rig.now)
    gw, login = ("10.1.2.3", 7611), ("127.0.0.1", 6608)
    assert attempts == [gw, gw, gw, login, login, login, gw]
    assert rig.counters.fallbacks == 2


def test_main_server_named_on_the_backup_sends_the_device_there() -> None:
    """A device on its backup address (login) that is authenticated there and then given,
    by 0x8103, the main server it already has, goes back to the main server."""
    config = attrs.evolve(QUIET, fallback_after=1)
    rig = Rig(config)
    rig.login()
    rig.platform(SetParameters({0x0013: "10.1.2.3:7611", 0x0017: "127.0.0.1:6608"}))
    rig.disconnect()
    address = None
    while address is None:
        address = rig.until_wake()
    assert host_port(address) == ("10.1.2.3", 7611)
    rig.device.connect_failed(rig.now)  # the gateway is gone: the device falls back
    rig.login()
    assert rig.device.using_backup and host_port(rig.device.address) == ("127.0.0.1", 6608)
    rig.platform(SetParameters({0x0013: "10.1.2.3:7611", 0x0017: "127.0.0.1:6608"}))
    assert rig.link.closed
    rig.disconnect()
    address = rig.tick()
    assert address is not None and host_port(address) == ("10.1.2.3", 7611)


def test_reconnect_backoff_grows_with_jitter() -> None:
    """Reconnection delays grow (1, 2, 4... s, capped) with ±50% jitter."""
    config = attrs.evolve(QUIET, reconnect_initial=1.0, reconnect_factor=2.0, reconnect_max=8.0)
    rig = Rig(config)
    rig.connect()
    delays = []
    for _ in range(6):
        rig.device.connect_failed(rig.now)
        failed_at = rig.now
        address = None
        while address is None:
            address = rig.until_wake()
        delays.append(rig.now - failed_at)
    for delay, nominal in zip(delays, [1, 2, 4, 8, 8, 8]):
        assert 0.5 * nominal <= delay <= 1.5 * nominal


def test_parameters_query_and_set() -> None:
    """0x8104 answers the whole table, 0x8106 the ids asked for; 0x8103 values apply."""
    rig = Rig()
    rig.login()
    h = rig.platform(SetParameters({0x0001: 45, 0x0029: 5, 0x0055: 90, 0xF001: b"\x01"}))
    (answer,) = rig.link.take()
    assert answer.body == TerminalResponse(h.serial, 0x8103, 0) and not rig.link.closed
    assert rig.device.heartbeat == 45 and rig.device.interval == 5 and rig.device.speed_limit == 90
    h = rig.platform(QueryParameters())
    (table,) = rig.link.take()
    assert isinstance(table.body, ParametersResponse) and table.body.reply_serial == h.serial
    params = table.body.as_dict()
    assert params[0x0001] == 45 and params[0x0029] == 5 and params[0xF001] == b"\x01"
    assert params[0x0013] == "127.0.0.1" and params[0x0018] == 6608 and params[0x0083] == "粤B00001"
    h = rig.platform(QuerySpecifiedParameters([0x0055, 0x0001, 0x9999]))
    (table,) = rig.link.take()
    assert table.body.params == ((0x0055, 90), (0x0001, 45))


def test_query_location() -> None:
    """0x8201 is answered with 0x0201 carrying the current position."""
    rig = Rig()
    rig.login()
    rig.now += 20
    h = rig.platform(QueryLocation())
    (answer,) = rig.link.take()
    assert isinstance(answer.body, LocationQueryResponse)
    assert answer.body.reply_serial == h.serial and answer.body.location.time == beijing(rig.now)


def test_text_control_and_unknown_commands() -> None:
    """Text and terminal control are acknowledged; an unknown command gets result 3."""
    rig = Rig()
    rig.login()
    h1 = rig.platform(TextMessage(1, "hello"))
    h2 = rig.platform(TerminalControl(4))
    unknown = rig.header(0x8F00)
    rig.device.received(Message(unknown, RawBody(b"\x01")), rig.now)
    assert [m.body for m in rig.link.take()] == [
        TerminalResponse(h1.serial, 0x8300, 0),
        TerminalResponse(h2.serial, 0x8105, 0),
        TerminalResponse(unknown.serial, 0x8F00, 3),
    ]


def test_photo_is_sub_packaged_and_resent_on_request() -> None:
    """0x8801 gives a 0x0805 with the media id, then the JPEG in numbered 0x0801 packets with
    consecutive serials; 0x8003 re-sends exactly the packets it names."""
    rig = Rig()
    rig.login()
    h = rig.platform(TakePhoto(1, 1, 0, 0, 1, 5, 128, 64, 64, 128))
    reply, *packets = rig.link.take()
    assert isinstance(reply.body, TakePhotoResponse) and reply.body.reply_serial == h.serial
    (media_id,) = reply.body.media_ids
    assert len(packets) > 1
    first = packets[0].header.serial
    assert [p.header.packet.index for p in packets] == list(range(1, len(packets) + 1))
    assert {p.header.packet.total for p in packets} == {len(packets)}
    assert [p.header.serial for p in packets] == [first + i for i in range(len(packets))]
    whole = b"".join(p.body.data for p in packets)
    photo = decode_body(0x0801, whole)
    assert isinstance(photo, MultimediaData) and photo.media_id == media_id
    assert photo.data[:2] == b"\xff\xd8" and photo.data[-2:] == b"\xff\xd9"
    # A picture FFmpeg (and so a browser) decodes, of about the configured size.
    picture = next(av.open(io.BytesIO(photo.data), format="mjpeg").decode(video=0))
    assert (picture.width, picture.height) == (176, 144)
    low, high = rig.device.config.photo_size
    assert low <= len(photo.data) <= high
    rig.platform(ResendRequest(first, [2, len(packets)]))
    again = rig.link.take()
    assert [a.header for a in again] == [packets[1].header, packets[-1].header]
    assert [a.body for a in again] == [packets[1].body, packets[-1].body]
    rig.platform(MultimediaUploadResponse(media_id, [1]))
    (again,) = rig.link.take()
    assert again.header == packets[0].header


def test_photo_packets_are_retransmitted_until_answered() -> None:
    """Each 0x0801 packet waits for its own 0x8001; an unanswered one is sent again."""
    config = attrs.evolve(QUIET, interval=1000.0)
    rig = Rig(config)
    rig.login()
    rig.platform(TakePhoto(1, 1, 0, 0, 1, 5, 128, 64, 64, 128))
    _, *packets = rig.link.take()
    for p in packets[1:]:
        rig.ack(p)
    rig.until_wake()
    (again,) = rig.link.take()
    assert again.header == packets[0].header


def test_unacknowledged_positions_resent_after_reconnect() -> None:
    """Positions not acknowledged when the connection drops are uploaded again after the
    device has reconnected and authenticated, in a blind-area batch with their times."""
    rig = Rig()
    rig.login()
    sent = [rig.report() for _ in range(3)]
    rig.ack(sent[0])
    rig.disconnect()
    assert rig.device.unacknowledged == 2
    (auth,) = rig.connect()
    assert auth.header.msg_id == 0x0102
    rig.ack(auth)
    (batch,) = [m for m in rig.link.take() if m.header.msg_id == 0x0704]
    assert batch.body.kind == 1
    assert batch.body.locations == tuple(m.body for m in sent[1:])
    rig.ack(batch)
    assert rig.device.unacknowledged == 0 and rig.counters.acknowledged == 3
    assert rig.counters.reconnects == 1


def test_coverage_gap_backlog_uploaded_in_batches() -> None:
    """During a coverage gap the device is offline and keeps its positions; when coverage
    returns it uploads them as 0x0704 type 1 batches of at most 10, with their own times."""
    config = attrs.evolve(QUIET, gap_probability=1.0, gap_seconds=100.0, interval=4.0)
    rig = Rig(config)
    rig.login()
    first = rig.report()
    assert rig.link.closed and rig.counters.gaps == 1
    rig.disconnect()
    gap_end = rig.device._gap_until
    kept_times = []
    while True:
        address = rig.until_wake()
        if address is not None:
            break
        kept_times.append(rig.now)
    assert rig.now >= gap_end and len(kept_times) > 10
    rig.device.config = attrs.evolve(config, gap_probability=0.0)
    rig.link = FakeLink()
    rig.device.connected(rig.link, rig.now)
    (auth,) = rig.link.take()
    rig.ack(auth)
    uploaded: list[Location] = []
    while True:
        batches = [m for m in rig.link.take() if m.header.msg_id == 0x0704]
        if not batches:
            break
        for b in batches:
            assert b.body.kind == 1 and 1 <= len(b.body.locations) <= 10
            uploaded.extend(b.body.locations)
            rig.ack(b)
    assert uploaded[0] == first.body
    assert [loc.time for loc in uploaded[1:]] == [beijing(t) for t in kept_times]
    assert rig.device.unacknowledged == 0


def test_backlog_is_bounded() -> None:
    """At most ``max_unacked`` positions are kept; the oldest are dropped and counted."""
    config = attrs.evolve(QUIET, max_unacked=5)
    rig = Rig(config)
    rig.login()
    rig.disconnect()
    rig.device._connect_at = float("inf")  # stays offline
    times = []
    while len(times) < 8:
        before = rig.counters.positions
        rig.until_wake()
        if rig.counters.positions > before:
            times.append(rig.now)
    assert rig.device.unacknowledged == 5 and rig.counters.dropped == 3
    kept = [decode_body(0x0200, b).time for b in rig.device._backlog]
    assert kept == [beijing(t) for t in times[3:]]


def test_emergency_alarm_raised_and_cleared() -> None:
    """An emergency alarm stays on until a position carrying it is acknowledged."""
    rig = Rig(attrs.evolve(QUIET, alarm_probability=1.0))
    rig.login()
    pos = rig.report()
    assert pos.body.alarm & ALARM_EMERGENCY
    rig.device.config = QUIET
    again = rig.report()
    assert again.body.alarm & ALARM_EMERGENCY
    rig.ack(pos)
    assert not rig.report().body.alarm & ALARM_EMERGENCY
    assert rig.counters.alarms_raised >= 1 and rig.counters.alarms_cleared >= 1


def test_overspeed_alarm() -> None:
    """Above the speed limit the overspeed bit and its 0x11 item are set."""
    rig = Rig(attrs.evolve(QUIET, speed_limit=0))
    rig.login()
    pos = rig.report()
    assert pos.body.alarm & ALARM_OVERSPEED and 0x11 in pos.body.extras
    rig.device.speed_limit = 200
    pos = rig.report()
    assert not pos.body.alarm & ALARM_OVERSPEED and 0x11 not in pos.body.extras


def test_heartbeat_and_dead_link() -> None:
    """Heartbeats go out every interval; one that is never answered ends the connection."""
    config = attrs.evolve(QUIET, heartbeat=30.0, interval=1000.0, timeout=5.0, retries=1)
    rig = Rig(config)
    rig.login()
    login_at = rig.now
    heartbeats = []
    while not rig.link.closed:
        rig.until_wake()
        for m in rig.link.take():
            if m.header.msg_id == 0x0002:
                heartbeats.append((rig.now - login_at, m.header.serial))
        assert rig.now - login_at < 1000
    # Sent at 30 s, again (same serial) 5 s later, given up 10 s after that.
    assert [t for t, _ in heartbeats] == [30.0, 35.0]
    assert heartbeats[0][1] == heartbeats[1][1]
    assert rig.now - login_at == 45.0


def test_logout_on_stop() -> None:
    """Stopping an authenticated device sends 0x0003 and closes."""
    rig = Rig()
    rig.login()
    assert rig.device.stop(rig.now)
    (logout,) = rig.link.take()
    assert logout.header.msg_id == 0x0003 and rig.link.closed
    assert rig.device.tick(rig.now + 1000) is None


def test_bad_frame_is_answered_and_counted() -> None:
    """A platform message with a bad check code is answered with result 2 and counted."""
    rig = Rig()
    rig.login()
    h = rig.header(0x8300)
    rig.device.received(Message(h, TextMessage(1, "x"), checksum_ok=False), rig.now)
    (answer,) = rig.link.take()
    assert answer.body == TerminalResponse(h.serial, 0x8300, 2)
    assert rig.counters.errors == 1


@pytest.mark.parametrize("count", [1, 3, 10])
def test_batch_body_matches_the_codec(count: int) -> None:
    """The hand-built 0x0704 body is what the codec builds from the same locations."""
    rig = Rig()
    bodies = [encode_body(rig.device.location(T0 + 10 * i), 2013) for i in range(count)]
    locations = [decode_body(0x0200, b) for b in bodies]
    assert batch_body(1, bodies) == encode_body(LocationBatch(1, locations))

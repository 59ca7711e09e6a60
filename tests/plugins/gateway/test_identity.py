"""Device identity on the gateway (issue 9): knowing a phone number does not give its
code. Real PostgreSQL, loopback sockets, scripted devices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, threads

from cmsv6.db.devices import add_device, hash_auth_code
from cmsv6.db.service import Database
from cmsv6.plugins.gateway.gateway import Gateway
from cmsv6.plugins.gateway.protocol import JT808Factory
from cmsv6.protocols.jt808.messages.core import Authenticate, Register
from cmsv6.terminal.registration import RegistrationPolicy
from tests.support.database import query
from tests.support.device import connect, location, shipping_writer, until, within

PHONE = "13800000071"
#: What the real unit sends; the impostor sends its own.
REAL = Register(44, 300, "CMSV6", "SIM-1", "T000001", 1, "粤B00001")
IMPOSTOR = Register(44, 300, "EVIL", "X-1", "T999999", 1, "粤B00001")



@pytest.fixture
def make_gateway(dsn: str, tmp_path: Any) -> Any:
    """A function starting a gateway with a registration policy on a loopback port."""
    from twisted.internet import reactor

    started: list[Any] = []

    @defer.inlineCallbacks
    def make(policy: RegistrationPolicy = RegistrationPolicy()) -> Any:
        db = Database(dsn, reactor, size=2, writer_threads=1)
        db.startService()
        writer, stop_writer = shipping_writer(db, reactor)
        gw = Gateway(db, reactor, "gw-id", "127.0.0.1:7611", open_registration=policy.open,
                     registration=policy, media_dir=tmp_path / "media", writer=writer)
        gw.dsn = dsn  # type: ignore[attr-defined]
        started.append((gw, db, None, stop_writer))
        yield within(db.ready(), "the database")
        port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            JT808Factory(gw)
        )
        started[-1] = (gw, db, port, stop_writer)
        gw.port = port.getHost().port  # type: ignore[attr-defined]
        return gw

    yield make
    for gw, db, port, stop_writer in started:
        for session in list(gw.connections):
            session.link.close()
        stop_writer()
        if port is not None:
            pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
        pytest_twisted.blockon(defer.maybeDeferred(db.stopService))


def _device(gw: Gateway, phone: str = PHONE) -> Any:
    from twisted.internet import reactor

    return connect(reactor, gw.port, phone)  # type: ignore[attr-defined]


@defer.inlineCallbacks
def _register(gw: Gateway, phone: str = PHONE, body: Register = REAL) -> Any:
    """Connect and register: (device, 0x8100 body)."""
    dev = yield _device(gw, phone)
    dev.send(body)
    reply = yield dev.next(0x8100)
    return dev, reply.body


def _cmsv6(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script (as an operator runs it)."""
    script = Path(sys.executable).parent / "cmsv6"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "USER": "ops-alice"})  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_takeover_refused_and_real_device_keeps_its_session(make_gateway: Any) -> None:
    """The takeover replayed: a second client registering the real device's phone gets
    0x8100 result 3 and no code, cannot authenticate or report, changes nothing stored;
    the real device keeps its session and its positions are stored."""
    gw = yield make_gateway()
    add_device(gw.dsn, PHONE, plate="粤B00001")
    real = yield _device(gw)
    code = yield real.login()
    meta = query(gw.dsn, "SELECT manufacturer, model, terminal_id, auth_hash FROM devices")

    evil, reply = yield _register(gw, body=IMPOSTOR)
    assert (reply.result, reply.auth_code) == (3, None)
    for guess in ("", "0", code[:-1]):
        evil.send(Authenticate(guess))
        ack = yield evil.next(0x8001)
        assert ack.body.result == 1
    yield within(evil.lost, "the impostor closed after its failed authentications")
    assert query(gw.dsn, "SELECT manufacturer, model, terminal_id, auth_hash FROM devices") == meta

    serial = real.send(location(lat=22.6, lon=114.1))
    ack = yield real.next(0x8001)
    assert (ack.body.reply_serial, ack.body.result) == (serial, 0)
    assert not real.lost.called
    assert gw.sessions[PHONE].link.peer == f"127.0.0.1:{real.transport.getHost().port}"
    assert query(gw.dsn, "SELECT latitude, longitude FROM positions") == [(22.6, 114.1)]
    assert gw.counters["register_refused"] == 1
    real.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_reset_auth_lets_the_unit_register_again(make_gateway: Any) -> None:
    """After `cmsv6 device reset-auth PHONE` (audited) the next registration gets a new
    code; the old code no longer authenticates."""
    gw = yield make_gateway()
    add_device(gw.dsn, PHONE)
    dev, first = yield _register(gw)
    assert first.result == 0
    dev.transport.loseConnection()
    dev, again = yield _register(gw)
    assert again.result == 3
    dev.transport.loseConnection()

    done = yield threads.deferToThread(_cmsv6, "device", "reset-auth", "0" + PHONE, "--dsn", gw.dsn)
    assert done.returncode == 0, done.stderr
    assert query(gw.dsn, "SELECT action, details->>'phone', details->>'by' FROM audit") == [
        ("device.reset_auth", PHONE, "ops-alice")
    ]
    dev, fresh = yield _register(gw)
    assert fresh.result == 0 and fresh.auth_code != first.auth_code
    dev.send(Authenticate(fresh.auth_code))
    ack = yield dev.next(0x8001)
    assert ack.body.result == 0
    old = yield _device(gw)
    old.send(Authenticate(first.auth_code))
    ack = yield old.next(0x8001)
    assert ack.body.result == 1
    dev.transport.loseConnection()
    old.transport.loseConnection()
    missing = yield threads.deferToThread(_cmsv6, "device", "reset-auth", "13899999999", "--dsn", gw.dsn)
    assert missing.returncode == 1 and "no device 13899999999" in missing.stderr


@pytest_twisted.inlineCallbacks
def test_stored_code_is_not_the_plaintext(make_gateway: Any) -> None:
    """The database holds a salted SHA-256 of the code, never the code itself; the reply
    carried the code."""
    gw = yield make_gateway()
    add_device(gw.dsn, PHONE)
    dev = yield _device(gw)
    code = yield dev.login()
    assert len(code) == 32
    (row,) = query(gw.dsn, "SELECT d::text, auth_salt, auth_hash FROM devices d")
    assert code not in row[0] and code.encode().hex() not in row[0]
    assert bytes(row[2]) == hash_auth_code(code, bytes(row[1])) and len(bytes(row[1])) == 16
    dev.transport.loseConnection()


@pytest_twisted.inlineCallbacks
def test_terminal_id_setting_accepts_the_same_unit_only(make_gateway: Any) -> None:
    """With reregister = "terminal_id", a registered phone registers again only with the
    terminal id on record; another terminal id gets result 3."""
    gw = yield make_gateway(RegistrationPolicy(reregister="terminal_id"))
    add_device(gw.dsn, PHONE, terminal_id="T000001")
    dev, first = yield _register(gw)
    dev.transport.loseConnection()
    dev, impostor = yield _register(gw, body=IMPOSTOR)
    dev.transport.loseConnection()
    dev, same = yield _register(gw)
    dev.transport.loseConnection()
    assert (first.result, impostor.result, same.result) == (0, 3, 0)
    assert same.auth_code != first.auth_code
    assert query(gw.dsn, "SELECT terminal_id, manufacturer FROM devices") == [("T000001", "CMSV6")]


@pytest_twisted.inlineCallbacks
def test_registrations_rate_limited_per_address(make_gateway: Any) -> None:
    """The N+1th registration from one address in a window gets no answer and its
    connection is closed; the refusal is counted."""
    gw = yield make_gateway(RegistrationPolicy(per_address=3, per_phone=100))
    for i in range(3):
        dev, reply = yield _register(gw, f"1390000000{i}")
        assert reply.result == 4  # unknown, but answered
        dev.transport.loseConnection()
    dev = yield _device(gw, "13900000009")
    dev.send(REAL)
    yield within(dev.lost, "the over-limit registration's connection closed")
    assert not [m for m in dev.raw if m.header.msg_id == 0x8100]
    assert gw.counters["register_limited"] == 1


@pytest_twisted.inlineCallbacks
def test_registrations_rate_limited_per_phone(make_gateway: Any) -> None:
    """The N+1th registration of one phone in a window is refused the same way."""
    gw = yield make_gateway(RegistrationPolicy(per_address=100, per_phone=2))
    add_device(gw.dsn, PHONE)
    for expected in (0, 3):
        dev, reply = yield _register(gw)
        assert reply.result == expected
        dev.transport.loseConnection()
    dev = yield _device(gw)
    dev.send(REAL)
    yield within(dev.lost, "the over-limit registration's connection closed")
    assert gw.counters["register_limited"] == 1


@pytest_twisted.inlineCallbacks
def test_open_registration_bounded(make_gateway: Any) -> None:
    """Open registration adds at most open_per_hour devices an hour and open_total in all;
    past either, an unknown terminal gets result 4 and nothing is added."""
    gw = yield make_gateway(RegistrationPolicy(open=True, open_per_hour=2, open_total=3,
                                         per_address=100))  # fmt: skip
    results = []
    for phone in ("13900000001", "13900000002", "13900000003"):
        dev, reply = yield _register(gw, phone)
        results.append(reply.result)
        dev.transport.loseConnection()
    assert results == [0, 0, 4]
    # An hour later the hourly bound allows one more, and then the total is reached.
    query(gw.dsn, "UPDATE devices SET created = created - interval '2 hours' RETURNING id")
    results = []
    for phone in ("13900000003", "13900000004"):
        dev, reply = yield _register(gw, phone)
        results.append(reply.result)
        dev.transport.loseConnection()
    assert results == [0, 4]
    assert query(gw.dsn, "SELECT count(*), bool_and(self_registered) FROM devices") == [(3, True)]
    yield until(lambda: not gw.connections, "the connections closed")

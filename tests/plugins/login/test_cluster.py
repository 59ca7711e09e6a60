"""The cluster end to end, as real processes on loopback: PostgreSQL, ``twistd login``
(one, or an active and a standby), ``twistd gateway`` (one or two) and simulated devices
that know only login's address."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer, error, task

from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.db.upgrade import upgrade
from cmsv6.db.users import add_user
from cmsv6.phone import canonical_phone
from cmsv6.protocols.jt808.messages.core import Authenticate, Register, TerminalResponse
from cmsv6.sim.device import DeviceConfig
from cmsv6.sim.fleet import Fleet, FleetConfig
from tests.support.database import query
from tests.support.device import DeviceProtocol, connect, location, until, within
from tests.support.process import GatewayProcess, LoginProcess, free_port


def current_gateways(dsn: str) -> dict[str, str]:
    """phone → the gateway of the device's latest session (killed gateways leave theirs
    open, so the latest one counts)."""
    rows = query(
        dsn,
        "SELECT DISTINCT ON (d.phone) d.phone, s.gateway_id FROM device_sessions s"
        " JOIN devices d ON d.id = s.device_id ORDER BY d.phone, s.connected DESC, s.id DESC",
    )
    return dict(rows)


def positions(dsn: str) -> dict[str, int]:
    rows = query(
        dsn,
        "SELECT d.phone, count(*) FROM positions p JOIN devices d ON d.id = p.device_id"
        " GROUP BY d.phone",
    )
    return dict(rows)


def logged(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except FileNotFoundError:
        return False


def gateway_process(dsn: str, directory: Path, name: str, *logins: str) -> GatewayProcess:
    directory.mkdir(parents=True, exist_ok=True)
    port, cluster = free_port(), free_port()
    extra: list[str] = [
        "--id", name, "--public_jt808", f"127.0.0.1:{port}",
        "--cluster", f"tcp:{cluster}:interface=127.0.0.1",
    ]  # fmt: skip
    for login in logins:
        extra += ["--login", login]
    return GatewayProcess(dsn, port, directory, *extra)


def fleet(login_port: int, devices: int, first_phone: str, record_acks: bool = False) -> Fleet:
    from twisted.internet import reactor

    return Fleet(
        reactor,
        FleetConfig(
            server=f"tcp:127.0.0.1:{login_port}",
            devices=devices,
            first_phone=first_phone,
            version="mixed",
            seed=11,
            status_interval=3600,
            record_acks=record_acks,
            device=DeviceConfig(
                interval=0.5, heartbeat=5.0, timeout=1.0, retries=3, alarm_probability=0.0,
                reconnect_initial=0.1, reconnect_max=1.0, fallback_after=3,
            ),  # fmt: skip
        ),
    )


@pytest_twisted.inlineCallbacks
def test_assignment_and_gateway_failover(dsn: str, tmp_path: Path) -> None:
    """Devices that know only login are spread over two gateways, authenticate there and
    their positions are stored; kill -9 one gateway and its devices come back through the
    backup address (login) and are reassigned to the other."""
    login = LoginProcess(dsn, tmp_path, "login")
    gateways = [gateway_process(dsn, tmp_path / n, n, login_cluster(login)) for n in ("gw-a", "gw-b")]
    sim = fleet(login.jt808, 8, "013900000000")
    done = None
    try:
        login.start()
        for g in gateways:
            g.start()
        yield until(lambda: all(logged(login.log, f"gateway {n} is live") for n in ("gw-a", "gw-b")),
                    "both gateways announced", timeout=20)
        done = sim.start()
        phones = {d.phone.lstrip("0") for d in sim.devices}
        yield until(lambda: set(current_gateways(dsn)) == phones, "every device on a gateway", timeout=30,
                    in_thread=True)
        yield until(lambda: set(positions(dsn)) == phones, "positions from every device", timeout=30,
                    in_thread=True)
        placed = current_gateways(dsn)
        assert set(placed.values()) == {"gw-a", "gw-b"}, placed  # spread by load
        assert sim.counters.redirects >= len(phones)

        on_a = {p for p, g in placed.items() if g == "gw-a"}
        before = positions(dsn)
        gateways[0].kill()
        yield until(lambda: set(current_gateways(dsn).values()) == {"gw-b"},
                    "every device reassigned to gw-b", timeout=60, in_thread=True)
        yield until(lambda: all(positions(dsn).get(p, 0) > before[p] for p in on_a),
                    "positions from the moved devices stored again", timeout=30,
                    in_thread=True)
        assert sim.counters.fallbacks >= len(on_a)
    finally:
        if done is not None:
            yield within(sim.stop(), "the simulated fleet to stop")
        for g in gateways:
            g.stop()
        login.stop()


def login_cluster(login: LoginProcess) -> str:
    return login.client_cluster


@defer.inlineCallbacks
def try_assignment(port: int, phone: str, codes: dict[str, str]) -> Any:
    """One visit of a new device to login: the 0x8103 it gets, or None (refused, or
    nothing listening). The device registers once and keeps its code in ``codes`` for the
    next visits (a registered phone's second registration is refused)."""
    from twisted.internet import reactor

    try:
        dev: DeviceProtocol = yield connect(reactor, port, phone)
    except error.ConnectError:
        return None
    try:
        if phone not in codes:
            dev.send(Register(44, 300, "CMSV6", "SIM-1", "T000001", 1, "粤B00001"))
            reply = yield dev.next(0x8100, timeout=5.0)
            if reply.body.result != 0:
                return None
            codes[phone] = reply.body.auth_code
        dev.send(Authenticate(codes[phone]))
        answer = yield dev.next(timeout=5.0)
        if answer.header.msg_id == 0x8001 and answer.body.result == 0:  # authenticated
            answer = yield dev.next(timeout=5.0)
        if answer.header.msg_id != 0x8103:
            return None
        dev.send(TerminalResponse(answer.header.serial, 0x8103, 0))
        return answer, codes[phone]
    except (defer.TimeoutError, error.ConnectionDone, error.ConnectionLost):
        return None
    finally:
        dev.transport.loseConnection()


def api_login(port: int) -> bool:
    """POST /api/v1/login at a login server's web endpoint; True on 200."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/login",
        data=json.dumps({"username": "ops", "password": "ops-password"}).encode(),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200 and json.load(response).get("token"))
    except (OSError, urllib.error.URLError, ValueError):
        return False


#: The standby serves devices and users within this many seconds of the active one's death.
TAKEOVER = 10.0


@pytest_twisted.inlineCallbacks
def test_hot_standby_takeover(dsn: str, tmp_path: Path) -> None:
    """Two login servers on one database: the standby listens on nothing; kill -9 the
    active one and the standby takes over, the gateway re-announces itself and its
    devices to it, a new device is assigned and a user logs in, both within 10 s of the
    kill (the times are printed)."""
    from twisted.internet import reactor

    add_user(dsn, "ops", "ops-password")
    active = LoginProcess(dsn, tmp_path / "a", "login-a")
    standby = LoginProcess(dsn, tmp_path / "b", "login-b")
    for p in (active, standby):
        p.directory.mkdir()
    gw = gateway_process(dsn, tmp_path / "gw", "gw-1", active.client_cluster, standby.client_cluster)
    sim = fleet(active.jt808, 3, "013700000000")
    done = None
    try:
        active.start()
        standby.start(wait=False)
        yield until(lambda: logged(standby.log, "standing by"), "the standby to stand by", timeout=20)
        for port in (standby.jt808, standby.cluster):  # the standby serves nothing
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, port
        gw.start()
        yield until(lambda: logged(active.log, "gateway gw-1 is live"), "gw-1 announced", timeout=20)
        done = sim.start()
        phones = {d.phone.lstrip("0") for d in sim.devices}
        yield until(lambda: set(positions(dsn)) == phones, "positions from every device", timeout=30,
                    in_thread=True)

        killed = time.monotonic()
        active.kill()
        assigned, codes = None, {}
        for attempt in range(400):
            assigned = yield try_assignment(standby.jt808, "13600000002", codes)
            if assigned is not None:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        took = time.monotonic() - killed
        assert assigned is not None, "the standby never assigned a device"
        logged_in = None
        for attempt in range(400):
            logged_in = api_login(standby.web)
            if logged_in:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        login_took = time.monotonic() - killed
        assert logged_in, "no user could log in at the standby"
        print(f"\nhot standby: {took:.2f} s from kill -9 of the active login server to the"
              f" first assignment by the standby, {login_took:.2f} s to a user's login")
        (tmp_path.parent / "takeover.txt").write_text(f"{took:.3f} {login_took:.3f}\n")
        # A generous bound, not a measurement: the standby holds the lock as soon as the
        # dead server's session ends (well under a second here).
        assert took <= TAKEOVER and login_took <= TAKEOVER, (took, login_took)
        answer, code = assigned
        assert answer.body.as_dict()[0x0018] == gw.port
        yield until(lambda: logged(gw.directory / "gateway-1.log", "with 3 devices online"),
                    "the gateway re-announcing its devices to the standby")
        # The new device goes to the gateway and is served there.
        dev = yield connect(reactor, gw.port, "13600000002")
        dev.send(Authenticate(code))
        ack = yield dev.next(0x8001)
        assert ack.body.result == 0
        serial = dev.send(location())
        ack = yield dev.next(0x8001)
        assert (ack.body.reply_serial, ack.body.result) == (serial, 0)
        dev.transport.loseConnection()
        # The devices already on the gateway never noticed.
        acked = sim.counters.acknowledged
        yield until(lambda: sim.counters.acknowledged > acked + 6, "the fleet carrying on")
    finally:
        if done is not None:
            yield within(sim.stop(), "the simulated fleet to stop")
        gw.stop()
        active.stop()
        standby.stop()


@pytest_twisted.inlineCallbacks
def test_database_promotion_under_login_and_gateway(tmp_path: Path) -> None:
    """Login and gateway on a multi-host DSN: the primary is killed and its synchronous
    standby promoted; both carry on there (devices keep being acknowledged, a new device is
    assigned, a user logs in) and no acknowledged position is lost."""
    from twisted.internet import reactor

    primary = EmbeddedPostgres(tmp_path / "pg1")
    primary.init()
    primary.start()
    standby = None
    login = gw = None
    sim = done = None
    try:
        upgrade(primary.create_database("cmsv6"))
        add_user(primary.dsn("cmsv6"), "ops", "ops-password")
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.psql("SELECT pg_reload_conf()")
        standby = primary.standby(tmp_path / "pg2")
        standby.start()
        dsn = (
            f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} dbname=cmsv6"
            " user=cmsv6 target_session_attrs=read-write connect_timeout=2"
        )
        login = LoginProcess(dsn, tmp_path / "login", "login")
        login.directory.mkdir()
        login.start()
        gw = gateway_process(dsn, tmp_path / "gw", "gw-1", login.client_cluster)
        gw.start()
        yield until(lambda: logged(login.log, "gateway gw-1 is live"), "gw-1 announced", timeout=20)
        sim = fleet(login.jt808, 3, "013500000000", record_acks=True)
        done = sim.start()
        yield until(lambda: sim.counters.acknowledged >= 15, "positions acknowledged", timeout=30)
        primary.kill()
        standby.promote()
        # The new primary has no standby of its own: clear what it inherited, or every
        # commit waits (an operator's step at failover).
        standby.psql("ALTER SYSTEM RESET synchronous_standby_names")
        standby.psql("SELECT pg_reload_conf()")
        acked = sim.counters.acknowledged
        yield until(lambda: sim.counters.acknowledged >= acked + 15, "devices carrying on", timeout=30)
        assigned, codes = None, {}
        for attempt in range(400):
            assigned = yield try_assignment(login.jt808, "13500000099", codes)
            if assigned is not None:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        assert assigned is not None, "login never assigned a device after the promotion"
        assert api_login(login.web), "no user could log in after the promotion"
        yield within(sim.stop(), "the simulated fleet to stop")
        yield done
        stored = set(
            (phone, t)
            for phone, t in query(
                standby.dsn("cmsv6"),
                "SELECT d.phone, p.time FROM positions p JOIN devices d ON d.id = p.device_id",
            )
        )
        lost = [a for a in sim.acknowledged if (canonical_phone(a.phone), a.time) not in stored]
        assert len(sim.acknowledged) >= 30 and not lost, f"{len(lost)} acknowledged positions lost"
    finally:
        if sim is not None and done is not None and not done.called:
            yield within(sim.stop(), "the simulated fleet to stop")
        for p in (gw, login):
            if p is not None:
                p.stop()
        if standby is not None:
            standby.destroy()
        primary.destroy()

"""A clean stop (SIGTERM) of ``twistd gateway`` and ``twistd login`` with devices
connected: the servers close those sessions themselves, so their logs say nothing
alarming about them, and the gateway records them closed. Real processes, loopback."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

import pytest_twisted

from cmsv6.protocols.jt808.messages.core import Register
from tests.plugins.login.test_cluster import gateway_process, logged
from tests.support.database import query
from tests.support.device import connect, location, until, within
from tests.support.process import LoginProcess

#: How twistd exits after a clean stop.
STOPPED = (0, -signal.SIGTERM)
#: A line a clean stop must not write: a warning or worse, or a traceback.
ALARMING = re.compile(r"#(warn|error|critical)\]|Traceback")


def alarming(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if ALARMING.search(line)]


@pytest_twisted.inlineCallbacks
def test_sigterm_with_devices_connected_logs_no_warnings(dsn: str, tmp_path: Path) -> None:
    """SIGTERM to a gateway with devices online (one sending junk, one halfway through
    registering) and to the login server it reports to: both exit by themselves, every device's
    connection is closed, the gateway's sessions are recorded closed ("gateway stopped"),
    and neither log has a warning, an error or a traceback."""
    from twisted.internet import reactor

    login = LoginProcess(dsn, tmp_path / "login", "login")
    (tmp_path / "login").mkdir()
    gateway = gateway_process(dsn, tmp_path / "gw", "gw-stop", login.client_cluster)
    devices: list[Any] = []
    try:
        login.start()
        gateway.start()
        yield until(lambda: logged(login.log, "gateway gw-stop is live"), "the gateway announced")
        for n in range(3):
            dev = yield connect(reactor, gateway.port, f"1380000015{n}")
            yield dev.login()
            dev.send(location())
            assert (yield dev.next(0x8001)).body.result == 0
            devices.append(dev)
        junk = yield connect(reactor, gateway.port, "13800000159")
        yield junk.login()
        junk.transport.write(b"\x7e\x01\x02\x03\x7e" * 3)
        devices.append(junk)
        registering = yield connect(reactor, login.jt808, "13800000158")
        registering.send(Register(44, 300, "CMSV6", "SIM-1", "T000158", 1, "粤B00158"))
        assert (yield registering.next(0x8100)).body.result == 0
        devices.append(registering)
        yield until(lambda: len(query(dsn, "SELECT 1 FROM device_sessions WHERE gateway_id ="
                                           " 'gw-stop' AND disconnected IS NULL")) == 4,
                    "the gateway's sessions recorded", in_thread=True)  # fmt: skip
        gateway.stop()
        login.stop()
        for dev in devices:
            yield within(dev.lost, "the server to close the device's connection")
        # twistd ends a SIGTERM'd run with the signal again: -15, not -9 (stop()'s kill).
        assert gateway.proc is not None and gateway.proc.returncode in STOPPED
        assert login.proc is not None and login.proc.returncode in STOPPED
    finally:
        gateway.stop()
        login.stop()
    rows = query(dsn, "SELECT disconnected IS NOT NULL, reason FROM device_sessions"
                      " WHERE gateway_id = 'gw-stop'")  # fmt: skip
    assert sorted(rows) == [(True, "gateway stopped")] * 4
    assert alarming(tmp_path / "gw" / "gateway-1.log") == []
    assert alarming(login.log) == []

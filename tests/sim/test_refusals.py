"""``cmsv6 sim`` against a real ``twistd gateway`` that refuses its devices: the refusal
shows in words, with its code, in the status line and (with ``-v``) once per device."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest_twisted

from tests.sim.test_loopback import _Collect
from tests.support.device import until, within
from tests.support.process import GatewayProcess, free_port

REASON = "registration refused: terminal not in the database (4)"


@pytest_twisted.inlineCallbacks
def test_sim_shows_why_the_gateway_refuses_its_devices(dsn: str, tmp_path: Path) -> None:
    """Two devices whose phones are not in the database of a gateway with known-only
    registration: each is refused again and again, ``-v`` logs the reason once per device,
    and the status line counts both under that reason."""
    from twisted.internet import reactor

    port = free_port()
    gateway = GatewayProcess(dsn, port, tmp_path, "--registration", "known")
    collect = _Collect()
    process = None
    try:
        gateway.start()
        args = [
            sys.executable, "-m", "cmsv6.cli", "sim", "-v",
            "--server", f"tcp:127.0.0.1:{port}", "--devices", "2",
            "--first-phone", "013800000170", "--status-interval", "0.3", "--reconnect-max", "0.5",
        ]  # fmt: skip
        process = reactor.spawnProcess(collect, sys.executable, args, env=dict(os.environ))
        log = tmp_path / "gateway-1.log"
        yield until(lambda: log.read_text().count("refused (4: unknown terminal)") >= 4
                    and f"refused: 2 ({REASON} ×2)".encode() in collect.stderr,
                    "both devices refused twice, and the status line saying why")  # fmt: skip
        process.signalProcess("INT")
        code = yield within(collect.ended, "cmsv6 sim to exit after SIGINT")
    finally:
        if process is not None and not collect.ended.called:
            process.signalProcess("KILL")
        gateway.stop()
    err = collect.stderr.decode(errors="replace")
    assert code == 0, err
    said = [line for line in err.splitlines() if line.endswith(f": {REASON}")]
    assert len(said) == 2, err
    assert any("013800000170: " in line for line in said)
    assert any("013800000171: " in line for line in said)
    assert err.splitlines()[-1].endswith(f" | refused: 2 ({REASON} ×2)"), err

"""``cmsv6 demo`` looks after what it runs: one demo per directory (a second says which one
runs and touches nothing), it never runs on when one of its servers or its PostgreSQL has
gone (it says which, with the end of its log, and stops the rest), and it takes over a
PostgreSQL that a killed demo left running."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmsv6.db.embedded import EmbeddedPostgres, free_port
from cmsv6.demo import ports
from tests.test_demo import (
    CMSV6,
    DOWN,
    alive,
    banner_value,
    children,
    demo_directory,
    exit_status,
    free_offset,
    running_demo,
)


@pytest.fixture
def home() -> Iterator[Path]:
    """The directory a test's demo runs in (``demo_directory``)."""
    with demo_directory() as directory:
        yield directory


def answers(web: str) -> bool:
    """The demo's Open API answers on its web port."""
    with urllib.request.urlopen(f"{web}/api/openapi.json", timeout=5) as response:
        return response.status == 200


def postmaster(var: Path) -> int:
    pid = EmbeddedPostgres(var / "pg").pid
    assert pid is not None
    return pid


def demo(cwd: Path, offset: int) -> subprocess.CompletedProcess[str]:
    """A demo that is expected to give up at once."""
    return subprocess.run([CMSV6, "demo", "--port-offset", str(offset)], cwd=cwd, check=False,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=DOWN)  # fmt: skip


def all_gone(pids: dict[int, str]) -> list[str]:
    """The command lines of those of ``pids`` still alive after a moment's grace."""
    deadline = time.monotonic() + 10  # an orphan's exit may take a moment to show
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [c for pid, c in pids.items() if alive(pid)]


def test_second_demo_is_refused(home: Path) -> None:
    """A second demo on the same directory says the first runs (its pid and web address)
    and exits 1 touching nothing: the first goes on answering with its PostgreSQL, and still
    stops that PostgreSQL itself; a demo in another directory on the same ports says they
    are in use and creates no database."""
    offset = free_offset()
    var = home / "var"
    with running_demo(home, offset) as (first, out):
        web = banner_value(out.lines, "Open API").removesuffix("/api/openapi.json")
        pg = postmaster(var)
        config = (var / "demo.toml").stat().st_mtime_ns

        second = demo(home, offset)
        assert second.returncode == 1, second
        assert f"already running (pid {first.pid}, {web})" in second.stderr, second
        assert (var / "demo.toml").stat().st_mtime_ns == config
        assert postmaster(var) == pg and alive(pg)
        assert first.poll() is None and answers(web)

        elsewhere = home / "elsewhere"
        elsewhere.mkdir()
        third = demo(elsewhere, offset)
        assert third.returncode == 1, third
        assert f"in use: port {ports(offset)['db']} (db)" in third.stderr, third
        assert not (elsewhere / "var" / "pg").exists()
        assert alive(pg) and first.poll() is None and answers(web)

        first.send_signal(signal.SIGTERM)
        assert exit_status(first, out) == 0, out.text
        assert all_gone({pg: "postgres"}) == []


def test_a_killed_server_stops_the_demo(home: Path) -> None:
    """When the gateway dies, the demo says so with how it ended and the end of its log,
    stops the login server, the simulator and PostgreSQL, and exits 1."""
    offset = free_offset()
    var = home / "var"
    with running_demo(home, offset) as (proc, out):
        started = children(proc.pid)
        (gateway,) = [pid for pid, c in started.items() if "twistd" in c and " gateway " in c]
        started[postmaster(var)] = "postgres"
        last_line = (var / "log" / "gateway.log").read_text().splitlines()[-1]

        subprocess.run(["kill", "-KILL", str(gateway)], check=True)
        assert exit_status(proc, out) == 1, out.text
        report = (f"cmsv6 demo: the gateway exited (killed by SIGKILL);"
                  f" last lines of {var / 'log' / 'gateway.log'}:")  # fmt: skip
        assert report in out.lines, out.text
        following = out.lines[out.lines.index(report) + 1:]
        assert "    " + last_line in following, out.text
        assert all_gone(started) == []


def test_a_stopped_database_stops_the_demo(home: Path) -> None:
    """When the demo's PostgreSQL stops under it (as a second demo once stopped it), the
    demo says so with the end of PostgreSQL's log, stops its servers and exits 1, instead
    of running on with a login server that has lost its database."""
    offset = free_offset()
    var = home / "var"
    with running_demo(home, offset) as (proc, out):
        started = children(proc.pid)
        assert sum("twistd" in c for c in started.values()) == 3, started

        EmbeddedPostgres(var / "pg", port=ports(offset)["db"]).stop()
        assert exit_status(proc, out) == 1, out.text
        report = f"cmsv6 demo: PostgreSQL exited; last lines of {var / 'pg' / 'postgresql.log'}:"
        assert report in out.lines, out.text
        following = out.lines[out.lines.index(report) + 1:]
        assert any("database system is shut down" in line for line in following), out.text
        assert all_gone(started) == []


def test_postgres_left_running_is_taken_over(home: Path) -> None:
    """A PostgreSQL left running in var/ (by a demo that was killed), even on another
    port, is restarted on the demo's port, said so, and stopped with the demo."""
    offset = free_offset()
    var = home / "var"
    leftover = EmbeddedPostgres(var / "pg", port=free_port())
    leftover.init()
    try:
        leftover.start()
        old = postmaster(var)
        with running_demo(home, offset) as (proc, out):
            said = f"cmsv6 demo: restarting the PostgreSQL (pid {old}) an earlier demo left running in"
            assert f"{said} {var / 'pg'}" in out.lines, out.text
            assert not alive(old)
            pg = postmaster(var)
            web = banner_value(out.lines, "Open API").removesuffix("/api/openapi.json")
            assert answers(web)

            proc.send_signal(signal.SIGTERM)
            assert exit_status(proc, out) == 0, out.text
            assert all_gone({pg: "postgres"}) == []
    finally:
        leftover.stop("immediate")  # whichever server runs in var/pg, if any

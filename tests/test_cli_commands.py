"""The ``cmsv6`` console script as a user runs it (a subprocess of the installed script):
``decode``, ``send`` against a running gateway, and the administration commands, checked
by what they print and by the rows they leave in the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import utils

from cmsv6.db.embedded import EmbeddedPostgres
from cmsv6.passwords import verify_password
from cmsv6.protocols.jt808.codec import decode_frame
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.framing import parse_frame
from cmsv6.protocols.jt808.messages.core import TerminalResponse
from tests.support.corpus import jt808
from tests.support.database import query
from tests.support.device import connect, until
from tests.support.process import GatewayProcess, free_port, server_key
from tests.support.ready import database_connected

CMSV6 = str(Path(sys.executable).with_name("cmsv6"))
#: Only a guard against hanging.
WAIT = 60.0

#: A 2013 0x0200 from 013812345678, serial 7: alarm 1, status 0x0f (south and west set),
#: 33.8688° S 70.6693° W, 520 m, 42.5 km/h, 270°, 2026-11-25 10:00:00 (UTC+8), items
#: 0x01 = 1234 and 0x31 = 9 (written out by hand from JT/T 808 §8.18).
LOCATION_HEX = (
    "7e020000250138123456780007000000010000000f0204cc00043653f4020801a9010e2611251000000104"
    "000004d2310109057e"
)


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CMSV6, *args], input=stdin, capture_output=True, text=True,
                          timeout=WAIT)  # fmt: skip



def corpus_frames(n: int = 4) -> list[dict[str, Any]]:
    """A few 2013 device frames of the corpus with a good check code whose bodies decode."""
    out = []
    for r in jt808(("frame",)):
        check = r.get("check", {})
        if r.get("version") != "2013" or not check.get("checksum_ok") or check.get("subpackage"):
            continue
        if r["msg_id"] not in ("0x0200", "0x0002", "0x0102", "0x0100", "0x0704"):
            continue
        try:
            decode_frame(parse_frame(bytes.fromhex(r["hex"])))
        except CodecError:
            continue
        if r["msg_id"] not in {x["msg_id"] for x in out} or len(out) >= n - 1:
            out.append(r)
        if len(out) == n:
            break
    assert len(out) == n
    return out


# -- decode ----------------------------------------------------------------------------------


def test_decode_location_fields() -> None:
    """A 0x0200 line gives one JSON object with the header fields and the body as docs/cli.md
    shows it: signed degrees, ISO 8601 time in +08:00, items keyed "0x01"; exit status 0."""
    result = run("decode", stdin=LOCATION_HEX + "\n")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    obj = json.loads(line)
    header = {k: obj[k] for k in ("msg_id", "version", "phone", "serial", "checksum_ok", "subpackage")}
    assert header == {"msg_id": "0x0200", "version": 2013, "phone": "013812345678", "serial": 7,
                      "checksum_ok": True, "subpackage": None}  # fmt: skip
    body = obj["body"]
    assert {k: body[k] for k in ("alarm", "status", "latitude", "longitude", "altitude", "speed",
                                 "direction", "time", "extras")} == {
        "alarm": 1, "status": 15, "latitude": -33.8688, "longitude": -70.6693, "altitude": 520,
        "speed": 42.5, "direction": 270, "time": "2026-11-25T10:00:00+08:00",
        "extras": {"0x01": 1234, "0x31": 9},
    }  # fmt: skip


def test_decode_corpus_frames_and_a_bad_line() -> None:
    """Several corpus frames and a line that is not hex: one JSON object per line, in order,
    the frames with the header the source's own check gives, the bad line as an error with
    its hex; exit status 1."""
    records = corpus_frames()
    bad_checksum = bytearray.fromhex(LOCATION_HEX)
    bad_checksum[-2] ^= 0x01
    lines = [r["hex"] for r in records[:2]] + ["7e zz not a frame"] + [r["hex"] for r in records[2:]]
    lines.append(bad_checksum.hex())
    result = run("decode", stdin="\n".join(lines) + "\n")
    assert result.returncode == 1
    out = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(out) == len(lines)
    error = out.pop(2)
    assert set(error) == {"error", "hex"} and error["error"]
    for r, obj in zip(records, out):
        check = r["check"]
        assert (obj["msg_id"], obj["version"], obj["phone"], obj["serial"], obj["checksum_ok"]) == (
            r["msg_id"], 2013, check["phone_bcd"], check["serial"], True), r["id"]  # fmt: skip
        assert obj["subpackage"] is None and isinstance(obj["body"], dict), r["id"]
    assert out[-1]["checksum_ok"] is False and out[-1]["msg_id"] == "0x0200"


def test_decode_good_lines_exit_0() -> None:
    """Only decodable lines: exit status 0, no errors."""
    lines = [r["hex"] for r in corpus_frames()]
    result = run("decode", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stdout
    out = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(out) == len(lines) and not [o for o in out if "error" in o]


# -- send ------------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_send_delivers_and_prints_the_reply(dsn: str, tmp_path: Path) -> None:
    """``cmsv6 send PHONE 0x8300 --json`` through a running gateway's cluster endpoint
    reaches the connected device, and the device's 0x0001 is printed as JSON; to an offline
    device it fails with exit status 1."""
    from twisted.internet import reactor

    port, cluster = free_port(), free_port()
    gateway = GatewayProcess(dsn, port, tmp_path, "--cluster", f"tcp:{cluster}:interface=127.0.0.1")
    gateway.start()
    try:
        yield database_connected(gateway)
        dev = yield connect(reactor, port, "13800000041")
        yield dev.login()
        endpoint = f"tcp:127.0.0.1:{cluster}"
        key = str(server_key("gw-1"))
        sent = utils.getProcessOutputAndValue(
            CMSV6, ["send", "13800000041", "0x8300", "--json", '{"flag": 8, "text": "hello"}',
                    "--gateway", endpoint, "--key", key], env=dict(os.environ),
        ).addTimeout(WAIT, reactor)  # fmt: skip
        command = yield dev.next(0x8300)
        assert (command.body.flag, command.body.text) == (8, "hello")
        dev.send(TerminalResponse(command.header.serial, 0x8300, 0))
        out, err, code = yield sent
        assert code == 0, err
        reply = json.loads(out)
        assert reply["msg_id"] == "0x0001"
        assert {k: reply["body"][k] for k in ("reply_serial", "reply_id", "result")} == {
            "reply_serial": command.header.serial, "reply_id": "0x8300", "result": 0}  # fmt: skip
        out, err, code = yield utils.getProcessOutputAndValue(
            CMSV6, ["send", "13899999999", "0x8300", "--json", '{"flag": 8, "text": "x"}',
                    "--gateway", endpoint, "--key", key], env=dict(os.environ),
        ).addTimeout(WAIT, reactor)  # fmt: skip
        assert code == 1 and out == b"" and b"13899999999" in err
        dev.transport.loseConnection()
        # Both commands are on record, whoever asked: in commands (with their outcome) and audit.
        yield until(lambda: len(_command_rows(dsn)) == 2, "the commands' outcomes recorded")
        rows = _command_rows(dsn)
        assert [(r[0], r[1]) for r in rows] == [(0x8300, "replied"), (0x8300, "offline")]
        assert all(r[2].startswith("gw-1: cmsv6 send") for r in rows)
        assert _audit_rows(dsn) == [("gateway command", "13800000041", "0x8300"),
                                    ("gateway command", "13899999999", "0x8300")]
    finally:
        gateway.stop()


def _command_rows(dsn: str) -> list[tuple[int, str, str]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT msg_id, status, body->>'by' FROM commands WHERE status <> 'sent' ORDER BY id")
        return cur.fetchall()


def _audit_rows(dsn: str) -> list[tuple[str, str, str]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT action, details->>'phone', details->>'msg_id' FROM audit"
                    " WHERE action = 'gateway command' ORDER BY id")
        return cur.fetchall()


# -- administration --------------------------------------------------------------------------


@pytest.fixture
def empty_db(pg_cluster: EmbeddedPostgres, request: pytest.FixtureRequest) -> str:
    """A database without the schema."""
    name = "cli_" + request.node.name.lower().replace("test_", "")[:40] + f"_{os.getpid()}"
    return pg_cluster.create_database(name)


def test_db_upgrade_creates_then_keeps_the_schema(empty_db: str) -> None:
    """``cmsv6 db upgrade`` creates every table of an empty database and says which steps
    it applied; run again, it applies nothing."""
    from cmsv6.db.upgrade import steps

    first = run("db", "upgrade", "--dsn", empty_db)
    assert first.returncode == 0, first.stderr
    versions = [n for n, _, _ in steps()]
    assert first.stdout.strip() == f"schema upgraded ({', '.join(map(str, versions))})"
    assert query(empty_db, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in versions
    ]
    tables = {t for (t,) in query(empty_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"devices", "fleets", "users", "user_fleets", "positions", "alarms"} <= tables
    again = run("db", "upgrade", "--dsn", empty_db)
    assert again.returncode == 0 and again.stdout.strip() == "schema up to date"


def test_device_add_stores_the_row(dsn: str, tmp_path: Path) -> None:
    """``cmsv6 device add`` stores the canonical phone, plate, fleet and channels (through
    ``--config`` as well as ``--dsn``); adding again updates it; a bad phone is refused."""
    for fleet in ("buses", "trucks"):
        assert run("fleet", "add", fleet, "--dsn", dsn).returncode == 0
    result = run("device", "add", "013800000051", "--plate", "粤B12345", "--fleet", "buses",
                 "--channels", "8", "--dsn", dsn)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "device 13800000051 added"
    sql = ("SELECT d.phone, d.plate, f.name, d.channels FROM devices d"
           " LEFT JOIN fleets f ON f.id = d.fleet_id ORDER BY d.phone")  # fmt: skip
    assert query(dsn, sql) == [("13800000051", "粤B12345", "buses", 8)]
    config = tmp_path / "c.toml"
    config.write_text(f'[database]\ndsn = "{dsn}"\n')
    assert run("device", "add", "13800000052", "--config", str(config)).returncode == 0
    assert run("device", "add", "13800000051", "--fleet", "trucks", "--channels", "2",
               "--dsn", dsn).returncode == 0  # fmt: skip
    assert query(dsn, sql) == [("13800000051", "粤B12345", "trucks", 2), ("13800000052", None, None, 4)]
    bad = run("device", "add", "not-a-phone", "--dsn", dsn)
    assert bad.returncode == 1 and "not-a-phone" in bad.stderr
    assert len(query(dsn, sql)) == 2


def test_user_add_stores_role_fleets_and_a_verifying_hash(dsn: str, tmp_path: Path) -> None:
    """``cmsv6 user add`` stores the user with its role and fleets and a salted hash that
    verifies the password from the file (or stdin) and nothing else."""
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery\nsecond line ignored\n")
    for fleet in ("north", "south"):
        assert run("fleet", "add", fleet, "--dsn", dsn).returncode == 0
    result = run("user", "add", "olga", "--password-file", str(pw), "--fleet", "north",
                 "--fleet", "south", "--dsn", dsn)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "user olga added"
    result = run("user", "add", "root", "--password-file", "-", "--admin", "--dsn", dsn,
                 stdin="root password here\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    users = {name: (role, stored) for name, role, stored in
             query(dsn, "SELECT name, role, password_hash FROM users")}  # fmt: skip
    assert {name: role for name, (role, _) in users.items()} == {"olga": "operator", "root": "admin"}
    assert verify_password("correct horse battery", users["olga"][1])
    assert not verify_password("second line ignored", users["olga"][1])
    assert verify_password("root password here", users["root"][1])
    assert "correct horse" not in users["olga"][1]
    fleets = query(dsn, "SELECT u.name, f.name FROM user_fleets uf JOIN users u ON u.id = uf.user_id"
                   " JOIN fleets f ON f.id = uf.fleet_id ORDER BY 1, 2")  # fmt: skip
    assert fleets == [("olga", "north"), ("olga", "south")]
    short = tmp_path / "short"
    short.write_text("short\n")
    refused = run("user", "add", "eve", "--password-file", str(short), "--fleet", "north",
                  "--dsn", dsn)  # fmt: skip
    assert refused.returncode == 1 and "8 characters" in refused.stderr
    assert len(query(dsn, "SELECT 1 FROM users")) == 2

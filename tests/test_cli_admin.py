"""The operator's ``cmsv6`` commands (issue 10): fleets, devices, users and tokens, run
through ``cmsv6.cli.main`` against a real database and checked by what they print and the
rows they leave, audit rows included."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from cmsv6.cli import main
from cmsv6.db import tokens as token_store
from cmsv6.db import users as user_store
from cmsv6.db.devices import hash_auth_code
from cmsv6.db.service import Database
from tests.support.database import query
from tests.support.device import within

CMSV6 = str(Path(sys.executable).with_name("cmsv6"))
OPERATOR = "ops-alice"


@pytest.fixture
def cli(dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cli(*args)``: run ``cmsv6 ARGS --dsn DSN`` in this process as OPERATOR; (exit
    status, stdout, stderr)."""
    monkeypatch.setenv("LOGNAME", OPERATOR)
    monkeypatch.setenv("USER", OPERATOR)

    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", __import__("io").StringIO(stdin))
        code = main([*args, "--dsn", dsn])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _audit(dsn: str) -> list[tuple[Any, ...]]:
    """(action, details) of the command line's audit rows, oldest first; ``by`` checked."""
    rows = query(dsn, "SELECT action, details FROM audit WHERE details->>'via' = 'cli' ORDER BY id")
    for _, details in rows:
        assert (details.pop("by"), details.pop("via")) == (OPERATOR, "cli"), details
    return rows


def _password(tmp_path: Path, text: str = "a good long password") -> str:
    path = tmp_path / "pw"
    path.write_text(text + "\n")
    return str(path)


def _token(dsn: str, name: str, byte: int, expires_in: float = 3600) -> None:
    now = datetime.now(timezone.utc)
    query(dsn, "INSERT INTO api_tokens (token_hash, user_id, created, expires)"
          " SELECT %s, id, %s, %s FROM users WHERE name = %s",
          (bytes([byte]) * 32, now, now + timedelta(seconds=expires_in), name))  # fmt: skip


def test_version_is_the_installed_package_version() -> None:
    """``cmsv6 --version`` prints "cmsv6 X.Y.Z", the version the package is installed as."""
    result = subprocess.run([CMSV6, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cmsv6 {importlib.metadata.version('cmsv6')}"


# -- fleets and --fleet ---------------------------------------------------------------------


def test_fleet_add_and_list(cli: Any, dsn: str, tmp_path: Path) -> None:
    """``fleet add`` makes a fleet (audited; a second time changes nothing); ``fleet list``
    shows each with its devices and users, as a table and as JSON lines."""
    assert cli("fleet", "add", "north") == (0, "fleet north added\n", "")
    assert cli("fleet", "add", "north") == (0, "fleet north exists already\n", "")
    assert cli("fleet", "add", "south")[0] == 0
    assert cli("device", "add", "13800000001", "--fleet", "north")[0] == 0
    assert cli("device", "add", "13800000002", "--fleet", "north")[0] == 0
    assert cli("user", "add", "olga", "--password-file", _password(tmp_path),
               "--fleet", "south")[0] == 0  # fmt: skip
    code, out, _ = cli("fleet", "list")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["NAME", "DEVICES", "USERS"], ["north", "2", "0"], ["south", "0", "1"]]
    code, out, _ = cli("fleet", "list", "--json")
    assert [(o["name"], o["devices"], o["users"]) for o in map(json.loads, out.splitlines())] == [
        ("north", 2, 0), ("south", 0, 1)]
    assert [(a, d["fleet"]) for a, d in _audit(dsn) if a == "fleet.add"] == [
        ("fleet.add", "north"), ("fleet.add", "south")]


def test_a_fleet_that_does_not_exist_is_refused(cli: Any, dsn: str, tmp_path: Path) -> None:
    """``device add``, ``user add`` and ``device list`` naming a fleet that does not exist
    are refused with a message saying how to make it; nothing is stored (no fleet made)."""
    hint = "fleet 'nrth' does not exist (cmsv6 fleet add nrth, or cmsv6 fleet list)"
    assert cli("device", "add", "13800000001", "--fleet", "nrth") == (1, "", f"cmsv6: {hint}\n")
    pw = _password(tmp_path)
    assert cli("user", "add", "olga", "--password-file", pw, "--fleet", "nrth") == (
        1, "", f"cmsv6: {hint}\n")  # fmt: skip
    assert cli("device", "list", "--fleet", "nrth") == (1, "", f"cmsv6: {hint}\n")
    assert query(dsn, "SELECT count(*) FROM fleets") == [(0,)]
    assert query(dsn, "SELECT count(*) FROM devices") == [(0,)]
    assert query(dsn, "SELECT count(*) FROM users") == [(0,)]


def test_an_operator_without_a_fleet_is_refused(cli: Any, dsn: str, tmp_path: Path) -> None:
    """``user add NAME`` with neither ``--admin`` nor ``--fleet`` is refused (such an
    operator sees nothing); an admin needs no fleet; an operator who has one already may
    be updated without naming it again; ``user role NAME operator`` warns."""
    pw = _password(tmp_path)
    code, out, err = cli("user", "add", "olga", "--password-file", pw)
    assert (code, out) == (1, "")
    assert "operator 'olga' would have no fleet and see no device" in err and "--fleet" in err
    assert query(dsn, "SELECT count(*) FROM users") == [(0,)]
    assert cli("user", "add", "root", "--password-file", pw, "--admin") == (0, "user root added\n", "")
    cli("fleet", "add", "north")
    assert cli("user", "add", "olga", "--password-file", pw, "--fleet", "north")[0] == 0
    code, out, _ = cli("user", "add", "olga", "--password-file", pw)
    assert (code, out) == (0, "user olga updated; their sessions are revoked\n")
    code, out, err = cli("user", "role", "root", "operator")
    assert code == 0 and out == "root is now operator; 0 session(s) revoked\n"
    assert "root is an operator with no fleet and sees no device" in err
    assert [(a, d["user"]) for a, d in _audit(dsn) if a.startswith("user.")] == [
        ("user.add", "root"), ("user.add", "olga"), ("user.update", "olga"), ("user.role", "root")]


# -- devices --------------------------------------------------------------------------------


def _position(dsn: str, phone: str, when: datetime, lat: float = 22.5) -> None:
    """A stored report of ``phone`` at ``when`` (its position and last position)."""
    query(dsn, "SELECT cmsv6_position_partition(%s, %s)", (when.year, when.month))
    for table, more in (("positions", ", digest"), ("last_positions", "")):
        query(dsn, f"INSERT INTO {table} (device_id, time, received, latitude, longitude,"
              f" altitude, speed, direction, alarm, status{more})"
              f" SELECT id, %s, %s, %s, 114.1, 10, 42.5, 90, 0, 3{', %s' if more else ''}"
              " FROM devices WHERE phone = %s ON CONFLICT DO NOTHING",
              (when, when, lat, *([lat.hex().encode()] if more else []), phone))  # fmt: skip


def test_device_list_table_fleet_filter_and_json(cli: Any, dsn: str) -> None:
    """``device list`` shows every device's plate, fleet, channels, state, whether it is
    online (an open session) and its last position's time; ``--fleet`` keeps one fleet's;
    ``--json`` gives one object per device with the same facts."""
    cli("fleet", "add", "north")
    cli("fleet", "add", "south")
    cli("device", "add", "13800000001", "--fleet", "north", "--plate", "粤B00001", "--channels", "8")
    cli("device", "add", "13800000002", "--fleet", "south")
    cli("device", "add", "13800000003")
    cli("device", "disable", "13800000003")
    when = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
    _position(dsn, "13800000001", when)
    query(dsn, "INSERT INTO device_sessions (device_id, gateway_id, connected)"
          " SELECT id, 'gw-7', now() FROM devices WHERE phone = '13800000001'")  # fmt: skip
    code, out, err = cli("device", "list")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    local = when.astimezone().isoformat(sep=" ", timespec="seconds").split()
    assert rows == [
        ["PHONE", "PLATE", "FLEET", "CH", "STATE", "ONLINE", "LAST", "POSITION"],
        ["13800000001", "粤B00001", "north", "8", "enabled", "yes", "(gw-7)", *local],
        ["13800000002", "-", "south", "4", "enabled", "no", "-"],
        ["13800000003", "-", "-", "4", "disabled", "no", "-"],
    ]
    code, out, _ = cli("device", "list", "--fleet", "south")
    assert [line.split()[0] for line in out.splitlines()] == ["PHONE", "13800000002"]
    code, out, _ = cli("device", "list", "--json")
    objs = [json.loads(line) for line in out.splitlines()]
    assert [(o["phone"], o["fleet"], o["channels"], o["online"], o["gateway"], o["disabled"] is None)
            for o in objs] == [("13800000001", "north", 8, True, "gw-7", True),
                               ("13800000002", "south", 4, False, None, True),
                               ("13800000003", None, 4, False, None, False)]  # fmt: skip
    first = objs[0]["last_position"]
    assert datetime.fromisoformat(first["time"]) == when
    assert (first["latitude"], first["speed"]) == (22.5, 42.5)
    assert objs[1]["last_position"] is None


def test_device_show(cli: Any, dsn: str) -> None:
    """``device show PHONE`` gives every field the database has: fleet, state, whether it
    has an auth code (never the code), registration, last session and position, and its
    open and recent alarms; an unknown phone is refused."""
    cli("fleet", "add", "north")
    cli("device", "add", "013800000001", "--fleet", "north", "--plate", "粤B00001",
        "--terminal-id", "T000001")  # fmt: skip
    salt = b"\x01" * 16
    query(dsn, "UPDATE devices SET auth_salt = %s, auth_hash = %s, protocol = 2019,"
          " manufacturer = 'ACME', model = 'M-1', registered = now()",
          (salt, hash_auth_code("c0ffee", salt)))  # fmt: skip
    when = datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
    _position(dsn, "13800000001", when, lat=22.123456)
    query(dsn, "INSERT INTO alarms (device_id, kind, started, ended) SELECT id, k, now(), e"
          " FROM devices, (VALUES ('bit:0', NULL::timestamptz), ('bit:1', now()),"
          " ('bit:2', NULL)) v(k, e)")  # fmt: skip
    query(dsn, "INSERT INTO alarms (device_id, kind, started, ended, created)"
          " SELECT id, 'bit:3', now(), now(), now() - interval '30 days' FROM devices")
    query(dsn, "INSERT INTO device_sessions (device_id, gateway_id, connected, disconnected)"
          " SELECT id, 'gw-7', now() - interval '1 hour', now() FROM devices")  # fmt: skip
    code, out, err = cli("device", "show", "13800000001")
    assert code == 0, err
    shown = dict(line.split(None, 1) if not line.startswith(("auth code", "last position"))
                 else (line[:14].strip(), line[15:]) for line in out.splitlines())  # fmt: skip
    assert shown["phone"] == "13800000001" and shown["fleet"] == "north"
    assert shown["state"] == "enabled" and shown["plate"] == "粤B00001"
    assert shown["auth code"].startswith("set")
    assert "JT/T 808-2019" in shown["registered"]
    assert shown["terminal"].startswith("ACME / M-1 / T000001")
    assert shown["session"].startswith("offline since") and "gw-7" in shown["session"]
    assert shown["last position"].startswith(when.astimezone().isoformat(sep=" ", timespec="seconds"))
    assert "22.123456, 114.100000" in shown["last position"]
    assert shown["alarms"] == "2 open, 3 in the last 7 days"
    code, out, _ = cli("device", "show", "13800000001", "--json")
    obj = json.loads(out)
    assert (obj["has_auth_code"], obj["open_alarms"], obj["alarms_last_7_days"]) == (True, 2, 3)
    assert "c0ffee" not in out and salt.hex() not in out
    query(dsn, "UPDATE devices SET auth_salt = NULL, auth_hash = NULL")
    code, out, _ = cli("device", "show", "13800000001")
    assert "none (its next registration is accepted)" in out
    assert cli("device", "show", "13899999999") == (
        1, "", "cmsv6: no device 13899999999 (cmsv6 device list)\n")  # fmt: skip


def test_device_remove_needs_yes_and_deletes_the_history(cli: Any, dsn: str) -> None:
    """``device remove`` without ``--yes`` deletes nothing; with it the device goes with its
    positions, last position, alarms and sessions (another device's stay), audited with
    what went; the commands sent to it stay."""
    for phone in ("13800000001", "13800000002"):
        cli("device", "add", phone)
        for day in (1, 2, 3):
            _position(dsn, phone, datetime(2026, 11, day, tzinfo=timezone.utc), lat=20.0 + day)
    query(dsn, "INSERT INTO alarms (device_id, kind, started) SELECT id, 'bit:0', now() FROM devices")
    query(dsn, "INSERT INTO device_sessions (device_id, gateway_id, connected)"
          " SELECT id, 'gw-1', now() FROM devices")  # fmt: skip
    query(dsn, "INSERT INTO commands (device_id, msg_id) SELECT id, 33536 FROM devices")
    ((gone,),) = query(dsn, "SELECT id FROM devices WHERE phone = '13800000001'")
    code, out, err = cli("device", "remove", "13800000001")
    assert (code, out) == (1, "") and "--yes" in err and "cmsv6 device disable 13800000001" in err
    assert query(dsn, "SELECT count(*) FROM positions") == [(6,)]
    code, out, err = cli("device", "remove", "13800000001", "--yes")
    assert code == 0
    assert out == ("device 13800000001 removed with 3 position(s), 1 alarm(s) and 0 media file"
                   " record(s) (the files stay on disk)\n")  # fmt: skip
    assert "had a session open" in err
    (kept,) = query(dsn, "SELECT id FROM devices")
    assert query(dsn, "SELECT phone FROM devices") == [("13800000002",)]
    for table in ("positions", "last_positions", "alarms", "device_sessions"):
        assert query(dsn, f"SELECT DISTINCT device_id FROM {table}") == [kept], table
    assert query(dsn, "SELECT count(*), count(device_id) FROM commands") == [(2, 1)]
    assert [a for a in _audit(dsn) if a[0] == "device.remove"] == [
        ("device.remove", {"phone": "13800000001", "device": gone, "positions": 3,
                           "alarms": 1, "media_files": 0})]  # fmt: skip
    assert cli("device", "remove", "13800000001", "--yes")[0] == 1


# -- users and tokens -----------------------------------------------------------------------


def test_user_list(cli: Any, dsn: str, tmp_path: Path) -> None:
    """``user list`` shows each user's role, fleets, state and live sessions (an expired
    token is no session); an operator without fleets is marked as seeing nothing."""
    pw = _password(tmp_path)
    cli("fleet", "add", "north")
    cli("fleet", "add", "south")
    cli("user", "add", "root", "--password-file", pw, "--admin")
    cli("user", "add", "olga", "--password-file", pw, "--fleet", "south", "--fleet", "north")
    cli("user", "add", "pete", "--password-file", pw, "--fleet", "north")
    query(dsn, "DELETE FROM user_fleets WHERE user_id = (SELECT id FROM users WHERE name = 'pete')")
    _token(dsn, "olga", 1)
    _token(dsn, "olga", 2)
    _token(dsn, "olga", 3, expires_in=-1)
    cli("user", "disable", "root")
    code, out, _ = cli("user", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "FLEETS", "STATE", "SESSIONS"]
    assert lines[1].split() == ["olga", "operator", "north,", "south", "enabled", "2"]
    assert lines[2].split() == ["pete", "operator", "(none:", "sees", "no", "device)", "enabled", "0"]
    assert lines[3].split() == ["root", "admin", "(all)", "disabled", "0"]
    code, out, _ = cli("user", "list", "--json")
    objs = {o["name"]: o for o in map(json.loads, out.splitlines())}
    assert objs["olga"]["fleets"] == ["north", "south"] and objs["olga"]["tokens"] == 2
    assert objs["root"]["disabled"] is not None and objs["pete"]["disabled"] is None


@pytest_twisted.inlineCallbacks
def test_user_disable_refuses_logins_and_tokens(cli: Any, dsn: str, tmp_path: Path) -> None:
    """``user disable`` revokes the user's tokens and says how many; from then on the login
    finds them disabled and no token of theirs (even one stored after) is honoured; ``user enable`` lets them log in again. Both audited."""
    from twisted.internet import reactor

    pw = _password(tmp_path)
    cli("user", "add", "root", "--password-file", pw, "--admin")
    _token(dsn, "root", 1)
    _token(dsn, "root", 2)
    assert cli("user", "disable", "root") == (
        0, "user root disabled: their logins are refused; 2 session(s) revoked"
        " (cmsv6 user enable root to undo)\n", "")  # fmt: skip
    assert cli("user", "disable", "root") == (0, "user root was disabled already\n", "")
    assert query(dsn, "SELECT count(*) FROM api_tokens") == [(0,)]
    _token(dsn, "root", 3)  # a login that raced the disable
    db = Database(dsn, reactor, size=1)
    db.startService()
    try:
        yield within(db.ready(), "the database")
        now = datetime.now(timezone.utc)
        found = yield user_store.credentials(db, "root")
        holder = yield token_store.user_by_token(db, b"\x03" * 32, now)
        assert found.disabled and holder is None
        assert cli("user", "enable", "root") == (0, "user root enabled: they may log in again\n", "")
        found = yield user_store.credentials(db, "root")
        holder = yield token_store.user_by_token(db, b"\x03" * 32, now)
        assert not found.disabled and found.user.name == "root"
        assert holder is not None and holder.name == "root"
    finally:
        yield within(db.stopService(), "the database stopped")
    assert [(a, d.get("tokens_revoked")) for a, d in _audit(dsn)] == [
        ("user.add", 0), ("user.disable", 2), ("user.enable", None)]
    assert cli("user", "disable", "nobody")[2] == "cmsv6: no user 'nobody' (cmsv6 user list)\n"


def test_user_remove(cli: Any, dsn: str, tmp_path: Path) -> None:
    """``user remove`` without ``--yes`` changes nothing; with it the user goes with their
    tokens and fleet grants; what they did stays in the audit, under their name."""
    pw = _password(tmp_path)
    cli("fleet", "add", "north")
    cli("user", "add", "olga", "--password-file", pw, "--fleet", "north")
    cli("user", "add", "root", "--password-file", pw, "--admin")
    _token(dsn, "olga", 1)
    _token(dsn, "root", 2)
    query(dsn, "INSERT INTO audit (user_id, action, details) SELECT id, 'command', '{\"phone\": \"1\"}'"
          " FROM users WHERE name = 'olga'")  # fmt: skip
    code, out, err = cli("user", "remove", "olga")
    assert (code, out) == (1, "") and "--yes" in err and "cmsv6 user disable olga" in err
    assert query(dsn, "SELECT count(*) FROM users") == [(2,)]
    assert cli("user", "remove", "olga", "--yes") == (0, "user olga removed; 1 session(s) revoked\n", "")
    assert query(dsn, "SELECT name FROM users") == [("root",)]
    assert query(dsn, "SELECT count(*) FROM user_fleets") == [(0,)]
    assert query(dsn, "SELECT u.name FROM api_tokens t JOIN users u ON u.id = t.user_id") == [("root",)]
    assert query(dsn, "SELECT action, details->>'user_name', details->>'phone' FROM audit"
                 " WHERE action = 'command'") == [("command", "olga", "1")]  # fmt: skip
    assert [(a, d["user"], d["tokens_revoked"]) for a, d in _audit(dsn) if a == "user.remove"] == [
        ("user.remove", "olga", 1)]


def test_token_revoke_by_user(cli: Any, dsn: str, tmp_path: Path) -> None:
    """``token revoke --user NAME`` deletes every token of that user and none of anyone
    else's, prints how many, and is audited; an unknown user is refused."""
    pw = _password(tmp_path)
    cli("user", "add", "root", "--password-file", pw, "--admin")
    cli("user", "add", "boss", "--password-file", pw, "--admin")
    for byte in (1, 2, 3):
        _token(dsn, "root", byte)
    _token(dsn, "boss", 9)
    assert cli("token", "revoke", "--user", "root") == (0, "3 token(s) of root revoked\n", "")
    assert query(dsn, "SELECT u.name FROM api_tokens t JOIN users u ON u.id = t.user_id") == [("boss",)]
    assert cli("token", "revoke", "--user", "root") == (0, "0 token(s) of root revoked\n", "")
    assert [(a, d["user"], d["tokens_revoked"]) for a, d in _audit(dsn) if a == "token.revoke"] == [
        ("token.revoke", "root", 3), ("token.revoke", "root", 0)]
    assert cli("token", "revoke", "--user", "nobody") == (
        1, "", "cmsv6: no user 'nobody' (cmsv6 user list)\n")  # fmt: skip


def test_passwd_and_device_changes_are_audited(cli: Any, dsn: str, tmp_path: Path) -> None:
    """Every change the command line makes leaves an audit row saying who ran it: device
    add, update, disable, enable, reset-auth; user passwd."""
    cli("device", "add", "13800000001")
    cli("device", "add", "13800000001", "--plate", "B-1")
    cli("device", "disable", "13800000001")
    cli("device", "enable", "13800000001")
    cli("device", "reset-auth", "13800000001")
    cli("user", "add", "root", "--password-file", _password(tmp_path), "--admin")
    cli("user", "passwd", "root", "--password-file", _password(tmp_path, "another long one"))
    assert [(a, d.get("phone") or d.get("user")) for a, d in _audit(dsn)] == [
        ("device.add", "13800000001"), ("device.update", "13800000001"),
        ("device.disable", "13800000001"), ("device.enable", "13800000001"),
        ("device.reset_auth", "13800000001"), ("user.add", "root"), ("user.passwd", "root")]

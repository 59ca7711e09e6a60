"""The schema: upgrades are idempotent; the admin commands add devices and users."""

from __future__ import annotations

import psycopg2
import pytest

from cmsv6.cli import main
from cmsv6.db.devices import add_device
from cmsv6.db.service import AdminError
from cmsv6.db.users import add_user
from cmsv6.db.upgrade import steps, upgrade
from cmsv6.passwords import verify_password


def _one(dsn: str, sql: str, args: tuple = ()) -> tuple:  # type: ignore[type-arg]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    conn.close()
    return row  # type: ignore[no-any-return]


def test_upgrade_is_idempotent(dsn: str) -> None:
    """A second upgrade applies nothing and the version is the last step's."""
    assert upgrade(dsn) == []
    assert _one(dsn, "SELECT max(version) FROM schema_version")[0] == steps()[-1][0]


def test_upgrade_from_empty(pg_cluster) -> None:  # type: ignore[no-untyped-def]
    """An empty database is brought to the latest version in one go."""
    dsn = pg_cluster.create_database("empty_upgrade")
    assert upgrade(dsn) == [n for n, _, _ in steps()]


def test_device_add_canonical_phone(dsn: str) -> None:
    """Devices are stored under the phone without leading zeros; adding again updates."""
    assert add_device(dsn, "013812345678", plate="粤B12345", fleet="buses") == "13812345678"
    add_device(dsn, "00000000013812345678", channels=8)
    row = _one(dsn, "SELECT plate, channels, f.name FROM devices d JOIN fleets f ON f.id = d.fleet_id")
    assert row == ("粤B12345", 8, "buses")


def test_device_add_rejects_bad_phone(dsn: str) -> None:
    """A phone that is not up to 20 digits is refused with a clear error."""
    with pytest.raises(AdminError):
        add_device(dsn, "not-a-phone")


def test_user_add_hashes_password(dsn: str) -> None:
    """Users are stored with a salted scrypt hash that verifies only the right password."""
    add_user(dsn, "alice", "correct horse", admin=True, fleets=["buses"])
    stored, role = _one(dsn, "SELECT password_hash, role FROM users WHERE name = 'alice'")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert verify_password("correct horse", stored) and not verify_password("wrong", stored)
    assert role == "admin"


def test_cli(dsn: str, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """cmsv6 db upgrade, device add and user add store what they were given: the device's
    phone, plate, fleet and channels; the user's role, fleet and a verifying hash."""
    assert main(["db", "upgrade", "--dsn", dsn]) == 0
    assert main(["fleet", "add", "buses", "--dsn", dsn]) == 0
    assert main(["device", "add", "013800000001", "--plate", "B1", "--fleet", "buses",
                 "--channels", "6", "--dsn", dsn]) == 0  # fmt: skip
    assert _one(dsn, "SELECT d.phone, d.plate, f.name, d.channels FROM devices d"
                " JOIN fleets f ON f.id = d.fleet_id") == ("13800000001", "B1", "buses", 6)
    pw = tmp_path / "pw"
    pw.write_text("secret-password\n")
    assert main(["user", "add", "bob", "--password-file", str(pw), "--fleet", "buses",
                 "--dsn", dsn]) == 0  # fmt: skip
    role, stored, fleet = _one(dsn, "SELECT u.role, u.password_hash, f.name FROM users u"
                               " JOIN user_fleets uf ON uf.user_id = u.id"
                               " JOIN fleets f ON f.id = uf.fleet_id WHERE u.name = 'bob'")
    assert (role, fleet) == ("operator", "buses") and verify_password("secret-password", stored)
    assert main(["user", "add", "ann", "--password-file", str(pw), "--admin", "--dsn", dsn]) == 0
    assert _one(dsn, "SELECT role FROM users WHERE name = 'ann'") == ("admin",)
    out = capsys.readouterr().out
    with pytest.raises(SystemExit, match="cannot read"):
        main(["user", "add", "x", "--password-file", str(tmp_path / "missing"), "--dsn", dsn])
    assert "schema up to date" in out and "device 13800000001 added" in out

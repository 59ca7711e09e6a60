"""Users: who they are, their password hashes, their fleets."""

from __future__ import annotations

from typing import Any

import psycopg2
from attrs import frozen
from twisted.internet import defer

from cmsv6.db.fleets import fleet_id
from cmsv6.db.service import AdminError, Database
from cmsv6.passwords import hash_password


@frozen
class User:
    id: int
    name: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


@frozen
class Credentials:
    user: User
    password_hash: str


@defer.inlineCallbacks
def credentials(db: Database, name: str) -> Any:
    """The user called ``name`` with their password hash, or None."""
    rows = yield db.run_query(
        "SELECT id, name, role, password_hash FROM users WHERE name = %s", (name,)
    )
    if not rows:
        return None
    uid, uname, role, password_hash = rows[0]
    return Credentials(User(uid, uname, role), password_hash)


def add_user(
    dsn: str, name: str, password: str, admin: bool = False, fleets: list[str] | None = None
) -> None:
    """Add a user (or set their password, role and fleets): ``cmsv6 user add``."""
    if not 1 <= len(name) <= 64:
        raise AdminError("user names are 1 to 64 characters")
    if len(password) < 8:
        raise AdminError("passwords must have at least 8 characters")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (name, password_hash, role) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
            " role = EXCLUDED.role RETURNING id",
            (name, hash_password(password), "admin" if admin else "operator"),
        )
        user_id = cur.fetchone()[0]
        for fleet in fleets or []:
            cur.execute(
                "INSERT INTO user_fleets (user_id, fleet_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (user_id, fleet_id(cur, fleet)),
            )
    conn.close()

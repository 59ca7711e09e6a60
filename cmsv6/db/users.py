"""Users: who they are, their password hashes, their fleets.

Changing a user's password or role revokes every token they hold (their sessions end on
the next request, and open WebSockets at the next token check): whoever changes them
decides what the user may do from then on, not a session started before.
"""

from __future__ import annotations

from typing import Any

import psycopg2
from attrs import frozen
from twisted.internet import defer

from cmsv6.db.fleets import fleet_id
from cmsv6.db.service import AdminError, Database
from cmsv6.passwords import hash_password

ROLES = ("admin", "operator")


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


def upgrade_password_hash(db: Database, user: User, old: str, new: str) -> defer.Deferred[None]:
    """Replace a hash made with weaker parameters by one of the same password made with
    today's (at a successful login). Only if the hash is still ``old``: a password changed
    meanwhile is not overwritten. The password is the same, so tokens stand."""
    return db.run_operation(
        "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
        (new, user.id, old),
    )


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise AdminError("passwords must have at least 8 characters")


def _revoke(cur: psycopg2.extensions.cursor, user_id: int) -> int:
    cur.execute("DELETE FROM api_tokens WHERE user_id = %s", (user_id,))
    return int(cur.rowcount)


def add_user(
    dsn: str, name: str, password: str, admin: bool = False, fleets: list[str] | None = None
) -> None:
    """Add a user (or set their password, role and fleets): ``cmsv6 user add``."""
    _check_password(password)
    put_user(dsn, name, hash_password(password), "admin" if admin else "operator", fleets)


def put_user(
    dsn: str, name: str, password_hash: str, role: str, fleets: list[str] | None = None
) -> None:
    """Add a user with this hash, or set an existing one's hash, role and fleets (and
    revoke their tokens)."""
    if not 1 <= len(name) <= 64:
        raise AdminError("user names are 1 to 64 characters")
    if role not in ROLES:
        raise AdminError(f"roles are {' and '.join(ROLES)}")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (name, password_hash, role) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
            " role = EXCLUDED.role RETURNING id",
            (name, password_hash, role),
        )
        user_id = cur.fetchone()[0]
        _revoke(cur, user_id)
        for fleet in fleets or []:
            cur.execute(
                "INSERT INTO user_fleets (user_id, fleet_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (user_id, fleet_id(cur, fleet)),
            )
    conn.close()


def set_password(dsn: str, name: str, password: str) -> int:
    """Set a user's password (``cmsv6 user passwd``); the number of tokens revoked."""
    _check_password(password)
    new = hash_password(password)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("UPDATE users SET password_hash = %s WHERE name = %s RETURNING id", (new, name))
        row = cur.fetchone()
        if row is None:
            raise AdminError(f"no user {name!r}")
        revoked = _revoke(cur, row[0])
    conn.close()
    return revoked


def set_role(dsn: str, name: str, role: str) -> int | None:
    """Set a user's role (``cmsv6 user role``); the number of tokens revoked, None if the
    user already had that role (nothing changes)."""
    if role not in ROLES:
        raise AdminError(f"roles are {' and '.join(ROLES)}")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, role FROM users WHERE name = %s FOR UPDATE", (name,))
        row = cur.fetchone()
        if row is None:
            raise AdminError(f"no user {name!r}")
        user_id, old = row
        revoked = None
        if old != role:
            cur.execute("UPDATE users SET role = %s WHERE id = %s", (role, user_id))
            revoked = _revoke(cur, user_id)
    conn.close()
    return revoked

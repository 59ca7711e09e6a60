"""Users: who they are, their password hashes, their fleets; and the ``cmsv6 user``
commands, each recorded in the audit (``audit``).

Changing a user's password or role, disabling or removing them revokes every token they
hold (their sessions end on the next request, and open WebSockets at the next token
check): whoever changes them decides what the user may do from then on, not a session
started before. A disabled user cannot log in, and no token of theirs is honoured.
"""

from __future__ import annotations

import getpass
import json
from datetime import datetime
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
    disabled: bool = False  # ``cmsv6 user disable``: the login is refused, with a reason


@defer.inlineCallbacks
def credentials(db: Database, name: str) -> Any:
    """The user called ``name`` with their password hash and whether they are disabled, or
    None. A disabled user's login must be refused (after their password verified, so that
    only they learn why)."""
    rows = yield db.run_query(
        "SELECT id, name, role, password_hash, disabled IS NOT NULL FROM users WHERE name = %s",
        (name,),
    )
    if not rows:
        return None
    uid, uname, role, password_hash, disabled = rows[0]
    return Credentials(User(uid, uname, role), password_hash, disabled)


@defer.inlineCallbacks
def upgrade_password_hash(db: Database, user: User, old: str, new: str) -> defer.Deferred[None]:
    """Replace a hash made with weaker parameters by one of the same password made with
    today's (at a successful login). Only if the hash is still ``old``: a password changed
    meanwhile is not overwritten. The password is the same, so tokens stand."""
    return db.run_operation(
        "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
        (new, user.id, old),
    )


# -- the administration commands ------------------------------------------------------------


def local_operator() -> str:
    """Who runs this command: the local login name (what the audit records as ``by``)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment
        return "unknown"


def audit(
    cur: psycopg2.extensions.cursor, action: str, details: dict[str, Any], by: str | None = None
) -> None:
    """Record an administration command in ``audit``: no user of ours did it, so the row's
    details say who on this machine did (``by``) and that it came through the command line."""
    cur.execute(
        "INSERT INTO audit (user_id, action, details) VALUES (NULL, %s, %s::jsonb)",
        (action, json.dumps({**details, "by": by or local_operator(), "via": "cli"},
                            ensure_ascii=False, default=str)),
    )  # fmt: skip


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise AdminError("passwords must have at least 8 characters")


def revoke_tokens(cur: psycopg2.extensions.cursor, user_id: int) -> int:
    """Delete every token of the user (in the caller's transaction); how many."""
    cur.execute("DELETE FROM api_tokens WHERE user_id = %s", (user_id,))
    return int(cur.rowcount)


def add_user(
    dsn: str, name: str, password: str, admin: bool = False, fleets: list[str] | None = None,
    *, create_fleets: bool = True, require_fleet: bool = False, by: str | None = None,
) -> bool:
    """Add a user (or set their password, role and fleets): ``cmsv6 user add``; whether
    the user is new. ``put_user`` says what the keywords do."""
    _check_password(password)
    return put_user(dsn, name, hash_password(password), "admin" if admin else "operator",
                    fleets, create_fleets=create_fleets, require_fleet=require_fleet, by=by)


def put_user(
    dsn: str, name: str, password_hash: str, role: str, fleets: list[str] | None = None,
    *, create_fleets: bool = True, require_fleet: bool = False, by: str | None = None,
) -> bool:
    """Add a user with this hash, or set an existing one's hash, role and fleets (and
    revoke their tokens); whether the user is new. A fleet that does not exist is made,
    or with ``create_fleets=False`` refused; with ``require_fleet`` an operator who would
    have no fleet (and so see nothing) is refused. With ``by`` (the command line's
    caller) the change is audited; the demo's and tests' setup is not."""
    if not 1 <= len(name) <= 64:
        raise AdminError("user names are 1 to 64 characters")
    if role not in ROLES:
        raise AdminError(f"roles are {' and '.join(ROLES)}")
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO users (name, password_hash, role) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
                " role = EXCLUDED.role RETURNING id, xmax = 0",
                (name, password_hash, role),
            )
            user_id, created = cur.fetchone()
            revoked = revoke_tokens(cur, user_id)
            for fleet in fleets or []:
                cur.execute(
                    "INSERT INTO user_fleets (user_id, fleet_id) VALUES (%s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (user_id, fleet_id(cur, fleet, create=create_fleets)),
                )  # fmt: skip
            if require_fleet and role == "operator" and not _fleets(cur, user_id):
                raise AdminError(
                    f"operator {name!r} would have no fleet and see no device: give one"
                    " (--fleet NAME; cmsv6 fleet list) or make them an admin (--admin)"
                )  # fmt: skip
            if by is not None:
                audit(cur, "user.add" if created else "user.update",
                      {"user": name, "id": user_id, "role": role, "fleets": list(fleets or []),
                       "tokens_revoked": revoked}, by)  # fmt: skip
    finally:
        conn.close()
    return bool(created)


def _fleets(cur: psycopg2.extensions.cursor, user_id: int) -> list[str]:
    cur.execute(
        "SELECT f.name FROM user_fleets uf JOIN fleets f ON f.id = uf.fleet_id"
        " WHERE uf.user_id = %s ORDER BY f.name", (user_id,),
    )  # fmt: skip
    return [r[0] for r in cur.fetchall()]


def _change(dsn: str, name: str, change: Any) -> Any:
    """Run ``change(cur, user_id, disabled)`` in one transaction on the user called
    ``name`` (locked); AdminError if there is none."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id, disabled FROM users WHERE name = %s FOR UPDATE", (name,))
            row = cur.fetchone()
            if row is None:
                raise AdminError(f"no user {name!r} (cmsv6 user list)")
            return change(cur, *row)
    finally:
        conn.close()


def set_password(dsn: str, name: str, password: str, by: str | None = None) -> int:
    """Set a user's password (``cmsv6 user passwd``) and audit it; the number of tokens
    revoked."""
    _check_password(password)
    new = hash_password(password)

    def change(cur: psycopg2.extensions.cursor, user_id: int, disabled: Any) -> int:
        cur.execute("UPDATE users SET password_hash = %s WHERE id = %s", (new, user_id))
        revoked = revoke_tokens(cur, user_id)
        audit(cur, "user.passwd", {"user": name, "id": user_id, "tokens_revoked": revoked}, by)
        return revoked

    return int(_change(dsn, name, change))


def set_role(dsn: str, name: str, role: str, by: str | None = None) -> int | None:
    """Set a user's role (``cmsv6 user role``) and audit it; the number of tokens revoked,
    None if the user already had that role (nothing changes)."""
    if role not in ROLES:
        raise AdminError(f"roles are {' and '.join(ROLES)}")

    def change(cur: psycopg2.extensions.cursor, user_id: int, disabled: Any) -> int | None:
        cur.execute("SELECT role FROM users WHERE id = %s", (user_id,))
        if cur.fetchone()[0] == role:
            return None
        cur.execute("UPDATE users SET role = %s WHERE id = %s", (role, user_id))
        revoked = revoke_tokens(cur, user_id)
        audit(cur, "user.role", {"user": name, "id": user_id, "role": role,
                                 "tokens_revoked": revoked}, by)  # fmt: skip
        return revoked

    result: int | None = _change(dsn, name, change)
    return result


@frozen
class UserInfo:
    name: str
    role: str
    fleets: tuple[str, ...]
    disabled: datetime | None
    tokens: int  # sessions not yet expired
    created: datetime

    @property
    def sees_nothing(self) -> bool:
        """An operator without a fleet: every device is hidden from them."""
        return self.role == "operator" and not self.fleets


def list_users(dsn: str, name: str | None = None) -> list[UserInfo]:
    """Every user by name (or the one called ``name``), with their fleets and how many
    sessions they hold."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT u.name, u.role, coalesce(array(SELECT f.name FROM user_fleets uf"
                "  JOIN fleets f ON f.id = uf.fleet_id WHERE uf.user_id = u.id ORDER BY f.name),"
                "  '{}'),"
                " (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id AND t.expires > now()),"
                " u.disabled, u.created"
                " FROM users u WHERE %(name)s::text IS NULL OR u.name = %(name)s ORDER BY u.name",
                {"name": name},
            )
            return [UserInfo(n, role, tuple(fleets), disabled, tokens, created)
                    for n, role, fleets, tokens, disabled, created in cur.fetchall()]  # fmt: skip
    finally:
        conn.close()


def disable_user(dsn: str, name: str, by: str | None = None) -> int | None:
    """Disable a user (``cmsv6 user disable``): their logins are refused and their tokens
    revoked; audited. The number of tokens revoked, None if they were disabled already."""

    def change(cur: psycopg2.extensions.cursor, user_id: int, disabled: Any) -> int | None:
        if disabled is not None:
            return None
        cur.execute("UPDATE users SET disabled = now() WHERE id = %s", (user_id,))
        revoked = revoke_tokens(cur, user_id)
        audit(cur, "user.disable", {"user": name, "id": user_id, "tokens_revoked": revoked}, by)
        return revoked

    result: int | None = _change(dsn, name, change)
    return result


def enable_user(dsn: str, name: str, by: str | None = None) -> bool:
    """Let a disabled user log in again (``cmsv6 user enable``); audited. False if they
    were not disabled."""

    def change(cur: psycopg2.extensions.cursor, user_id: int, disabled: Any) -> bool:
        if disabled is None:
            return False
        cur.execute("UPDATE users SET disabled = NULL WHERE id = %s", (user_id,))
        audit(cur, "user.enable", {"user": name, "id": user_id}, by)
        return True

    return bool(_change(dsn, name, change))


def remove_user(dsn: str, name: str, by: str | None = None) -> int:
    """Delete a user (``cmsv6 user remove``) with their tokens and fleet grants; audited;
    the number of tokens revoked. What they did stays on record: their audit rows keep
    their name (the row's user link goes with them), alarms they handled and commands
    they sent stay, without the link."""

    def change(cur: psycopg2.extensions.cursor, user_id: int, disabled: Any) -> int:
        revoked = revoke_tokens(cur, user_id)
        cur.execute(
            "UPDATE audit SET details = coalesce(details, '{}'::jsonb)"
            " || jsonb_build_object('user_name', %s::text, 'user_id', %s::bigint)"
            " WHERE user_id = %s", (name, user_id, user_id),
        )  # fmt: skip
        cur.execute("DELETE FROM users WHERE id = %s", (user_id,))
        audit(cur, "user.remove", {"user": name, "id": user_id, "tokens_revoked": revoked}, by)
        return revoked

    return int(_change(dsn, name, change))

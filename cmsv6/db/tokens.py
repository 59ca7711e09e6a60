"""The Open API's bearer tokens (stored hashed) and the users holding them; and
``cmsv6 token revoke``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg2
from twisted.internet import defer

from cmsv6.db.service import AdminError, Database
from cmsv6.db.users import User, audit, revoke_tokens


def store_token(
    db: Database, token_hash: bytes, user: User, created: datetime, expires: datetime,
    address: str | None,
) -> defer.Deferred[None]:  # fmt: skip
    return db.run_operation(
        "INSERT INTO api_tokens (token_hash, user_id, created, expires, address)"
        " VALUES (%s, %s, %s, %s, %s)",
        (token_hash, user.id, created, expires, address),
    )


@defer.inlineCallbacks
def user_by_token(db: Database, token_hash: bytes, now: datetime) -> Any:
    """The user holding this (hashed) token if it has not expired, else None. None for a
    disabled user too: a login that raced ``cmsv6 user disable`` may have stored a token
    after the revocation."""
    rows = yield db.run_query(
        "SELECT u.id, u.name, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = %s AND t.expires > %s AND u.disabled IS NULL",
        (token_hash, now),
    )
    return User(*rows[0]) if rows else None


@defer.inlineCallbacks
def live_tokens(db: Database, token_hashes: list[bytes], now: datetime) -> Any:
    """Those of these (hashed) tokens that exist and have not expired."""
    if not token_hashes:
        return set()
    rows = yield db.run_query(
        "SELECT token_hash FROM api_tokens WHERE token_hash = ANY(%s) AND expires > %s",
        (token_hashes, now),
    )
    return {bytes(r[0]) for r in rows}


def revoke_token(db: Database, token_hash: bytes) -> defer.Deferred[None]:
    return db.run_operation("DELETE FROM api_tokens WHERE token_hash = %s", (token_hash,))


def delete_expired_tokens(db: Database, now: datetime) -> defer.Deferred[None]:
    return db.run_operation("DELETE FROM api_tokens WHERE expires <= %s", (now,))


def revoke_user_tokens(dsn: str, name: str, by: str | None = None) -> int:
    """Revoke every token of the user called ``name`` (``cmsv6 token revoke --user``):
    their sessions end at their next request; audited. The number revoked."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id FROM users WHERE name = %s", (name,))
            row = cur.fetchone()
            if row is None:
                raise AdminError(f"no user {name!r} (cmsv6 user list)")
            revoked = revoke_tokens(cur, row[0])
            audit(cur, "token.revoke", {"user": name, "id": row[0], "tokens_revoked": revoked}, by)
    finally:
        conn.close()
    return revoked

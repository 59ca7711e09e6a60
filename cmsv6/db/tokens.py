"""The Open API's bearer tokens (stored hashed) and the users holding them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from twisted.internet import defer

from cmsv6.db.service import Database
from cmsv6.db.users import User


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
    """The user holding this (hashed) token if it has not expired, else None."""
    rows = yield db.run_query(
        "SELECT u.id, u.name, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = %s AND t.expires > %s",
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

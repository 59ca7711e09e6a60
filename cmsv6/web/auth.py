"""User login and bearer tokens, with failed logins rate-limited.

A token is ``secrets.token_urlsafe(32)``, given to the client once; the database keeps only
its SHA-256, with the user and an expiry. Passwords are checked on a thread (scrypt costs
tens of milliseconds and must not stall the reactor), and an unknown user costs the same
check as a known one, so timing does not tell which names exist.

Failed logins are counted per user name and per client address: ``max_failures`` within
``window`` seconds lock that name or address for ``lockout`` seconds (429, even with the
right password). The counts live in memory, in a bounded table: only the active login
server answers logins, and a restart forgetting them is harmless.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Any

from attrs import frozen
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.web import server

from cmsv6.db import tokens as token_store
from cmsv6.db import users as user_store
from cmsv6.db.users import User
from cmsv6.db.service import Database
from cmsv6.passwords import hash_password, verify_password
from cmsv6.web.routing import ApiError

_log = Logger()


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class LoginLimiter:
    """Counts failures per key ("user:NAME", "addr:HOST"); at most ``max_entries`` keys
    (the least recently failed are forgotten first)."""

    def __init__(
        self,
        clock: IReactorTime,
        max_failures: int = 5,
        window: float = 300.0,
        lockout: float = 60.0,
        max_entries: int = 10_000,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_entries = max_entries
        # key -> [failures, first failure time, locked until]
        self._entries: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def retry_after(self, *keys: str) -> float:
        """Seconds until every one of ``keys`` is unlocked (0: none is locked)."""
        now = self.clock.seconds()
        wait = 0.0
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None and entry[2] > now:
                wait = max(wait, entry[2] - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock.seconds()
        for key in keys:
            entry = self._entries.pop(key, None)
            if entry is None or now - entry[1] > self.window:
                entry = [0, now, entry[2] if entry else 0.0]
            entry[0] += 1
            if entry[0] >= self.max_failures:
                entry[:] = [0, now, now + self.lockout]
            self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._entries.pop(key, None)


@frozen
class Session:
    token: str
    expires: datetime
    user: User


class Authenticator:
    def __init__(
        self,
        db: Database,
        reactor: Any,
        ttl: float = 12 * 3600.0,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self.db = db
        self.reactor = reactor
        self.ttl = ttl
        # Not ``limiter or ...``: a limiter with no failures yet has len() 0 and is falsy.
        self.limiter = limiter if limiter is not None else LoginLimiter(reactor)
        self._dummy_hash: str | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)

    def _thread(self, f: Any, *args: Any) -> defer.Deferred[Any]:
        if IReactorThreads.providedBy(self.reactor):
            return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)
        return defer.maybeDeferred(f, *args)

    async def login(self, name: str, password: str, address: str | None) -> Session:
        """A new session for ``name``; ApiError 401 (wrong name or password) or 429."""
        keys = (f"user:{name}", f"addr:{address}")
        wait = self.limiter.retry_after(*keys)
        if wait > 0:
            raise ApiError(
                429, "too_many_attempts",
                f"too many failed logins; try again in {wait:.0f} s",
                {"Retry-After": str(max(1, round(wait)))},
            )  # fmt: skip
        found = await user_store.credentials(self.db, name)
        if found is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._thread(hash_password, secrets.token_hex(8))
            await self._thread(verify_password, password, self._dummy_hash)
            ok = False
        else:
            ok = await self._thread(verify_password, password, found.password_hash)
        if not ok:
            self.limiter.failed(*keys)
            _log.info("failed login for {name!r} from {address}", name=name, address=address)
            raise ApiError(401, "bad_credentials", "wrong user name or password")
        self.limiter.succeeded(keys[0])
        token = secrets.token_urlsafe(32)
        now = self.now()
        expires = now + timedelta(seconds=self.ttl)
        await token_store.store_token(self.db, hash_token(token), found.user, now, expires, address)
        try:
            await token_store.delete_expired_tokens(self.db, now)
        except Exception as e:  # noqa: BLE001 - housekeeping; the login stands
            _log.warn("expired tokens not deleted: {e}", e=str(e))
        _log.info("{name} logged in from {address}", name=name, address=address)
        return Session(token, expires, found.user)

    async def user_for_token(self, token: str) -> User | None:
        if not token or len(token) > 200:
            return None
        user: User | None = await token_store.user_by_token(self.db, hash_token(token), self.now())
        return user

    async def logout(self, token: str) -> None:
        await token_store.revoke_token(self.db, hash_token(token))

    async def user(self, request: server.Request) -> User:
        """The user of a request's ``Authorization: Bearer TOKEN``; ApiError 401 if none."""
        user = await self.user_for_token(bearer_token(request))
        if user is None:
            raise ApiError(401, "unauthorized", "a valid bearer token is required",
                           {"WWW-Authenticate": "Bearer"})
        return user


def bearer_token(request: server.Request) -> str:
    header = request.getHeader(b"authorization")
    if not header:
        return ""
    scheme, _, value = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return value.strip()

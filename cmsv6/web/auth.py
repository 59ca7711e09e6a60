"""User login and bearer tokens, with failed logins rate-limited.

A token is ``secrets.token_urlsafe(32)``, given to the client once; the database keeps only
its SHA-256, with the user and an expiry. Passwords are checked on a thread (scrypt costs
hundreds of milliseconds and must not stall the reactor), at most ``max_hashing`` at once
(each check takes 128 MiB), and an unknown user costs the same check as a known one, so
timing does not tell which names exist. A hash made with weaker parameters than today's
(``cmsv6.passwords``) is replaced at the user's next successful login.

Failed logins are limited twice (``LoginLimiter``), following OWASP ASVS 2.2.1:

- per (name, address): after ``max_failures`` failures each further attempt for that name
  from that address must wait, 1 s and doubling up to ``lockout`` seconds. It slows a
  guesser without touching the same name from any other address: a third party cannot lock
  the real user out this way.
- per name, from every address: ``name_failures`` (at most 100) failures within an hour
  refuse the name for the rest of that hour, from everywhere. This is the one lockout a
  third party can cause; it is bounded: it lasts at most until the hour that began with
  the first counted failure ends, and a success does not reset the count (else a guesser
  could go on beside the real user).

A refused attempt is a 429 with ``Retry-After`` and is logged with the name and address
(never the password). The counts live in memory, in tables of at most ``max_entries`` keys
each: only the active login server answers logins, and a restart forgetting them is
harmless.
"""

from __future__ import annotations

import hashlib
import math
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
from cmsv6.passwords import hash_password, needs_rehash, verify_password
from cmsv6.web.routing import ApiError

_log = Logger()

#: ASVS 2.2.1: at most 100 failed attempts an hour per account.
NAME_WINDOW = 3600.0


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class LoginLimiter:
    """Failed logins per (name, address) and per name; see the module's docstring.

    ``retry_after(name, address)`` is how long an attempt must wait (0: go ahead);
    ``failed`` and ``succeeded`` record the outcome of an attempt that went ahead."""

    def __init__(
        self,
        clock: IReactorTime,
        max_failures: int = 5,
        window: float = 300.0,
        lockout: float = 60.0,
        name_failures: int = 100,
        max_entries: int = 10_000,
    ) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.name_failures = name_failures
        self.max_entries = max_entries
        # (name, address) -> [failures, last failure time, wait until]; least recently
        # failed first.
        self._pairs: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        # name -> [failures, window start, refused until]; oldest window first.
        self._names: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pairs) + len(self._names)

    def retry_after(self, name: str, address: str) -> float:
        """Seconds before ``name`` may be tried from ``address`` (0: now)."""
        now = self.clock.seconds()
        wait = 0.0
        pair = self._pairs.get((name, address))
        if pair is not None:
            wait = max(wait, pair[2] - now)
        entry = self._names.get(name)
        if entry is not None:
            wait = max(wait, entry[2] - now)
        return wait

    def name_refused(self, name: str) -> bool:
        """Whether ``name`` is refused from every address (its hourly cap reached)."""
        entry = self._names.get(name)
        return entry is not None and entry[2] > self.clock.seconds()

    def failed(self, name: str, address: str) -> None:
        now = self.clock.seconds()
        pair = self._pairs.pop((name, address), None)
        if pair is None or now - pair[1] > self.window:
            pair = [0, now, 0.0]
        pair[0] += 1
        pair[1] = now
        beyond = pair[0] - self.max_failures
        if beyond >= 0:
            pair[2] = now + min(self.lockout, 2.0 ** min(beyond, 32))
        self._pairs[(name, address)] = pair
        entry = self._names.get(name)
        if entry is None or now - entry[1] >= NAME_WINDOW:
            self._names.pop(name, None)
            entry = self._names[name] = [0, now, 0.0]
        entry[0] += 1
        if entry[0] >= self.name_failures:
            entry[2] = entry[1] + NAME_WINDOW
        # Bounded: the least recently failed pairs and the oldest name windows go first.
        for table in (self._pairs, self._names):
            while len(table) > self.max_entries:
                table.popitem(last=False)  # type: ignore[attr-defined]

    def succeeded(self, name: str, address: str) -> None:
        """The pair's back-off ends; the name's hourly count stays (see the module)."""
        self._pairs.pop((name, address), None)


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
        max_hashing: int = 2,
    ) -> None:
        self.db = db
        self.reactor = reactor
        self.ttl = ttl
        # Not ``limiter or ...``: a limiter with no failures yet has len() 0 and is falsy.
        self.limiter = limiter if limiter is not None else LoginLimiter(reactor)
        self._hashing = defer.DeferredSemaphore(max_hashing)
        self._dummy_hash: str | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.reactor.seconds(), timezone.utc)

    def _thread(self, f: Any, *args: Any) -> defer.Deferred[Any]:
        """``f(*args)`` (a password hash or check) on a thread, at most ``max_hashing`` at
        once: each takes 128 MiB."""

        def run() -> defer.Deferred[Any]:
            if IReactorThreads.providedBy(self.reactor):
                pool = self.reactor.getThreadPool()
                return threads.deferToThreadPool(self.reactor, pool, f, *args)
            return defer.maybeDeferred(f, *args)

        return self._hashing.run(run)

    def _refuse(self, name: str, address: str, wait: float) -> ApiError:
        everywhere = self.limiter.name_refused(name)
        _log.warn(
            "login for {name!r} from {address} refused for {wait:.0f} s: {why}",
            name=name, address=address, wait=wait,
            why="too many failed logins for this name" if everywhere
            else "too many failed logins for this name from this address",
        )  # fmt: skip
        seconds = max(1, math.ceil(wait))
        return ApiError(
            429, "too_many_attempts", f"too many failed logins; try again in {seconds} s",
            {"Retry-After": str(seconds)},
        )  # fmt: skip

    async def login(self, name: str, password: str, address: str | None) -> Session:
        """A new session for ``name``; ApiError 401 (wrong name or password), 403 (the user
        is disabled) or 429."""
        where = address or ""
        wait = self.limiter.retry_after(name, where)
        if wait > 0:
            raise self._refuse(name, where, wait)
        found = await user_store.credentials(self.db, name)
        if found is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._thread(hash_password, secrets.token_hex(8))
            await self._thread(verify_password, password, self._dummy_hash)
            ok = False
        else:
            ok = await self._thread(verify_password, password, found.password_hash)
        # Checked again: attempts that were waiting for a hashing slot may have filled it.
        wait = self.limiter.retry_after(name, where)
        if wait > 0:
            raise self._refuse(name, where, wait)
        if not ok:
            self.limiter.failed(name, where)
            _log.info("failed login for {name!r} from {address}", name=name, address=address)
            raise ApiError(401, "bad_credentials", "wrong user name or password")
        self.limiter.succeeded(name, where)
        if found.disabled:
            _log.info("refused login of disabled user {name!r} from {address}", name=name,
                      address=address)
            raise ApiError(403, "user_disabled",
                           f"user {name} is disabled; an admin can enable it (cmsv6 user enable)")
        if needs_rehash(found.password_hash):
            await self._upgrade_hash(found, password)
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

    async def _upgrade_hash(self, found: user_store.Credentials, password: str) -> None:
        """Store the password again with today's parameters; the login stands if not."""
        try:
            new = await self._thread(hash_password, password)
            await user_store.upgrade_password_hash(self.db, found.user, found.password_hash, new)
        except Exception:  # noqa: BLE001 - the old hash still verifies; next login tries again
            _log.failure("password hash of {name} not upgraded", name=found.user.name)
        else:
            _log.info("password hash of {name} upgraded", name=found.user.name)

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

"""Every cluster AMP link: authenticated before anything else runs, and bounded.

The connecting side proves a server id with that id's key (``cmsv6.rpc.keys``), and the
listening side proves it holds the same key, with a challenge in two AMP commands
(``Hello``, ``Prove``): nonces from both sides, both proofs HMAC-SHA256 over a label, the
id and both nonces, checked with ``hmac.compare_digest``. Until the challenge succeeds
the link answers nothing else: any other command closes it (counted and logged), and so
does a wrong proof or a link that has not proven itself within ``HANDSHAKE_TIMEOUT``.
Afterwards ``peer_id`` is the id the other side proved, and responders on both sides run.

The challenge authenticates the peer when the link opens; it does not encrypt or sign
what follows. On a network where someone could tamper with the TCP stream, wrap the
links in TLS (``ssl:`` endpoint strings): the challenge runs unchanged inside it.

Whatever the state, a box is bounded: ``MAX_KEYS`` keys and ``MAX_BOX_BYTES`` bytes (AMP
bounds a value to 65,535 bytes, not the number of keys), and ``MAX_OUTSTANDING`` commands
received and not yet answered; a box over the bounds closes the link, a command over the
outstanding bound is answered ``UNAVAILABLE``.

Every server uses this class (login, gateways, ``cmsv6 send``, and the media server to
come): the listening side gives ``key_for`` (id → key or None), the connecting side calls
``authenticate(id, key)``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import Counter
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from cmsv6.rpc.commands import Hello, NotAuthenticated, Prove, Unavailable

_log = Logger()

NONCE_BYTES = 32
_LABEL = b"cmsv6 cluster v1 "


def proof(key: bytes, role: bytes, server_id: str, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """HMAC-SHA256 binding ``role`` (b"client" / b"server"), the id and both nonces."""
    message = b"\0".join([_LABEL + role, server_id.encode("utf-8"), client_nonce, server_nonce])
    return hmac.new(key, message, hashlib.sha256).digest()


class _Locator:
    """The responders a link offers: the challenge always, the rest once authenticated."""

    def __init__(self, link: ClusterLink, inner: Any) -> None:
        self.link = link
        self.inner = inner

    def locateResponder(self, name: bytes) -> Any:  # noqa: N802
        own = self.link.handshake.locateResponder(name)
        if own is not None:
            return own
        if not self.link.authenticated:
            return self.link._unauthenticated(name)
        return self.inner.locateResponder(name) if self.inner is not None else None


class _Handshake(amp.CommandLocator):
    def __init__(self, link: ClusterLink) -> None:
        self.link = link

    @Hello.responder
    def hello(self, id: str, nonce: bytes) -> dict[str, Any]:  # noqa: A002
        return self.link._hello(id, nonce)

    @Prove.responder
    def prove(self, proof: bytes) -> dict[str, Any]:
        return self.link._prove(proof)


class ClusterLink(amp.AMP):
    """See the module docstring. ``locator`` holds the responders that run once the link
    is authenticated; ``key_for`` makes it able to accept the challenge (listening side);
    ``counters`` (shared by a factory's links) counts refusals by reason."""

    #: Keys in one box at most (the largest command has a handful).
    MAX_KEYS = 32
    #: Bytes of keys and values in one box at most.
    MAX_BOX_BYTES = 256 * 1024
    #: Commands received and not answered yet, per link, at most.
    MAX_OUTSTANDING = 1000
    #: Seconds a link has to authenticate.
    HANDSHAKE_TIMEOUT = 10.0

    def __init__(
        self,
        locator: Any = None,
        key_for: Callable[[str], bytes | None] | None = None,
        clock: IReactorTime | None = None,
        counters: Counter[str] | None = None,
    ) -> None:
        self.handshake = _Handshake(self)
        super().__init__(locator=_Locator(self, locator))
        self.key_for = key_for
        self.clock = clock
        self.counters: Counter[str] = counters if counters is not None else Counter()
        #: The server id the other side proved (None until then).
        self.peer_id: str | None = None
        self.peer = "?"
        self._challenge: tuple[str, bytes, bytes, bytes] | None = None
        self._deadline: IDelayedCall | None = None
        self._outstanding = 0
        self._box_keys = 0
        self._box_bytes = 0
        self._refused = False

    @property
    def authenticated(self) -> bool:
        return self.peer_id is not None

    # -- connection ------------------------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802
        address = self.transport.getPeer()
        self.peer = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        super().connectionMade()
        clock = self.clock
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[no-redef]
        self._deadline = clock.callLater(self.HANDSHAKE_TIMEOUT, self._too_slow)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if self._challenge is not None and not self.authenticated:
            # It had our proof and left without its own: it does not hold the key.
            self.counters["bad proof"] += 1
            _log.warn("cluster link from {peer} left the challenge for {id!r} unanswered",
                      peer=self.peer, id=self._challenge[0])  # fmt: skip
            self._challenge = None
        super().connectionLost(reason)

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.authenticated:
            self._refuse("handshake timeout", f"no authentication within {self.HANDSHAKE_TIMEOUT:g} s")

    def _refuse(self, reason: str, detail: str) -> None:
        """Count, log, and close the link at once."""
        self.counters[reason] += 1
        _log.warn("cluster link from {peer} refused ({reason}): {detail}", peer=self.peer,
                  reason=reason, detail=detail)  # fmt: skip
        if self.transport is not None:
            self.transport.abortConnection()

    # -- the challenge: listening side -------------------------------------------------------

    def _hello(self, server_id: str, nonce: bytes) -> dict[str, Any]:
        key = self.key_for(server_id) if self.key_for is not None and server_id else None
        if self.authenticated or self._challenge is not None or len(nonce) != NONCE_BYTES or key is None:
            self.counters["unknown id"] += 1
            _log.warn("cluster link from {peer}: no key for {id!r} (or a repeated hello)",
                      peer=self.peer, id=server_id)  # fmt: skip
            raise NotAuthenticated("not authenticated")
        ours = secrets.token_bytes(NONCE_BYTES)
        self._challenge = (server_id, key, nonce, ours)
        return {"nonce": ours, "proof": proof(key, b"server", server_id, nonce, ours)}

    def _prove(self, given: bytes) -> dict[str, Any]:
        challenge, self._challenge = self._challenge, None
        if challenge is None or self.authenticated:
            self.counters["bad proof"] += 1
            raise NotAuthenticated("not authenticated")
        server_id, key, theirs, ours = challenge
        if not hmac.compare_digest(given, proof(key, b"client", server_id, theirs, ours)):
            self.counters["bad proof"] += 1
            _log.warn("cluster link from {peer}: wrong key for {id!r}", peer=self.peer, id=server_id)
            raise NotAuthenticated("not authenticated")
        self._authenticated(server_id)
        return {}

    def _authenticated(self, server_id: str) -> None:
        self.peer_id = server_id
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        _log.info("cluster link from {peer} authenticated as {id}", peer=self.peer, id=server_id)

    def _unauthenticated(self, name: bytes) -> Callable[[Any], Any]:
        def refuse(box: Any) -> Any:
            self._refuse("unauthenticated", f"{name!r} before authenticating")
            raise amp.RemoteAmpError(b"UNAUTHENTICATED", "not authenticated", fatal=True)

        return refuse

    # -- the challenge: connecting side ------------------------------------------------------

    def authenticate(self, server_id: str, key: bytes) -> defer.Deferred[ClusterLink]:
        """Prove ``server_id`` with ``key`` and check the other side holds it too; fires
        with this link, or fails (NotAuthenticated) and closes it."""
        ours = secrets.token_bytes(NONCE_BYTES)

        def answered(result: dict[str, Any]) -> Any:
            theirs = result["nonce"]
            expected = proof(key, b"server", server_id, ours, theirs)
            if len(theirs) != NONCE_BYTES or not hmac.compare_digest(result["proof"], expected):
                raise NotAuthenticated(f"{self.peer} does not hold the key of {server_id}")
            return self.callRemote(Prove, proof=proof(key, b"client", server_id, ours, theirs))

        def proven(_: Any) -> ClusterLink:
            self._authenticated(server_id)
            return self

        def failed(failure: Failure) -> Failure:
            self.counters["refused by peer"] += 1
            if self.transport is not None:
                self.transport.abortConnection()
            return failure

        d = self.callRemote(Hello, id=server_id, nonce=ours)
        return d.addCallback(answered).addCallbacks(proven, failed)

    # -- bounds -----------------------------------------------------------------------------

    def proto_init(self, string: bytes) -> str:
        self._box_keys = 0
        self._box_bytes = 0
        return super().proto_init(string)  # type: ignore[no-any-return]

    def proto_key(self, string: bytes) -> str:
        if self._refused:
            return "refused"
        self._box_keys += bool(string)
        self._box_bytes += len(string)
        if self._box_keys > self.MAX_KEYS:
            return self._too_big(f"more than {self.MAX_KEYS} keys in a box")
        return super().proto_key(string)  # type: ignore[no-any-return]

    def proto_value(self, string: bytes) -> str:
        if self._refused:
            return "refused"
        self._box_bytes += len(string)
        if self._box_bytes > self.MAX_BOX_BYTES:
            return self._too_big(f"a box over {self.MAX_BOX_BYTES} bytes")
        return super().proto_value(string)  # type: ignore[no-any-return]

    def proto_refused(self, string: bytes) -> str:
        return "refused"

    def _too_big(self, detail: str) -> str:
        self._refused = True
        self._currentBox = None
        self._refuse("box too big", detail)
        return "refused"

    def dispatchCommand(self, box: amp.AmpBox) -> defer.Deferred[Any]:  # noqa: N802
        if self._outstanding >= self.MAX_OUTSTANDING:
            self.counters["too many outstanding"] += 1
            _log.warn("cluster link from {peer}: {n} commands unanswered; refusing more",
                      peer=self.peer, n=self._outstanding)  # fmt: skip
            return defer.fail(amp.RemoteAmpError(b"UNAVAILABLE", "too many commands in flight"))
        self._outstanding += 1

        def done(result: Any) -> Any:
            self._outstanding -= 1
            return result

        d: defer.Deferred[Any] = super().dispatchCommand(box)
        return d.addBoth(done)


__all__ = ["ClusterLink", "NotAuthenticated", "Unavailable", "proof"]

"""Login's AMP responders (``cluster`` endpoint): gateways announce themselves, their load
and their devices; media servers announce themselves and their load, and ask for devices'
live streams (``cmsv6.plugins.login.streams``). The link itself is the server's liveness:
when it drops, the server is dead.

Every link first proves a server's identity with its key (``cmsv6.rpc.link``; login holds
the master key, so it can check any). The identity is a role and an id
(``cmsv6.rpc.keys.identity``): a link announces that id only, as that role's server, so a
gateway's key cannot announce a media server (even under its own id, even while that
gateway is offline), nor a media server's key a gateway. A link (or an id) that is a live
gateway's cannot announce a media server either, nor the other way round, and only a link
that announced a media server may ask for streams. Announced phones
must be canonical and, when login knows the devices (``known``), devices; a gateway is
given no more than its capacity.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from cmsv6.phone import canonical_phone, valid_phone
from cmsv6.plugins.login import streams
from cmsv6.plugins.login.directory import Directory
from cmsv6.rpc import keys
from cmsv6.rpc.commands import (
    COMMON_ERRORS,
    MAX_CAPACITY,
    MAX_PHONES,
    AnnounceGateway,
    AnnounceMedia,
    BadRequest,
    CloseStream,
    DeviceRefused,
    DevicesChanged,
    OpenStream,
    ReportLoad,
    ReportMediaLoad,
    SendForMedia,
    Unavailable,
)
from cmsv6.rpc.link import ClusterLink

_log = Logger()

#: Gateway and media server links at most.
MAX_LINKS = 1000

#: What responders may fail with as it is (anything else is logged and Unavailable).
_DECLARED = (*COMMON_ERRORS, DeviceRefused)


def _declared(what: str) -> Any:
    """Responder decorator: declared errors pass, anything else is logged and becomes
    Unavailable (an undeclared error would drop the link)."""

    def wrap(method: Any) -> Any:
        def responder(self: LoginLocator, *args: Any, **kwargs: Any) -> Any:
            try:
                result = method(self, *args, **kwargs)
            except _DECLARED:
                raise
            except Exception as e:  # noqa: BLE001 - the boundary
                _log.failure("{what} from {peer} failed", Failure(), what=what, peer=self.link.peer)
                raise Unavailable(str(e)) from None
            if isinstance(result, defer.Deferred):
                return result.addErrback(_unexpected, what, self.link.peer)
            return result

        responder.__name__ = method.__name__
        return responder

    return wrap


def _unexpected(failure: Failure, what: str, peer: str) -> Failure:
    if failure.check(*_DECLARED):
        return failure
    _log.failure("{what} from {peer} failed", failure, what=what, peer=peer)
    return Failure(Unavailable(failure.getErrorMessage()))


#: Which of these phones are devices (canonical phones in, a set out).
Known = Callable[[list[str]], "defer.Deferred[set[str]]"]


class LoginLocator(amp.CommandLocator):
    def __init__(self, directory: Directory, link: LoginLink) -> None:
        self.directory = directory
        self.link = link

    @AnnounceGateway.responder
    @_declared("announcement")
    def announce(self, id: str, public_jt808: str, cluster: str, capacity: int) -> dict[str, Any]:  # noqa: A002
        self._proved(keys.GATEWAY, id)
        if not 0 <= capacity <= MAX_CAPACITY:
            raise BadRequest(f"a capacity is 0 to {MAX_CAPACITY}")
        # Login reaches a gateway over this link only: never an address it was given.
        self.directory.announce(self.link, id, public_jt808, cluster, capacity)
        return {"login": self.directory.login_id}

    def _proved(self, role: str, id: str) -> None:  # noqa: A002
        """BadRequest unless this link proved ``id`` in ``role``."""
        proved = self.link.peer_id or ""
        if proved != keys.identity(role, id):
            self.link.counters["impostor"] += 1
            what = "a media server" if role == keys.MEDIA else "a gateway"
            _log.warn("link {peer} proved {proved!r} and announced {what} {id!r}: refused",
                      peer=self.link.peer, proved=proved, what=what, id=id)  # fmt: skip
            proved_role, proved_id = keys.role_of(proved)
            raise BadRequest(f"this link proved the key of {proved_role} {proved_id!r}, not"
                             f" of {what} {id!r}")  # fmt: skip

    @AnnounceMedia.responder
    @_declared("media announcement")
    def announce_media(self, id: str, public_web: str, public_jt1078: str, streams: int,  # noqa: A002
                       viewers: int) -> dict[str, Any]:  # fmt: skip
        self._proved(keys.MEDIA, id)
        self.directory.announce_media(self.link, id, public_web, public_jt1078, streams, viewers)
        return {"login": self.directory.login_id}

    @ReportMediaLoad.responder
    @_declared("media load report")
    def report_media_load(self, streams: int, viewers: int) -> dict[str, Any]:
        self.directory.media_load(self.link, streams, viewers)
        return {}

    @OpenStream.responder
    @_declared("stream request")
    def open_stream(self, phone: str, channel: int, stream: str, address: str,
                    timeout: float | None = None) -> Any:  # fmt: skip
        media = self.directory.require_media(self.link)
        return streams.open_stream(self.directory, media, phone, channel, stream, address, timeout)

    @CloseStream.responder
    @_declared("stream close")
    def close_stream(self, phone: str, channel: int, stream: str,
                     timeout: float | None = None) -> Any:  # fmt: skip
        media = self.directory.require_media(self.link)
        d = streams.close_stream(self.directory, media, phone, channel, stream, timeout)
        return d.addCallback(lambda _: {})

    @SendForMedia.responder
    @_declared("media server's message")
    def send_for_media(self, phone: str, msg_id: int, body: bytes,
                       timeout: float | None = None) -> Any:  # fmt: skip
        media = self.directory.require_media(self.link)
        return streams.send_for_media(self.directory, media, phone, msg_id, body, timeout)

    @ReportLoad.responder
    @_declared("load report")
    def report_load(self, online: int, connections: int) -> dict[str, Any]:
        self.directory.report_load(self.link, online, connections)
        return {}

    @DevicesChanged.responder
    @_declared("device report")
    def devices_changed(self, online: list[str], offline: list[str]) -> Any:
        if len(online) + len(offline) > 2 * MAX_PHONES:
            raise BadRequest(f"at most {MAX_PHONES} phones per list")
        bad = [p for p in (*online, *offline) if not valid_phone(p) or canonical_phone(p) != p]
        if bad:
            raise BadRequest(f"not canonical phones: {', '.join(repr(p) for p in bad[:5])}")
        # In order of the link, even while the devices are looked up.
        return self.link.queue.run(self._devices_changed, online, offline)

    @defer.inlineCallbacks
    def _devices_changed(self, online: list[str], offline: list[str]) -> Any:
        known = self.link.factory.known if self.link.factory is not None else None
        if known is not None and online:
            exist = yield known(online)
            unknown = [p for p in online if p not in exist]
            if unknown:
                _log.warn("gateway {id} announced {n} phones that are not devices (ignored): {some}",
                          id=self.link.peer_id, n=len(unknown), some=", ".join(unknown[:5]))  # fmt: skip
                online = [p for p in online if p in exist]
        entry = self.directory.entry_of(self.link)
        if entry is not None and online:
            room = entry.capacity - len(entry.devices - set(offline))
            new = [p for p in online if p not in entry.devices]
            if len(new) > room:
                _log.warn("gateway {id} announced {n} devices over its capacity {capacity} (ignored)",
                          id=entry.id, n=len(new) - max(room, 0), capacity=entry.capacity)  # fmt: skip
                keep = set(new[: max(room, 0)])
                online = [p for p in online if p in entry.devices or p in keep]
        self.directory.devices_changed(self.link, online, offline)
        return {}


class LoginLink(ClusterLink):
    """One gateway's or media server's link to login."""

    factory: LoginClusterFactory | None = None

    def __init__(self, directory: Directory, key_for: Callable[[str], bytes | None],
                 clock: IReactorTime | None = None, counters: Counter[str] | None = None) -> None:  # fmt: skip
        self.directory = directory
        super().__init__(key_for=key_for, clock=clock, counters=counters)
        self.locator.inner = LoginLocator(directory, self)
        self.queue = defer.DeferredLock()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        super().connectionLost(reason)
        self.directory.link_lost(self)
        if self.factory is not None:
            self.factory.links.discard(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


class LoginClusterFactory(protocol.Factory):
    """Builds gateway and media server links; keeps them so a login server stepping down can close them.
    ``key_for`` gives the key of a server id (from the master key); ``known`` which
    announced phones are devices (None: any)."""

    noisy = False

    def __init__(self, directory: Directory, key_for: Callable[[str], bytes | None],
                 clock: IReactorTime | None = None, known: Known | None = None,
                 max_links: int = MAX_LINKS) -> None:  # fmt: skip
        self.directory = directory
        self.key_for = key_for
        self.clock = clock
        self.known = known
        self.max_links = max_links
        self.links: set[LoginLink] = set()
        #: Links refused, by reason (unauthenticated, wrong key, impostor, box too big...).
        self.refused: Counter[str] = Counter()

    def buildProtocol(self, addr: object) -> LoginLink | None:  # noqa: N802
        if len(self.links) >= self.max_links:
            _log.warn("{n} cluster links open; refusing {addr}", n=len(self.links), addr=addr)
            return None
        link = LoginLink(self.directory, self.key_for, self.clock, self.refused)
        link.factory = self
        self.links.add(link)
        return link

    def close_all(self) -> None:
        for link in list(self.links):
            link.close()

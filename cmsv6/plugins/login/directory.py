"""The login server's "memory data": live gateways and media servers, which gateway each
device is on, which media server each live stream goes to, and devices' audio/video
attributes (their 0x1003, asked when a stream opens: ``cmsv6.plugins.login.streams``).

Nothing here is read from the database: gateways announce themselves over their AMP link
(``AnnounceGateway``), report their load and their devices coming and going, and after a
reconnect (or a standby login server taking over) announce every device again, so this is
rebuilt from the gateways alone. Media servers do the same (``AnnounceMedia``, their
streams and viewers). A server whose link drops, or that stops reporting, is dead and what
it had is forgotten.

``Directory`` is also the ``Cluster`` the web front end (``cmsv6.web``) uses: where a
device is, sending it a command through its gateway, the media server to use and a signed
viewing grant for it (``cmsv6.media.viewing``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Protocol

from attrs import define, field, frozen
from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from cmsv6.address import split_address
from cmsv6.media.viewing import DEFAULT_LIFETIME, View, sign_view, view_key
from cmsv6.phone import canonical_phone
from cmsv6.protocols.jt808.messages.jt1078 import AvAttributes
from cmsv6.protocols.jt808.retransmit import waits
from cmsv6.protocols.jt1078.audio import AUDIO_CODECS as SERVED_AUDIO
from cmsv6.rpc import keys
from cmsv6.rpc.commands import (
    MAX_CAPACITY,
    MAX_MEDIA_LOAD,
    VIDEO_CODECS,
    BadRequest,
    CommandTimeout,
    ControlPlayback,
    DeviceOffline,
    DeviceRefused,
    NoSuchPlayback,
    SendMessage,
    Unavailable,
)
from cmsv6.web.cluster import LiveView

_log = Logger()


class GatewayLink(Protocol):
    """The AMP link a gateway announced itself on."""

    def callRemote(self, command: type[amp.Command], **kw: Any) -> defer.Deferred[Any]: ...  # noqa: N802

    def close(self) -> None: ...


@define(eq=False)
class GatewayEntry:
    """A live gateway as login knows it."""

    id: str
    public_jt808: str
    cluster: str
    capacity: int
    link: GatewayLink
    announced: float
    last_report: float
    reported_online: int = 0
    connections: int = 0
    #: Phones online on it (from its DevicesChanged).
    devices: set[str] = field(factory=set)
    #: Phones login sent here that have not come online yet, with when to stop counting them.
    pending: dict[str, float] = field(factory=dict)

    @property
    def load(self) -> int:
        """Devices on it, and on their way to it."""
        return len(self.devices) + len(self.pending)

    @property
    def has_room(self) -> bool:
        return self.load < self.capacity


@define(eq=False)
class MediaEntry:
    """A live media server as login knows it."""

    id: str
    public_web: str
    public_jt1078: str
    link: GatewayLink
    announced: float
    last_report: float
    streams: int = 0
    viewers: int = 0
    #: (phone, channel, stream) login asked devices to open to it and not closed since,
    #: oldest first (a dict as an ordered set, bounded by ``Directory.MAX_OPENED``).
    opened: dict[tuple[str, int, str], None] = field(factory=dict)

    @property
    def load(self) -> int:
        return self.streams + self.viewers


@frozen
class AvMemory:
    """A device's 0x1003 as login remembers it: ``attributes`` None when the device did not
    answer 0x9003 (or refused it), until ``until`` (the clock's seconds)."""

    attributes: AvAttributes | None
    until: float


class Directory:
    """Live gateways and media servers, online devices, assignments. See the module
    docstring. ``key_for`` (identity → the server's cluster key, from login's master key:
    ``cmsv6.rpc.keys``) signs viewing grants; without it there are none."""

    #: Seconds an assignment counts towards a gateway's load before the device shows up.
    PENDING_FOR = 30.0
    #: Seconds without a load report after which a gateway is taken for dead.
    STALE_AFTER = 15.0
    #: Previous assignments remembered (for stickiness) at most; the oldest go first.
    MAX_REMEMBERED = 1_000_000
    #: Streams remembered per media server at most (for keeping viewers together).
    MAX_OPENED = 100_000
    #: Retransmissions a gateway makes of a command (its default).
    COMMAND_RETRIES = 3
    #: Devices whose 0x1003 attributes are remembered at most; the least recently used go.
    MAX_AV = 100_000
    #: Seconds a device's attributes are remembered (they are forgotten sooner when it goes
    #: offline: it may come back as another unit, or reconfigured).
    AV_FOR = 3600.0
    #: Seconds a device that did not answer 0x9003 is not asked again.
    AV_UNKNOWN_FOR = 600.0

    def __init__(
        self,
        clock: IReactorTime,
        login_id: str = "login",
        key_for: Callable[[str], bytes | None] | None = None,
    ) -> None:
        self.clock = clock
        self.login_id = login_id
        self.key_for = key_for
        self.gateways: dict[str, GatewayEntry] = {}
        self.media: dict[str, MediaEntry] = {}
        #: phone → id of the gateway it is online on.
        self.devices: dict[str, str] = {}
        #: phone → id of the gateway it was last on or sent to (stickiness).
        self.previous: OrderedDict[str, str] = OrderedDict()
        #: Called with the chosen gateway's id on every assignment (metrics, tests).
        self.on_assigned: list[Callable[[str, str], None]] = []
        #: phone → its remembered 0x1003 (least recently used first, ``MAX_AV`` at most).
        self.av: OrderedDict[str, AvMemory] = OrderedDict()
        #: phone → the 0x9003 in flight to it (one per device at most).
        self.av_asking: dict[str, defer.Deferred[AvAttributes | None]] = {}

    # -- from the gateways' links ----------------------------------------------------------

    def announce(
        self, link: GatewayLink, gateway_id: str, public_jt808: str, cluster: str, capacity: int
    ) -> GatewayEntry:
        """A gateway announced itself on ``link``; replaces an older entry under that id."""
        if not gateway_id or not 0 <= capacity <= MAX_CAPACITY:
            raise BadRequest(f"a gateway needs an id and a capacity of 0 to {MAX_CAPACITY}")
        try:
            split_address(public_jt808)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        current = self.entry_of(link)
        if current is not None and current.id != gateway_id:
            raise BadRequest(f"this link announced {current.id} already")
        if self.media_of(link) is not None or gateway_id in self.media:
            raise BadRequest(f"{gateway_id} is a media server, not a gateway")
        old = self.gateways.get(gateway_id)
        if old is not None:
            _log.info("gateway {id} announced again; the previous link is dropped", id=gateway_id)
            self._drop(old, "announced again")
            if old.link is not link:
                old.link.close()
        now = self.clock.seconds()
        entry = GatewayEntry(gateway_id, public_jt808, cluster, capacity, link, now, now)
        self.gateways[gateway_id] = entry
        link.gateway = entry  # type: ignore[attr-defined]
        _log.info("gateway {id} is live: devices to {public}, capacity {capacity}",
                  id=gateway_id, public=public_jt808, capacity=capacity)
        return entry

    def entry_of(self, link: GatewayLink) -> GatewayEntry | None:
        """The live entry announced on ``link``, if any."""
        entry: GatewayEntry | None = getattr(link, "gateway", None)
        if entry is None or self.gateways.get(entry.id) is not entry:
            return None
        return entry

    def link_lost(self, link: GatewayLink) -> None:
        """The server's link dropped: it is dead."""
        entry = self.entry_of(link)
        if entry is not None:
            self._drop(entry, "link lost")
        media = self.media_of(link)
        if media is not None:
            self._drop_media(media, "link lost")

    def report_load(self, link: GatewayLink, online: int, connections: int) -> None:
        entry = self._require(link)
        entry.reported_online = online
        entry.connections = connections
        entry.last_report = self.clock.seconds()

    def devices_changed(self, link: GatewayLink, online: list[str], offline: list[str]) -> None:
        entry = self._require(link)
        entry.last_report = self.clock.seconds()
        for raw in offline:
            phone = canonical_phone(raw)
            entry.devices.discard(phone)
            if self.devices.get(phone) == entry.id:
                del self.devices[phone]
                self.av.pop(phone, None)
        for raw in online:
            phone = canonical_phone(raw)
            other = self.devices.get(phone)
            if other is not None and other != entry.id:
                # It moved (and its old gateway has not said so yet): the newer one wins.
                old = self.gateways.get(other)
                if old is not None:
                    old.devices.discard(phone)
            self.devices[phone] = entry.id
            entry.devices.add(phone)
            entry.pending.pop(phone, None)
            self._remember(phone, entry.id)

    def _require(self, link: GatewayLink) -> GatewayEntry:
        entry = self.entry_of(link)
        if entry is None:
            raise BadRequest("announce the gateway first")
        return entry

    def _drop(self, entry: GatewayEntry, reason: str) -> None:
        if self.gateways.get(entry.id) is not entry:
            return
        del self.gateways[entry.id]
        for phone in entry.devices:
            if self.devices.get(phone) == entry.id:
                del self.devices[phone]
        _log.info("gateway {id} is dead ({reason}); {n} devices forgotten", id=entry.id,
                  reason=reason, n=len(entry.devices))

    def tick(self) -> None:
        """Periodic housekeeping: stale assignments and servers that stopped reporting."""
        now = self.clock.seconds()
        for media in list(self.media.values()):
            if now - media.last_report > self.STALE_AFTER:
                self._drop_media(media, f"no report for {now - media.last_report:.0f} s")
                media.link.close()
        for entry in list(self.gateways.values()):
            if now - entry.last_report > self.STALE_AFTER:
                self._drop(entry, f"no report for {now - entry.last_report:.0f} s")
                entry.link.close()
                continue
            if entry.pending:
                for phone in [p for p, until in entry.pending.items() if until <= now]:
                    del entry.pending[phone]

    def clear(self) -> None:
        """Forget every server (login is stepping down; the links are being closed)."""
        for entry in list(self.gateways.values()):
            self._drop(entry, "login stepped down")
        for media in list(self.media.values()):
            self._drop_media(media, "login stepped down")

    # -- from the media servers' links -------------------------------------------------------

    def announce_media(self, link: GatewayLink, media_id: str, public_web: str, public_jt1078: str,
                       streams: int, viewers: int) -> MediaEntry:  # fmt: skip
        """A media server announced itself on ``link``; replaces an older entry under that
        id. BadRequest (in words) for an address that is not one, or an id or link that is
        a gateway's."""
        if not media_id:
            raise BadRequest("a media server needs an id")
        if not public_web.startswith(("http://", "https://")) or len(public_web) > 200:
            raise BadRequest(f"public_web {public_web[:200]!r} is not an http:// or https:// URL")
        try:
            split_address(public_jt1078)
        except ValueError as e:
            raise BadRequest(f"public_jt1078: {e}") from None
        _check_load(streams, viewers)
        if self.entry_of(link) is not None or media_id in self.gateways:
            raise BadRequest(f"{media_id} is a gateway, not a media server")
        current = self.media_of(link)
        if current is not None and current.id != media_id:
            raise BadRequest(f"this link announced {current.id} already")
        old = self.media.get(media_id)
        if old is not None:
            _log.info("media server {id} announced again; the previous link is dropped", id=media_id)
            self._drop_media(old, "announced again")
            if old.link is not link:
                old.link.close()
        now = self.clock.seconds()
        entry = MediaEntry(media_id, public_web, public_jt1078, link, now, now, streams, viewers)
        self.media[media_id] = entry
        link.media = entry  # type: ignore[attr-defined]
        _log.info("media server {id} is live: viewers to {web}, devices to {jt1078}",
                  id=media_id, web=public_web, jt1078=public_jt1078)  # fmt: skip
        return entry

    def media_of(self, link: GatewayLink) -> MediaEntry | None:
        """The live media server announced on ``link``, if any."""
        entry: MediaEntry | None = getattr(link, "media", None)
        if entry is None or self.media.get(entry.id) is not entry:
            return None
        return entry

    def require_media(self, link: GatewayLink) -> MediaEntry:
        entry = self.media_of(link)
        if entry is None:
            raise BadRequest("announce the media server first")
        return entry

    def media_load(self, link: GatewayLink, streams: int, viewers: int) -> None:
        entry = self.require_media(link)
        _check_load(streams, viewers)
        entry.streams, entry.viewers = streams, viewers
        entry.last_report = self.clock.seconds()

    def stream_opened(self, entry: MediaEntry, phone: str, channel: int, stream: str) -> None:
        """A device accepted to stream to ``entry``: later viewers of it go there too (a
        device sends a channel's stream to one server at a time)."""
        key = (canonical_phone(phone), channel, stream)
        for other in self.media.values():
            other.opened.pop(key, None)
        entry.opened[key] = None
        while len(entry.opened) > self.MAX_OPENED:  # streams it never closed: forget the oldest
            del entry.opened[next(iter(entry.opened))]

    def stream_closed(self, entry: MediaEntry, phone: str, channel: int, stream: str) -> None:
        entry.opened.pop((canonical_phone(phone), channel, stream), None)

    def _drop_media(self, entry: MediaEntry, reason: str) -> None:
        if self.media.get(entry.id) is not entry:
            return
        del self.media[entry.id]
        _log.info("media server {id} is dead ({reason})", id=entry.id, reason=reason)

    def choose_media(self, phone: str = "", channel: int = 0, stream: str = "") -> MediaEntry | None:
        """The media server for a stream: the one it goes to already, if any, else the one
        with the fewest streams and viewers; None if there is no live media server."""
        key = (canonical_phone(phone) if phone else phone, channel, stream)
        for entry in self.media.values():
            if key in entry.opened:
                return entry
        best: MediaEntry | None = None
        for entry in self.media.values():
            if best is None or (entry.load, entry.id) < (best.load, best.id):
                best = entry
        return best

    # -- assignment --------------------------------------------------------------------------

    def choose(self, phone: str) -> GatewayEntry | None:
        """The gateway for a device: the one it is on or was last sent to while that one is
        alive and has room, else the least loaded (relative to capacity); None if no live
        gateway has room."""
        phone = canonical_phone(phone)
        for gateway_id in (self.devices.get(phone), self.previous.get(phone)):
            entry = self.gateways.get(gateway_id) if gateway_id is not None else None
            if entry is not None and (entry.has_room or phone in entry.devices):
                return entry
        best: GatewayEntry | None = None
        best_key: tuple[float, int, str] | None = None
        for entry in self.gateways.values():
            if not entry.has_room:
                continue
            key = (entry.load / entry.capacity, entry.load, entry.id)
            if best_key is None or key < best_key:
                best, best_key = entry, key
        return best

    def assigned(self, phone: str, entry: GatewayEntry) -> None:
        """The device was told to go to ``entry``: count it there until it shows up."""
        phone = canonical_phone(phone)
        if phone not in entry.devices:
            entry.pending[phone] = self.clock.seconds() + self.PENDING_FOR
        self._remember(phone, entry.id)
        for callback in self.on_assigned:
            callback(phone, entry.id)

    def _remember(self, phone: str, gateway_id: str) -> None:
        previous = self.previous
        previous[phone] = gateway_id
        previous.move_to_end(phone)
        while len(previous) > self.MAX_REMEMBERED:
            previous.popitem(last=False)

    # -- devices' audio/video attributes (0x1003) ----------------------------------------------

    def av_memory(self, phone: str) -> AvMemory | None:
        """What login remembers of the device's 0x1003 (None: nothing, or no longer)."""
        phone = canonical_phone(phone)
        memory = self.av.get(phone)
        if memory is not None and memory.until <= self.clock.seconds():
            del self.av[phone]
            return None
        return memory

    def remember_av(self, phone: str, attributes: AvAttributes | None) -> None:
        """The device's 0x1003 (None: it did not answer 0x9003), remembered for a while."""
        phone = canonical_phone(phone)
        lasts = self.AV_FOR if attributes is not None else self.AV_UNKNOWN_FOR
        self.av[phone] = AvMemory(attributes, self.clock.seconds() + lasts)
        self.av.move_to_end(phone)
        while len(self.av) > self.MAX_AV:
            self.av.popitem(last=False)

    def live_codecs(self, phone: str) -> tuple[str | None, str | None]:
        """(video, audio) as the Open API says them, from what login remembers of the
        device's 0x1003 (never asked here): "h264"/"h265" and "aac" (a codec the media
        server gives browsers as AAC), None when not known or none."""
        memory = self.av_memory(phone)
        attributes = memory.attributes if memory is not None else None
        if attributes is None:
            return None, None
        video = VIDEO_CODECS.get(attributes.video_codec)  # type: ignore[call-overload]
        # The media server gives browsers AAC: the device's own, or transcoded from it.
        return video, "aac" if attributes.audio_codec in SERVED_AUDIO else None

    # -- Cluster: for the web front end --------------------------------------------------------

    def device_gateway(self, phone: str) -> str | None:
        return self.devices.get(canonical_phone(phone))

    def online(self) -> dict[str, str]:
        return dict(self.devices)

    def media_server(self) -> str | None:
        entry = self.choose_media()
        return entry.public_web if entry is not None else None

    def live_view(self, phone: str, channel: int, stream: str,
                  lifetime: int = DEFAULT_LIFETIME) -> LiveView | None:  # fmt: skip
        """A media server for ``stream`` of ``channel`` of ``phone`` and a grant for it,
        signed with that server's viewing key; None if there is no live media server."""
        entry = self.choose_media(phone, channel, stream)
        key = (self.key_for(keys.identity(keys.MEDIA, entry.id))
               if entry is not None and self.key_for is not None else None)  # fmt: skip
        if entry is None or key is None:
            return None
        expires = int(self.clock.seconds()) + lifetime
        view = View(entry.id, canonical_phone(phone), channel, stream, expires)
        return LiveView(entry.id, entry.public_web, sign_view(view_key(key), view), expires)

    def media_view(self, phone: str, channel: int, stream: str, params: dict[str, Any],
                   lifetime: int = DEFAULT_LIFETIME) -> LiveView | None:  # fmt: skip
        """The least-loaded media server and a grant for ``stream`` ("playback", "talk") of
        ``channel`` of ``phone`` with ``params``, signed with that server's viewing key;
        None if there is no live media server."""
        entry = self.choose_media()
        key = (self.key_for(keys.identity(keys.MEDIA, entry.id))
               if entry is not None and self.key_for is not None else None)  # fmt: skip
        if entry is None or key is None:
            return None
        expires = int(self.clock.seconds()) + lifetime
        view = View(entry.id, canonical_phone(phone), channel, stream, expires, params)
        return LiveView(entry.id, entry.public_web, sign_view(view_key(key), view), expires)

    #: Seconds login waits for a media server's answer to ControlPlayback beyond the
    #: device's time (the media server sends 0x9202 through login and the gateway).
    CONTROL_BOUND = 60.0

    def control_playback(self, media: str, session: str, action: str, speed: int | None = None,
                         time: str | None = None) -> defer.Deferred[None]:  # fmt: skip
        """``ControlPlayback`` over media server ``media``'s own link (login never connects
        to a media server); Unavailable if it is gone or does not answer."""
        entry = self.media.get(media)
        if entry is None:
            return defer.fail(Unavailable(f"media server {media} is gone"))
        arguments: dict[str, Any] = {"session": session, "action": action}
        if speed is not None:
            arguments["speed"] = speed
        if time is not None:
            arguments["time"] = time
        d = entry.link.callRemote(ControlPlayback, **arguments).addTimeout(self.CONTROL_BOUND, self.clock)
        return d.addCallbacks(lambda _: None, _control_failed, errbackArgs=(media,))

    def av_attributes(self, phone: str) -> tuple[bool, AvAttributes | None]:
        memory = self.av_memory(phone)
        return (False, None) if memory is None else (True, memory.attributes)

    def send_to_device(
        self, phone: str, msg_id: int, body: bytes, timeout: float = 10.0,
        body_2019: bytes | None = None, by: str | None = None, command: int | None = None,
    ) -> defer.Deferred[dict[str, Any]]:
        """``SendMessage`` through the device's gateway (``body`` for a 2013 session,
        ``body_2019`` for a 2019 one); fires with ``{"msg_id", "version", "body"}``, the
        reply's body as the device sent it; errbacks DeviceOffline, CommandTimeout,
        BadRequest or Unavailable. ``by`` (who asked) and ``command`` (the ``commands`` row
        recorded for it) go to the gateway's own record of the command."""
        phone = canonical_phone(phone)
        gateway_id = self.devices.get(phone)
        entry = self.gateways.get(gateway_id) if gateway_id is not None else None
        if entry is None:
            return defer.fail(DeviceOffline(f"{phone} is not online"))
        # The gateway retransmits (JT/T 808 §6.1); bound the wait anyway.
        bound = sum(waits(timeout, self.COMMAND_RETRIES)) + 10.0
        arguments: dict[str, Any] = {"phone": phone, "msg_id": msg_id, "body": body,
                                     "timeout": timeout}  # fmt: skip
        for name, value in (("body_2019", body_2019), ("by", by), ("command", command)):
            if value is not None:
                arguments[name] = value
        # Over the link the gateway announced itself on (and proved its id on): login never
        # connects to an address a gateway gives it.
        d = entry.link.callRemote(SendMessage, **arguments).addTimeout(bound, self.clock)
        return d.addErrback(_command_failed, phone, entry.id)


def _check_load(streams: int, viewers: int) -> None:
    if not (0 <= streams <= MAX_MEDIA_LOAD and 0 <= viewers <= MAX_MEDIA_LOAD):
        raise BadRequest(f"streams and viewers are 0 to {MAX_MEDIA_LOAD}")


def _control_failed(failure: Failure, media: str) -> Failure:
    """ControlPlayback's declared errors pass; a media server that cannot be reached or
    does not answer is Unavailable."""
    if failure.check(DeviceOffline, CommandTimeout, BadRequest, Unavailable, DeviceRefused,
                     NoSuchPlayback):  # fmt: skip
        return failure
    if not failure.check(defer.TimeoutError, defer.CancelledError, error.ConnectError,
                         error.ConnectionLost, error.ConnectionDone):  # fmt: skip
        _log.failure("playback control on media server {media} failed", failure, media=media)
    return Failure(Unavailable(f"media server {media} did not answer: {failure.getErrorMessage()}"))


def _command_failed(failure: Failure, phone: str, gateway_id: str) -> Failure:
    """The declared errors pass as they are; a gateway that cannot be reached or does not
    answer is Unavailable, and anything else (a bug) is logged and Unavailable too."""
    if failure.check(DeviceOffline, CommandTimeout, BadRequest, Unavailable):
        return failure
    if failure.check(defer.TimeoutError, defer.CancelledError):
        return Failure(Unavailable(f"gateway {gateway_id} did not answer for {phone}"))
    if failure.check(error.ConnectError, error.ConnectionLost, error.ConnectionDone):
        return Failure(Unavailable(f"gateway {gateway_id} unreachable: {failure.getErrorMessage()}"))
    _log.failure("command to {phone} through {gateway} failed", failure, phone=phone,
                 gateway=gateway_id)
    return Failure(Unavailable(failure.getErrorMessage()))

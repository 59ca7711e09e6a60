"""The client WebSocket at ``/ws``: live positions and alarms of the devices a client
subscribes to. docs/websocket.md is the protocol for its users: every message both ways,
the close codes and the limits (tests/web/test_ws_docs.py keeps it in step with this file).

Each socket handles its client's messages one at a time, in the order they arrived: a
message waits in a bounded queue (``max_pending``) until the one before it has been
answered, however long the database takes, so a ``subscribe`` sent right after the token,
or an ``unsubscribe`` right after a ``subscribe``, is answered after it.

The ``Hub`` polls the database every ``interval`` seconds with one query for the last
positions of every subscribed device and one for their new alarms, whoever subscribed
them, and fans the results out. A device's position is pushed when its
``last_positions.received`` differs from the one pushed before (so a new subscriber gets the
current position at once); an alarm when it was written (``alarms.created``, the database's
clock) after the previous poll, less an overlap for transactions that commit late, and has
not been pushed yet.

Each client has a bounded queue: while its connection's send buffer is full (the transport
pauses us as a producer) messages wait; past ``queue_size`` the oldest are dropped and the
client is told how many.
"""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.util import encode_truncate
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from cmsv6.db import alarms as alarm_store
from cmsv6.db import devices as device_store
from cmsv6.db import positions as position_store
from cmsv6.db import tokens as token_store
from cmsv6.db.service import Database, DatabaseUnavailable
from cmsv6.phone import canonical_phone, valid_phone
from cmsv6.web.api import alarm_json, position_json
from cmsv6.web.auth import Authenticator, hash_token
from cmsv6.web.bounded import bounded_socket
from cmsv6.web.routing import MAX_JSON_DEPTH, TooDeep, loads_bounded

_log = Logger()

#: Close codes, each documented in docs/websocket.md. Ours (autobahn lets an application
#: send only 1000 and 3000-4999 itself):
CLOSE_GOING_AWAY = 4000  # this server is going away: reconnect (to the other login server)
CLOSE_UNAUTHORIZED = 4001  # no valid token
CLOSE_BAD_MESSAGE = 4002  # not a JSON text message, or nested deeper than max_json_depth
CLOSE_TOO_MANY = 4003  # the user already has max_per_user sockets open
CLOSE_BACKLOG = 4004  # more than max_pending messages waiting for their answer
#: ...and those autobahn sends for us: its own when the client breaks the WebSocket rules
#: (failByDrop off, so each comes in a close frame with a reason, never a bare TCP close)...
CLOSE_PROTOCOL_ERROR = 1002  # not a valid WebSocket frame
CLOSE_INVALID_TEXT = 1007  # a text message that is not UTF-8
CLOSE_TOO_BIG = 1009  # a message (or frame) larger than max_message bytes
#: ...and the standard ones we send when the trouble is ours.
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_LATER = 1013  # the database is unavailable


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


class Hub:
    """Who is subscribed to what, and the poll that feeds them."""

    def __init__(
        self,
        db: Database,
        clock: Any,
        interval: float = 0.5,
        overlap: float = 5.0,
        recheck_tokens: float = 60.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.interval = interval
        self.overlap = timedelta(seconds=overlap)
        #: Seconds between checks that the clients' tokens are still valid (a socket whose
        #: token expired or was revoked is closed with 4001).
        self.recheck_tokens = recheck_tokens
        self._tokens_checked = clock.seconds()
        self.clients: set[ClientProtocol] = set()
        self.subscribers: dict[int, set[ClientProtocol]] = {}
        #: device id → ``received`` of the last position pushed (None: none yet).
        self.sent: dict[int, datetime | None] = {}
        #: device id → the last position message (for clients subscribing later).
        self.last: dict[int, bytes] = {}
        self.alarms_since: datetime | None = None
        #: alarm id → created, of the alarms pushed within the overlap.
        self.alarms_sent: dict[int, datetime] = {}
        self.polls = 0
        self.pushed = 0
        self._failing = False
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = clock
        self._polling: defer.Deferred[None] | None = None

    def start(self) -> None:
        if not self._loop.running:
            self._loop.start(self.interval, now=False)

    def stop(self) -> defer.Deferred[None]:
        """Stop polling; fires once a poll under way has finished (stop the database after
        that, or the poll's query is cut off)."""
        if self._loop.running:
            self._loop.stop()
        if self._polling is None:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._polling.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def _tick(self) -> defer.Deferred[None]:
        polling = self._polling = defer.ensureDeferred(self.poll())

        def done(result: None) -> None:
            if self._polling is polling:
                self._polling = None

        polling.addBoth(done)
        return polling

    # -- subscriptions -------------------------------------------------------------------

    def add(self, client: ClientProtocol) -> None:
        self.clients.add(client)

    def subscribe(self, client: ClientProtocol, devices: dict[str, int]) -> None:
        for phone, device_id in devices.items():
            subscribers = self.subscribers.setdefault(device_id, set())
            if client in subscribers:
                continue
            subscribers.add(client)
            client.devices[device_id] = phone
            if device_id not in self.sent:
                self.sent[device_id] = None
            elif device_id in self.last:
                client.push(self.last[device_id])

    def unsubscribe(self, client: ClientProtocol, device_ids: list[int]) -> None:
        for device_id in device_ids:
            client.devices.pop(device_id, None)
            subscribers = self.subscribers.get(device_id)
            if subscribers is None:
                continue
            subscribers.discard(client)
            if not subscribers:
                del self.subscribers[device_id]
                self.sent.pop(device_id, None)
                self.last.pop(device_id, None)

    def remove(self, client: ClientProtocol) -> None:
        self.clients.discard(client)
        self.unsubscribe(client, list(client.devices))

    # -- the poll ------------------------------------------------------------------------

    async def poll(self) -> None:
        """One round: never raises (the LoopingCall would stop)."""
        try:
            await self._poll()
            if self._failing:
                _log.info("client push: database reachable again")
            self._failing = False
        except DatabaseUnavailable as e:
            if not self._failing:
                _log.warn("client push paused: {error}", error=str(e))
            self._failing = True
        except Exception:
            _log.failure("client push: poll failed")

    async def _poll(self) -> None:
        self.polls += 1
        if self.clock.seconds() - self._tokens_checked >= self.recheck_tokens:
            await self._check_tokens()
        if not self.subscribers:
            self.alarms_since = None
            return
        changed = await position_store.changed_positions(self.db, dict(self.sent))
        for device_id, phone, position in changed:
            subscribers = self.subscribers.get(device_id)
            if not subscribers:
                continue
            self.sent[device_id] = position.received
            payload = _encode({"type": "position", "phone": phone, **position_json(position)})
            self.last[device_id] = payload
            self._fan_out(subscribers, payload)

        since = None if self.alarms_since is None else self.alarms_since - self.overlap
        now, alarms = await alarm_store.new_alarms(self.db, list(self.subscribers), since)
        for device_id, alarm in sorted(alarms, key=lambda x: (x[1].created, x[1].id)):
            if alarm.id in self.alarms_sent:
                continue
            self.alarms_sent[alarm.id] = alarm.created
            subscribers = self.subscribers.get(device_id)
            if subscribers:
                self._fan_out(subscribers, _encode({"type": "alarm", **alarm_json(alarm)}))
        self.alarms_since = now
        horizon = now - self.overlap
        self.alarms_sent = {k: v for k, v in self.alarms_sent.items() if v > horizon}

    async def _check_tokens(self) -> None:
        self._tokens_checked = self.clock.seconds()
        clients = [c for c in self.clients if c.token_hash is not None]
        if not clients:
            return
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        live = await token_store.live_tokens(self.db, list({c.token_hash for c in clients}), now)
        for client in clients:
            if client.token_hash not in live:
                client.sendClose(CLOSE_UNAUTHORIZED, "token expired or revoked")

    def _fan_out(self, clients: set[ClientProtocol], payload: bytes) -> None:
        for client in list(clients):
            client.push(payload)
            self.pushed += 1


class ClientProtocol(WebSocketServerProtocol):
    factory: ClientFactory

    user: Any = None
    token_hash: bytes | None = None
    paused = False
    dropped = 0
    _auth_timer: IDelayedCall | None = None
    #: True while ``_work`` is handling the queue of messages.
    _working = False

    def onOpen(self) -> None:  # noqa: N802
        self.devices: dict[int, str] = {}
        self.queue: deque[bytes] = deque()
        #: Messages from the client waiting for the one before them to be handled.
        self.pending: deque[tuple[bytes, bool]] = deque()
        self.hub = self.factory.hub
        self.hub.add(self)
        self._auth_timer = self.hub.clock.callLater(
            self.factory.auth_timeout, self._close, CLOSE_UNAUTHORIZED, "no token in time"
        )
        # The HTTP channel that served the upgrade is the transport's producer; we take its
        # place so the transport tells us when its send buffer is full.
        try:
            self.transport.unregisterProducer()
            self.transport.registerProducer(self, True)
        except Exception:  # noqa: BLE001 - a transport without producers: no flow control
            _log.debug("client socket without flow control")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        pending = getattr(self, "pending", None)
        if pending is not None:
            pending.clear()
        if self.user is not None:
            self.factory.left(self)
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.remove(self)

    def _close(self, code: int, reason: str) -> None:
        self._auth_timer = None
        self.sendClose(code, reason)

    def _close_standard(self, code: int, reason: str) -> None:
        """Close with one of the standard codes (1011, 1013): autobahn's ``sendClose``
        refuses all but 1000 and 3000-4999, so the frame is sent as autobahn sends its own."""
        self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)

    # -- IPushProducer (the transport calls these) ---------------------------------------

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self._drain()

    def stopProducing(self) -> None:  # noqa: N802
        self.paused = True

    # -- to the client -------------------------------------------------------------------

    def push(self, payload: bytes) -> None:
        """Send now, or queue while the connection is full (dropping the oldest)."""
        if self.state != self.STATE_OPEN:
            return
        if self.paused or self.queue or self.dropped:
            if len(self.queue) >= self.factory.queue_size:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(payload)
            self._drain()
        else:
            self.sendMessage(payload)

    def _drain(self) -> None:
        if self.paused or self.state != self.STATE_OPEN:
            return
        if self.dropped:
            n, self.dropped = self.dropped, 0
            self.sendMessage(_encode({"type": "dropped", "count": n}))
        while self.queue and not self.paused:
            self.sendMessage(self.queue.popleft())

    def send_json(self, message: dict[str, Any]) -> None:
        self.push(_encode(message))

    def error(self, code: str, message: str) -> None:
        self.send_json({"type": "error", "code": code, "message": message})

    # -- from the client -----------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802
        """Queue the message behind those not yet handled; they are handled one at a time,
        in the order received."""
        if self.state != self.STATE_OPEN:
            return
        if len(self.pending) >= self.factory.max_pending:
            self.pending.clear()
            self.sendClose(CLOSE_BACKLOG, f"more than {self.factory.max_pending} messages"
                           " waiting for an answer: wait for answers before sending more")
            return
        self.pending.append((payload, isBinary))
        if not self._working:
            d = defer.ensureDeferred(self._work())
            d.addErrback(lambda f: _log.failure("client socket {peer}: queue failed", f,
                                                peer=self.peer))

    async def _work(self) -> None:
        self._working = True
        try:
            while self.pending and self.state == self.STATE_OPEN:
                payload, is_binary = self.pending.popleft()
                try:
                    await self._handle(payload, is_binary)
                except DatabaseUnavailable:
                    self._close_standard(CLOSE_TRY_LATER,
                                         "the database is unavailable; try again later")
                except Exception:  # noqa: BLE001 - logged; the client is told and closed
                    _log.failure("client socket {peer}: message failed", peer=self.peer)
                    self._close_standard(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            self._working = False
            if self.state != self.STATE_OPEN:
                self.pending.clear()

    async def _handle(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self.sendClose(CLOSE_BAD_MESSAGE, "text (JSON) messages only")
            return
        try:
            message = loads_bounded(payload, self.factory.max_json_depth)
        except TooDeep:
            self.sendClose(CLOSE_BAD_MESSAGE,
                           f"JSON nested more than {self.factory.max_json_depth} deep")
            return
        except ValueError as e:
            self.sendClose(CLOSE_BAD_MESSAGE, f"not JSON ({e})")
            return
        if self.user is None:
            await self._authenticate(message)
        elif not isinstance(message, dict):
            self.error("bad_message", "messages are JSON objects")
        elif "subscribe" in message:
            await self._subscribe(message["subscribe"])
        elif "unsubscribe" in message:
            self._unsubscribe(message["unsubscribe"])
        else:
            self.error("bad_message", 'expected {"subscribe": [...]} or {"unsubscribe": [...]}')

    async def _authenticate(self, message: Any) -> None:
        token = message.get("token") if isinstance(message, dict) else None
        if not isinstance(token, str):
            self.sendClose(CLOSE_UNAUTHORIZED, 'the first message must be {"token": ...}')
            return
        user = await self.factory.auth.user_for_token(token)
        if self.state != self.STATE_OPEN:
            return
        if user is None:
            self.sendClose(CLOSE_UNAUTHORIZED, "invalid or expired token")
            return
        if not self.factory.joined(self, user):
            self.sendClose(CLOSE_TOO_MANY,
                           f"at most {self.factory.max_per_user} open sockets per user")
            return
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None
        self.user = user
        self.token_hash = hash_token(token)
        self.send_json({"type": "authenticated", "user": user.name, "role": user.role})

    def _phones(self, value: Any, verb: str) -> list[str] | None:
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            self.error("bad_message", f"{verb} takes a list of phone numbers")
            return None
        if len(value) > self.factory.max_subscriptions:
            self.error("too_many", f"at most {self.factory.max_subscriptions} devices at once")
            return None
        return value

    async def _subscribe(self, value: Any) -> None:
        phones = self._phones(value, "subscribe")
        if phones is None:
            return
        wanted = {canonical_phone(p): p for p in phones if valid_phone(p)}
        visible = await device_store.visible_devices(self.factory.db, self.user, list(wanted))
        if self.state != self.STATE_OPEN:
            return
        new = {p: i for p, i in visible.items() if i not in self.devices}
        if len(self.devices) + len(new) > self.factory.max_subscriptions:
            self.error("too_many", f"at most {self.factory.max_subscriptions} subscriptions")
            return
        self.send_json({
            "type": "subscribed",
            "phones": sorted(visible),
            "not_found": sorted(p for p in phones if canonical_phone(p) not in visible),
        })  # fmt: skip
        self.hub.subscribe(self, new)

    def _unsubscribe(self, value: Any) -> None:
        phones = self._phones(value, "unsubscribe")
        if phones is None:
            return
        by_phone = {phone: device_id for device_id, phone in self.devices.items()}
        ids = {by_phone[c] for c in map(canonical_phone, phones) if c in by_phone}
        removed = sorted(self.devices[i] for i in ids)
        self.hub.unsubscribe(self, list(ids))
        self.send_json({"type": "unsubscribed", "phones": removed})


class ClientFactory(WebSocketServerFactory):
    protocol = ClientProtocol

    def __init__(
        self,
        db: Database,
        auth: Authenticator,
        hub: Hub,
        reactor: Any,
        queue_size: int = 1000,
        max_subscriptions: int = 10_000,
        auth_timeout: float = 10.0,
        max_message: int = 64 * 1024,
        max_per_user: int = 10,
        max_json_depth: int = MAX_JSON_DEPTH,
        max_pending: int = 32,
    ) -> None:
        super().__init__(reactor=reactor)
        self.db = db
        self.auth = auth
        self.hub = hub
        self.queue_size = queue_size
        self.max_subscriptions = max_subscriptions
        self.auth_timeout = auth_timeout
        self.max_per_user = max_per_user
        self.max_json_depth = max_json_depth
        #: Bytes in one message from a client (and in one of its frames).
        self.max_message = max_message
        #: Messages from one client waiting for the one before them to be answered (each at
        #: most ``max_message`` bytes: the bound of what a socket holds for its client).
        self.max_pending = max_pending
        #: Authenticated sockets by user name.
        self.per_user: dict[str, set[ClientProtocol]] = {}
        bounded_socket(self, max_message)

    def joined(self, client: ClientProtocol, user: Any) -> bool:
        """``client`` authenticated as ``user``: False if that user has ``max_per_user``
        sockets open already."""
        sockets = self.per_user.setdefault(user.name, set())
        if len(sockets) >= self.max_per_user:
            if not sockets:
                del self.per_user[user.name]
            return False
        sockets.add(client)
        return True

    def left(self, client: ClientProtocol) -> None:
        sockets = self.per_user.get(client.user.name)
        if sockets is not None:
            sockets.discard(client)
            if not sockets:
                del self.per_user[client.user.name]

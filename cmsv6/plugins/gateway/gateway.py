"""The gateway's state: who is online, the writer, downlink commands, media files.

One session per terminal: a new authenticated connection for a phone replaces the old one.
Downlink commands are framed in the version of the device's live session (and take the
body given for that version), retransmitted per JT/T 808 §6.1
(``cmsv6.protocols.jt808.retransmit``) and matched to the reply by serial number; the
reply goes back as its message id, version and raw body bytes, for the caller to decode.
Failures are the cluster's declared errors (``cmsv6.rpc.commands``).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attrs import define, field
from twisted.internet import defer, threads
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from cmsv6.db import devices as device_store
from cmsv6.db import media as media_store
from cmsv6.db.service import Database
from cmsv6.plugins.gateway.session import DeviceSession
from cmsv6.plugins.gateway.writer import PositionWriter
from cmsv6.protocols.jt808.header import Header
from cmsv6.protocols.jt808.messages.multimedia import MultimediaData, MultimediaUploadResponse
from cmsv6.protocols.jt808.retransmit import Retransmission
from cmsv6.phone import canonical_phone
from cmsv6.rpc.commands import CommandTimeout, DeviceOffline, Unavailable
from cmsv6.terminal.limits import Limits
from cmsv6.terminal.registration import Registrar, RegistrationPolicy

_log = Logger()


@define
class PendingCommand:
    msg_id: int
    frames: list[bytes]
    deferred: defer.Deferred[dict[str, Any]]
    retransmission: Retransmission
    timer: IDelayedCall | None = field(default=None)


#: Commands whose answer is a list that some devices send only after a general response
#: (0x9205 → 0x1205); the pending command waits for the list.
LISTED_AFTER_ACK = {0x9205: 0x1205}


class SessionLog:
    """Sessions recorded as they open, several to a statement: one statement at a time,
    and the sessions opened meanwhile go together in the next. A device alone is recorded
    at once; a reconnect storm of 19,000 is a few dozen commits instead of 19,000, which
    otherwise queue with the positions' for the same disk."""

    #: Sessions in one statement at most.
    MAX_BATCH = 1000

    def __init__(self, db: Database, gateway_id: str, gateway_address: str) -> None:
        self.db = db
        self.gateway_id = gateway_id
        self.gateway_address = gateway_address
        self._waiting: list[tuple[tuple[int, str, datetime], defer.Deferred[int]]] = []
        self._running = False
        #: Statements run (the tests' and the curious' count).
        self.statements = 0

    def open(self, device_id: int, device_address: str, connected: datetime) -> defer.Deferred[int]:
        """Record a session; fires with its id once committed."""
        d: defer.Deferred[int] = defer.Deferred()
        self._waiting.append(((device_id, device_address, connected), d))
        if not self._running:
            self._next()
        return d

    def _next(self, _: object = None) -> None:
        batch = self._waiting[: self.MAX_BATCH]
        del self._waiting[: self.MAX_BATCH]
        self._running = bool(batch)
        if not batch:
            return
        self.statements += 1
        q = device_store.open_sessions(self.db, self.gateway_id, self.gateway_address,
                                       [opened for opened, _ in batch])  # fmt: skip

        def stored(ids: list[int]) -> None:
            for (_, d), session_id in zip(batch, ids):
                d.callback(session_id)

        def failed(f: Any) -> None:
            for _, d in batch:
                d.errback(f)

        q.addCallbacks(stored, failed).addBoth(self._next)


class Gateway:
    #: Commands awaiting a device's reply at most, per device.
    MAX_PENDING_COMMANDS = 32

    def __init__(
        self,
        db: Database,
        clock: IReactorTime,
        gateway_id: str,
        public_address: str,
        open_registration: bool = False,
        idle_timeout: float = 180.0,
        media_dir: str | Path = "var/media",
        writer: PositionWriter | None = None,
        registration: RegistrationPolicy | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.db = db
        #: Connections, and what a device gets before it authenticates.
        self.limits = limits or Limits()
        self.clock = clock
        self.id = gateway_id
        self.public_address = public_address
        self.open_registration = open_registration
        #: Who may register and how often (rate tables shared by its sessions).
        self.registrar = Registrar(registration or RegistrationPolicy(), clock)
        self.idle_timeout = idle_timeout
        self.media_dir = Path(media_dir)
        self.writer = writer or PositionWriter(db, clock)
        self.writer.on_pressure = self._pressure
        self.sessions: dict[str, DeviceSession] = {}
        self.connections: set[DeviceSession] = set()
        self.session_log = SessionLog(db, gateway_id, public_address)
        self.counters: Counter[str] = Counter()
        #: Called with (phone, online) when a device comes or goes (login's directory).
        self.listeners: list[Any] = []
        #: Set by ``stop``: sessions are recorded closed all at once, not one by one.
        self.stopping = False
        self._status_at = clock.seconds()
        self._status_written = 0
        self._status_batches = 0
        self._status_write_seconds = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    # -- connections and sessions --------------------------------------------------------

    def connected(self, session: DeviceSession) -> None:
        self.connections.add(session)
        self.count("connections")

    def attach(self, session: DeviceSession) -> defer.Deferred[None]:
        """An authenticated session: replace any other for the same phone, record it."""
        assert session.device is not None and session.phone is not None
        old = self.sessions.get(session.phone)
        if old is not None and old is not session:
            self.count("replaced")
            _log.info("{phone}: new connection from {peer} replaces {old}", phone=session.phone,
                      peer=session.link.peer, old=old.link.peer)
            old.link.close()
            old.connection_lost("replaced by a new connection")
        self.sessions[session.phone] = session
        if self.writer.pressure:  # it reports from now on: hold it like the others
            session.link.pause()
        d = self.session_log.open(session.device.id, session.link.peer, self.now())

        def opened(session_id: int) -> None:
            session.session_id = session_id
            if session.disconnected:  # it went away while we were writing
                device_store.close_session(self.db, session_id, self.now(), "closed").addErrback(
                    lambda f: None
                )
            for listener in self.listeners:
                listener(session.phone, True)

        def failed(f: Any) -> None:
            self.count("db_errors")
            _log.warn("{phone}: session not recorded: {error}", phone=session.phone,
                      error=f.getErrorMessage())

        return d.addCallbacks(opened, failed)

    def detach(self, session: DeviceSession, reason: str) -> None:
        self.connections.discard(session)
        for serial in list(session.pending):
            self._finish(session, serial, DeviceOffline(f"{session.phone} disconnected"))
        if session.phone is not None and self.sessions.get(session.phone) is session:
            del self.sessions[session.phone]
            for listener in self.listeners:
                listener(session.phone, False)
        if session.session_id is not None and not self.stopping:
            device_store.close_session(self.db, session.session_id, self.now(), reason).addErrback(
                lambda f: _log.warn("session {id} not closed: {e}", id=session.session_id,
                                    e=f.getErrorMessage())
            )

    #: Seconds ``stop`` waits for the database to record the sessions closed.
    STOP_TIMEOUT = 5.0

    def stop(self, reason: str = "gateway stopped") -> defer.Deferred[None]:
        """Close every device connection and record this gateway's sessions closed with
        ``reason``, in one statement (the database must still answer: stop it after). Fires
        once that is written; a failure is logged, and the next start closes them."""
        self.stopping = True
        for session in list(self.connections):
            session.close()
            session.connection_lost(reason)  # its commands fail now, not at the reactor's end
        d = device_store.close_gateway_sessions(self.db, self.id, self.now(), reason)
        d.addTimeout(self.STOP_TIMEOUT, self.clock)

        def failed(f: Any) -> None:
            _log.warn("sessions of {id} not recorded closed ({error}); the next start closes"
                      " them", id=self.id, error=f.getErrorMessage() or f.type.__name__)

        return d.addCallbacks(lambda _: None, failed)

    def tick(self) -> None:
        """Every few seconds: close idle sessions, sub-package housekeeping, and a status
        line every ``STATUS_EVERY`` seconds."""
        now = self.clock.seconds()
        if now - self._status_at >= self.STATUS_EVERY:
            self._status(now)
        for session in list(self.connections):
            if now - session.last_seen > self.idle_timeout:
                self.count("idle_closed")
                _log.info("{peer}: idle for {s:.0f} s; closing", peer=session.link.peer,
                          s=now - session.last_seen)
                session.link.close()
                session.connection_lost("idle timeout")
            else:
                session.tick(now)

    STATUS_EVERY = 10.0

    def _status(self, now: float) -> None:
        w = self.writer
        elapsed = now - self._status_at
        written = w.written - self._status_written
        batches = w.batches - self._status_batches
        _log.info(
            "{sessions} devices online ({connections} connections); {pending} reports waiting;"
            " {rate:.0f} stored/s in {batches} batches (avg {size:.0f} rows, {ms:.0f} ms);"
            " pressure {pressure}",
            sessions=len(self.sessions), connections=len(self.connections), pending=w.pending,
            rate=written / elapsed if elapsed else 0, batches=batches,
            size=written / batches if batches else 0, pressure="on" if w.pressure else "off",
            ms=1000 * (w.write_seconds - self._status_write_seconds) / batches if batches else 0,
        )  # fmt: skip
        self._status_at = now
        self._status_written = w.written
        self._status_batches = w.batches
        self._status_write_seconds = w.write_seconds

    def _pressure(self, on: bool) -> None:
        """Stop (or resume) reading from authenticated devices: they are the ones reporting.
        Devices still registering go on, so a reconnect storm drains while the database
        catches up."""
        for session in self.sessions.values():
            if on:
                session.link.pause()
            else:
                session.link.resume()

    # -- downlink commands ---------------------------------------------------------------

    def send_command(
        self, phone: str, msg_id: int, body: bytes, timeout: float = 10.0, retries: int = 3,
        body_2019: bytes | None = None,
    ) -> defer.Deferred[dict[str, Any]]:
        """Send a platform message and fire with the device's reply ``{"msg_id", "version",
        "body"}`` (the body as the bytes it came in).

        ``body`` is sent to a 2011/2013 session, ``body_2019`` (default ``body``) to a 2019
        one. Errbacks with DeviceOffline, Unavailable (too many commands waiting) or
        CommandTimeout (after ``retries`` retransmissions).
        """
        session = self.sessions.get(canonical_phone(phone))
        if session is None or not session.authenticated:
            return defer.fail(DeviceOffline(f"{phone} is not online on {self.id}"))
        if len(session.pending) >= self.MAX_PENDING_COMMANDS:
            return defer.fail(Unavailable(
                f"{phone} already has {len(session.pending)} commands awaiting replies"
            ))
        version = session.header.version if session.header is not None else 2013
        data = body_2019 if version == 2019 and body_2019 is not None else body
        serial, frames = session.send_raw(msg_id, data)
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        command = PendingCommand(msg_id, frames, d, Retransmission(timeout, retries))
        session.pending[serial] = command
        command.timer = self.clock.callLater(timeout, self._retransmit, session, serial)
        self.count("commands")
        return d

    def _retransmit(self, session: DeviceSession, serial: int) -> None:
        command = session.pending.get(serial)
        if command is None:
            return
        command.timer = None
        if session.closed or not command.retransmission.again():
            self.count("command_timeouts")
            self._finish(session, serial, CommandTimeout(
                f"no reply to 0x{command.msg_id:04x} from {session.phone} after "
                f"{command.retransmission.attempts + 1} sends"
            ))
            return
        for frame in command.frames:
            session.link.send(frame)
        command.timer = self.clock.callLater(
            command.retransmission.wait, self._retransmit, session, serial
        )

    def command_replied(self, session: DeviceSession, serial: int, h: Header, body: bytes) -> None:
        """The device answered our command ``serial`` with message ``h``, body ``body``.

        A command answered with a list (``LISTED_AFTER_ACK``) that a device first
        acknowledges (0x0001, result 0) stays pending for the list, one retransmission
        wait more, sending nothing again; without it, the acknowledgement is the answer."""
        reply = {"msg_id": h.msg_id, "version": h.version, "body": body}
        command = session.pending.get(serial)
        if (
            command is not None
            and h.msg_id == 0x0001
            and command.msg_id in LISTED_AFTER_ACK
            and len(body) >= 5
            and body[4] == 0
        ):
            if command.timer is not None and command.timer.active():
                command.timer.cancel()
            command.timer = self.clock.callLater(command.retransmission.wait, self._finish,
                                                 session, serial, reply)  # fmt: skip
            return
        self._finish(session, serial, reply)

    def _finish(self, session: DeviceSession, serial: int, result: Any) -> None:
        command = session.pending.pop(serial, None)
        if command is None:
            return
        if command.timer is not None and command.timer.active():
            command.timer.cancel()
        if isinstance(result, Exception):
            command.deferred.errback(result)
        else:
            command.deferred.callback(result)

    # -- multimedia ----------------------------------------------------------------------

    def store_media(self, session: DeviceSession, body: MultimediaData) -> defer.Deferred[None]:
        """Write a 0x0801 upload to a file and record it."""
        assert session.device is not None
        received = self.now()
        ext = {0: "jpg", 1: "tif", 2: "mp3", 3: "wav", 4: "wmv"}.get(body.media_format, "bin")
        directory = self.media_dir / session.phone / received.strftime("%Y%m%d")  # type: ignore[operator]
        stem = f"{received:%H%M%S}-{body.media_id}-{body.channel}"

        def write() -> Path:
            directory.mkdir(parents=True, exist_ok=True)
            return write_new_file(directory, stem, ext, body.data)

        d = threads.deferToThread(write)
        d.addCallback(
            lambda path: media_store.record_file(
                self.db, session.device.id, body, str(path), received  # type: ignore[union-attr]
            )
        )
        self.count("media_files")
        return d

    def media_ack(self, body: MultimediaData) -> MultimediaUploadResponse:
        return MultimediaUploadResponse(body.media_id, ())


#: Files of one name a directory may hold before an upload is refused (a unit that reuses
#: its media ids within one second, many times over, is broken or hostile).
MAX_SAME_NAME = 100


def write_new_file(directory: Path, stem: str, ext: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/stem.ext`` or, if that exists, ``stem-1.ext``, … and
    return the path: a file is never replaced (two uploads with one media id and channel
    in one second are two files). Written under a temporary name, then linked into place,
    so a reader never sees half a file."""
    tmp = directory / f".{stem}.{os.getpid()}.{threading.get_ident()}.part"
    tmp.write_bytes(data)
    try:
        for n in range(MAX_SAME_NAME):
            path = directory / (f"{stem}.{ext}" if n == 0 else f"{stem}-{n}.{ext}")
            try:
                os.link(tmp, path)  # fails, rather than replaces, if the name is taken
            except FileExistsError:
                continue
            return path
        raise OSError(f"{MAX_SAME_NAME} files named {stem}.{ext} in {directory} already")
    finally:
        tmp.unlink()

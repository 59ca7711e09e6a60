"""The Open API (JSON over HTTP): login, devices, positions, alarms, commands, live video,
the photos and files devices upload, and the audit log (admins). docs/api.md describes it
for its users; ``cmsv6.web.openapi`` is its OpenAPI document.

Times are ISO 8601; a time without an offset is taken as UTC; times in answers are UTC.
Lists that can be long are paged: an answer's ``next`` is passed back as ``after`` (or, for
plain lists, a ``Link: <...>; rel="next"`` header names the next page). Message and
parameter ids are written "0x0001" in answers and taken as "0x0001" or a number in requests.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from twisted.logger import Logger
from twisted.web import server

from cmsv6.db import alarms as alarm_store
from cmsv6.db import audit as audit_store
from cmsv6.db import commands as command_store
from cmsv6.db import devices as device_store
from cmsv6.db import media as media_store
from cmsv6.db import positions as position_store
from cmsv6.db.alarms import ALARM_STATES, Alarm
from cmsv6.db.audit import AuditEntry
from cmsv6.db.devices import Device
from cmsv6.db.media import MediaFile
from cmsv6.db.positions import Position
from cmsv6.db.users import User
from cmsv6.db.service import Database
from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.jsonable import jsonable
from cmsv6.phone import canonical_phone, valid_phone
from cmsv6.rpc.commands import (
    MAX_COMMAND_TIMEOUT,
    BadRequest,
    CommandTimeout,
    DeviceOffline,
    Unavailable,
)
from cmsv6.web.auth import Authenticator, bearer_token
from cmsv6.web.cluster import Cluster
from cmsv6.web.commands import BadCommand, channel_of, encode_command, needs_control
from cmsv6.web.openapi import DOCUMENT
from cmsv6.web.routing import (
    ApiError,
    FileResponse,
    Route,
    bad_request,
    json_body,
    not_found,
    query_arg,
)

_log = Logger()

#: The earliest and latest times a query can name (PostgreSQL and Python both hold them).
_FAR_PAST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=timezone.utc)


# -- JSON shapes ---------------------------------------------------------------------------


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat()


def _cursor_time(t: datetime) -> str:
    # "Z" rather than "+00:00": a "+" in a query string that is not escaped reads as a space.
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def position_json(p: Position) -> dict[str, Any]:
    out = {
        "time": iso(p.time), "received": iso(p.received), "latitude": p.latitude,
        "longitude": p.longitude, "altitude": p.altitude, "speed": p.speed,
        "direction": p.direction, "alarm": p.alarm, "status": p.status,
        "extras": json.loads(p.extras) if p.extras is not None else None,
    }  # fmt: skip
    if p.blind is not None:
        out["blind"] = p.blind
    return out


def device_json(d: Device, gateway: str | None) -> dict[str, Any]:
    return {
        "phone": d.phone, "plate": d.plate, "fleet": d.fleet, "online": gateway is not None,
        "gateway": gateway, "protocol": d.protocol, "channels": d.channels,
        "last_position": position_json(d.last_position) if d.last_position else None,
        "disabled": iso(d.disabled) if d.disabled else None,
    }  # fmt: skip


#: 0x0801 multimedia formats: their content types and the gateway's file name extensions.
CONTENT_TYPES = {0: "image/jpeg", 1: "image/tiff", 2: "audio/mpeg", 3: "audio/wav",
                 4: "video/x-ms-wmv"}  # fmt: skip
EXTENSIONS = {0: "jpg", 1: "tif", 2: "mp3", 3: "wav", 4: "wmv"}


def media_json(m: MediaFile) -> dict[str, Any]:
    return {
        "id": m.id, "phone": m.phone, "media_id": m.media_id, "media_type": m.media_type,
        "format": m.format, "content_type": CONTENT_TYPES.get(m.format, "application/octet-stream"),
        "event": m.event, "channel": m.channel, "time": iso(m.time), "latitude": m.latitude,
        "longitude": m.longitude, "size": m.size, "received": iso(m.received),
        "url": f"/api/v1/media/{m.id}",
    }  # fmt: skip


def audit_json(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "time": iso(e.time), "user": e.user, "action": e.action,
            "details": e.details}  # fmt: skip


def alarm_json(a: Alarm) -> dict[str, Any]:
    return {
        "id": a.id, "phone": a.phone, "kind": a.kind, "started": iso(a.started),
        "ended": iso(a.ended), "latitude": a.latitude, "longitude": a.longitude,
        "details": a.details, "state": a.state, "handled": iso(a.handled),
        "handled_by": a.handled_by, "note": a.note,
    }  # fmt: skip


# -- arguments -----------------------------------------------------------------------------


def parse_time(text: str, name: str) -> datetime:
    candidates = [text]
    if " " in text:  # an unescaped "+" of an offset arrives as a space
        head, _, tail = text.rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        try:
            t = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        if not _FAR_PAST <= t <= _FAR_FUTURE:
            raise bad_request(f"{name} is out of range")
        return t
    raise bad_request(f"{name} is not an ISO 8601 time: {text!r}")


def _limit(request: server.Request, default: int, maximum: int) -> int:
    text = query_arg(request, "limit")
    if text is None:
        return default
    try:
        limit = int(text)
    except ValueError:
        raise bad_request("limit must be an integer") from None
    if not 1 <= limit <= maximum:
        raise bad_request(f"limit must be between 1 and {maximum}")
    return limit


def _row_id(text: str | None) -> int | None:
    """A row id from a path or query (a positive BIGINT), or None if it is not one."""
    if text is None or not text.isdigit() or len(text) > 19:
        return None
    ident = int(text)
    return ident if 0 < ident < 2**63 else None


def _text_arg(request: server.Request, name: str, longest: int = 64) -> str | None:
    text = query_arg(request, name)
    if text is not None and not 1 <= len(text) <= longest:
        raise bad_request(f"{name} must be 1 to {longest} characters")
    return text


def _phone(phone: str) -> str:
    if not valid_phone(phone):
        raise not_found("no such device")
    return canonical_phone(phone)


class Api:
    """The handlers of the Open API, and their routes."""

    def __init__(
        self,
        db: Database,
        cluster: Cluster,
        auth: Authenticator,
        clock: Any,
        command_timeout: float = 10.0,
        max_page: int = 1000,
        control_role: str = "admin",
        media_dir: str | Path = "var/media",
    ) -> None:
        self.db = db
        self.cluster = cluster
        self.auth = auth
        self.clock = clock
        self.command_timeout = command_timeout
        self.max_page = max_page
        #: The least role that may send commands that can take a device off the platform.
        self.control_role = control_role
        #: Where the gateways write uploaded files (their ``media_dir``): only files in it
        #: are served, whatever a row's path says.
        self.media_dir = Path(media_dir)

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/openapi.json", self.openapi),
            Route("POST", "/api/v1/login", self.login),
            Route("POST", "/api/v1/logout", self.logout),
            Route("GET", "/api/v1/me", self.me),
            Route("GET", "/api/v1/devices", self.devices),
            Route("GET", "/api/v1/devices/{phone}", self.device),
            Route("GET", "/api/v1/devices/{phone}/positions", self.positions),
            Route("GET", "/api/v1/devices/{phone}/media", self.media),
            Route("GET", "/api/v1/media/{file_id}", self.media_file),
            Route("POST", "/api/v1/devices/{phone}/commands", self.command),
            Route("POST", "/api/v1/devices/{phone}/live", self.live),
            Route("GET", "/api/v1/alarms", self.alarms),
            Route("POST", "/api/v1/alarms/{alarm_id}", self.handle_alarm),
            Route("GET", "/api/v1/audit", self.audit),
        ]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    async def _device(self, user: User, phone: str) -> Device:
        device: Device | None = await device_store.get_device(self.db, user, _phone(phone))
        if device is None:
            raise not_found("no such device")
        return device

    def _online(self) -> dict[str, str]:
        return {canonical_phone(p): g for p, g in self.cluster.online().items()}

    # -- handlers --------------------------------------------------------------------------

    async def openapi(self, request: server.Request) -> Any:
        return DOCUMENT

    async def login(self, request: server.Request) -> Any:
        body = json_body(request)
        name, password = body.get("username"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            raise bad_request("username and password are required strings")
        if not 1 <= len(name) <= 64 or len(password) > 1024:
            raise ApiError(401, "bad_credentials", "wrong user name or password")
        peer = request.getClientAddress()
        session = await self.auth.login(name, password, str(getattr(peer, "host", peer)))
        return {
            "token": session.token,
            "expires": iso(session.expires),
            "user": {"name": session.user.name, "role": session.user.role},
            "media": {"web": self.cluster.media_server()},
        }

    async def logout(self, request: server.Request) -> Any:
        await self.auth.user(request)
        await self.auth.logout(bearer_token(request))
        return {}

    async def me(self, request: server.Request) -> Any:
        user = await self.auth.user(request)
        return {"name": user.name, "role": user.role}

    async def devices(self, request: server.Request) -> Any:
        """A page of the user's devices, by phone. The answer stays a list; when there may
        be more, a ``Link: <...>; rel="next"`` header names the next page."""
        user = await self.auth.user(request)
        limit = _limit(request, self.max_page, self.max_page)
        after = query_arg(request, "after") or ""
        if len(after) > 20:
            raise bad_request("after is not a phone from a previous answer")
        rows = await device_store.list_devices(self.db, user, limit, after)
        if len(rows) == limit:
            query = urlencode({"after": rows[-1].phone, "limit": limit})
            request.setHeader(b"link", f'</api/v1/devices?{query}>; rel="next"'.encode())
        online = self._online()
        return [device_json(d, online.get(d.phone)) for d in rows]

    async def device(self, request: server.Request, phone: str) -> Any:
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        return device_json(d, self.cluster.device_gateway(d.phone))

    async def positions(self, request: server.Request, phone: str) -> Any:
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        start, end = self._range(request)
        limit = _limit(request, 100, self.max_page)
        after: tuple[datetime, bytes | None] | None = None
        cursor = query_arg(request, "after")
        if cursor:
            t, _, digest = cursor.partition("~")
            try:
                after = (parse_time(t, "after"), bytes.fromhex(digest) if digest else None)
            except ValueError:
                raise bad_request("after is not a cursor from a previous answer") from None
        rows = await position_store.positions(self.db, d.id, start, end, limit, after)
        nxt = None
        if len(rows) == limit:
            last = rows[-1]
            nxt = f"{_cursor_time(last.time)}~{(last.digest or b'').hex()}"
        return {"phone": d.phone, "positions": [position_json(p) for p in rows], "next": nxt}

    def _range(self, request: server.Request, day: bool = True) -> tuple[datetime, datetime]:
        """``from`` (default: a day ago, or with ``day`` False no start) and ``to``
        (default: no end)."""
        start_text, end_text = query_arg(request, "from"), query_arg(request, "to")
        end = parse_time(end_text, "to") if end_text else _FAR_FUTURE
        if start_text:
            start = parse_time(start_text, "from")
        else:
            start = min(end, self.now()) - timedelta(days=1) if day else _FAR_PAST
        if start > end:
            raise bad_request("from is after to")
        return start, end

    async def alarms(self, request: server.Request) -> Any:
        """Alarms that started in [from, to); ``from`` defaults to a day ago, but with a
        ``state`` to no start: the alarms still new are wanted however old they are."""
        user = await self.auth.user(request)
        state = query_arg(request, "state")
        if state is not None and state not in ALARM_STATES:
            raise bad_request(f"state must be one of {', '.join(ALARM_STATES)}")
        start, end = self._range(request, day=state is None)
        limit = _limit(request, 100, self.max_page)
        device_id = None
        phone = query_arg(request, "device")
        if phone:
            device_id = (await self._device(user, phone)).id
        after: tuple[datetime, int] | None = None
        cursor = query_arg(request, "after")
        if cursor:
            t, _, ident = cursor.partition("~")
            try:
                after = (parse_time(t, "after"), int(ident))
            except ValueError:
                raise bad_request("after is not a cursor from a previous answer") from None
            if not 0 <= after[1] < 2**63:  # a BIGINT, else the database refuses it: a 500
                raise bad_request("after is not a cursor from a previous answer")
        rows = await alarm_store.alarms(self.db, user, start, end, limit, device_id, state, after)
        nxt = None
        if len(rows) == limit:
            nxt = f"{_cursor_time(rows[-1].started)}~{rows[-1].id}"
        return {"alarms": [alarm_json(a) for a in rows], "next": nxt}

    async def media(self, request: server.Request, phone: str) -> Any:
        """A page of the files a device uploaded, newest first. The answer is a list; when
        there may be more, a ``Link: <...>; rel="next"`` header names the next page."""
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        limit = _limit(request, min(100, self.max_page), self.max_page)
        after_text = query_arg(request, "after")
        before = _row_id(after_text)
        if after_text is not None and before is None:
            raise bad_request("after is not a media id from a previous answer")
        rows = await media_store.list_media(self.db, user, d.id, limit, before)
        if len(rows) == limit:
            query = urlencode({"after": rows[-1].id, "limit": limit})
            request.setHeader(b"link",
                              f'</api/v1/devices/{d.phone}/media?{query}>; rel="next"'.encode())
        return [media_json(m) for m in rows]

    async def media_file(self, request: server.Request, file_id: str) -> Any:
        """The file itself, streamed; 404 alike for no such file, another fleet's, and a
        file that is gone from the disk or not in the media directory."""
        user = await self.auth.user(request)
        ident = _row_id(file_id)
        m = await media_store.get_media(self.db, user, ident) if ident is not None else None
        if m is None:
            raise not_found("no such media file")
        f = self._open_media(m)
        if f is None:
            raise not_found(f"the file of media {m.id} is not on this server")
        length = os.fstat(f.fileno()).st_size
        name = f"{m.phone}-{m.media_id}-{m.channel}.{EXTENSIONS.get(m.format, 'bin')}"
        content_type = CONTENT_TYPES.get(m.format, "application/octet-stream")
        return FileResponse(f, content_type, length, name)

    def _open_media(self, m: MediaFile) -> Any:
        """The row's file, open for reading, if it is a regular file inside the media
        directory (after following any link); else None, and a row that points elsewhere
        is logged: the database is not trusted to name any file on this machine."""
        root = self.media_dir.resolve()
        path = Path(m.path)
        try:
            real = path.resolve() if path.is_absolute() else (Path.cwd() / path).resolve()
        except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL in the path
            return None
        if not real.is_relative_to(root):
            _log.warn("media {id}: {path} is not in the media directory {root}; not served",
                      id=m.id, path=m.path, root=str(root))
            return None
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as e:
            _log.warn("media {id}: {path} cannot be read: {e}", id=m.id, path=m.path, e=str(e))
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")

    async def audit(self, request: server.Request) -> Any:
        """The audit log, newest first (admins only)."""
        user = await self.auth.user(request)
        if not user.admin:
            raise ApiError(403, "forbidden", "the audit log is for admins only")
        start, end = self._range(request, day=False)
        limit = _limit(request, 100, self.max_page)
        name = _text_arg(request, "user")
        action = _text_arg(request, "action")
        phone = query_arg(request, "device")
        if phone is not None:
            if not valid_phone(phone):
                raise bad_request("device must be a phone number (1 to 20 digits)")
            phone = canonical_phone(phone)
        after: tuple[datetime, int] | None = None
        cursor = query_arg(request, "after")
        if cursor:
            t, _, ident = cursor.partition("~")
            try:
                after = (parse_time(t, "after"), int(ident))
            except (ApiError, ValueError):
                raise bad_request("after is not a cursor from a previous answer") from None
            if not 0 <= after[1] < 2**63:
                raise bad_request("after is not a cursor from a previous answer")
        rows = await audit_store.entries(self.db, start, end, limit, name, phone, action, after)
        nxt = None
        if len(rows) == limit:
            nxt = f"{_cursor_time(rows[-1].time)}~{rows[-1].id}"
        return {"audit": [audit_json(e) for e in rows], "next": nxt}

    async def handle_alarm(self, request: server.Request, alarm_id: str) -> Any:
        user = await self.auth.user(request)
        try:
            ident = int(alarm_id)
        except ValueError:
            raise not_found("no such alarm") from None
        if not 0 < ident < 2**63:
            raise not_found("no such alarm")
        body = json_body(request)
        state = body.get("state")
        if state not in ALARM_STATES[1:]:
            raise bad_request(f"state must be one of {', '.join(ALARM_STATES[1:])}")
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 2000):
            raise bad_request("note must be a string of at most 2000 characters")
        alarm = await alarm_store.handle_alarm(self.db, user, ident, state, note, self.now())
        if alarm is None:
            raise not_found("no such alarm")
        return alarm_json(alarm)

    async def command(self, request: server.Request, phone: str) -> Any:
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        command = json_body(request)
        # Encoded for both versions: the gateway sends the one of the device's live session
        # (the version in the database is only the one it registered with).
        try:
            encoded = encode_command(command, 2013)
            encoded_2019 = encode_command(command, 2019)
        except BadCommand as e:
            raise bad_request(str(e), "bad_command") from None
        channel = channel_of(encoded)
        if channel is not None:
            _check_channel(d, channel)
        timeout = command.get("timeout", self.command_timeout)
        if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                or not 1 <= timeout <= MAX_COMMAND_TIMEOUT):
            raise bad_request(f"timeout must be between 1 and {MAX_COMMAND_TIMEOUT:g} seconds",
                              "bad_command")  # fmt: skip
        await self._may_control(user, d, encoded)
        command_id = await command_store.start_command(
            self.db, user, d.id, d.phone, encoded.msg_id, command, self.now()
        )
        try:
            reply = await self.cluster.send_to_device(
                d.phone, encoded.msg_id, encoded.body, float(timeout),
                body_2019=encoded_2019.body, by=user.name, command=command_id,
            )  # the gateway marks this row sent rather than adding its own
        except DeviceOffline:
            await self._finish(command_id, "offline", None)
            raise ApiError(409, "device_offline", f"device {d.phone} is offline") from None
        except CommandTimeout:
            await self._finish(command_id, "timeout", None)
            raise ApiError(504, "timeout", f"device {d.phone} did not answer") from None
        except BadRequest as e:
            await self._finish(command_id, "failed", {"error": str(e)})
            raise bad_request(f"the gateway refused the command: {e}", "bad_command") from None
        except Unavailable as e:
            await self._finish(command_id, "failed", {"error": str(e)})
            raise ApiError(503, "unavailable", "the device's gateway is unavailable") from None
        except Exception as e:
            _log.failure("command {id} to {phone} failed", id=command_id, phone=d.phone)
            await self._finish(command_id, "failed", {"error": str(e)})
            raise ApiError(502, "failed", "the command could not be sent") from None
        out = reply_json(reply)
        await self._finish(command_id, "replied", out)
        return {"command": command_id, "status": "replied", "reply": out}

    async def _may_control(self, user: User, d: Device, encoded: Any) -> None:
        """ApiError 403 (audited) if the command can take the device off the platform and
        the user's role may not send such commands."""
        reason = needs_control(encoded)
        if reason is None or user.admin or self.control_role == "operator":
            return
        _log.warn("{user} may not send {reason} to {phone}", user=user.name, reason=reason,
                  phone=d.phone)  # fmt: skip
        await command_store.refuse_command(self.db, user, d.phone, encoded.msg_id, reason,
                                           self.now())  # fmt: skip
        raise ApiError(403, "forbidden",
                       f"{reason} can take the device off the platform: admins only")

    async def _finish(self, command_id: int, status: str, reply: Any) -> None:
        """Record a command's outcome; the client gets its answer even if this fails."""
        try:
            await command_store.finish_command(self.db, command_id, status, reply, self.now())
        except Exception:  # noqa: BLE001 - the outcome is logged; the answer still goes out
            _log.failure("command {id}: outcome {status} not recorded", id=command_id,
                         status=status)

    async def live(self, request: server.Request, phone: str) -> Any:
        """Where to watch a live stream of a device the user sees: a media server (the one
        the stream goes to already, else the least loaded) and URLs carrying a short-lived
        viewing token for exactly that phone, channel and stream on it."""
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        body = json_body(request)
        channel = body.get("channel", 1)
        if isinstance(channel, bool) or not isinstance(channel, int) or not 1 <= channel <= 64:
            raise bad_request("channel must be an integer from 1 to 64")
        _check_channel(d, channel)
        stream = body.get("stream", "main")
        if stream not in ("main", "sub"):
            raise bad_request('stream must be "main" or "sub"')
        view = self.cluster.live_view(d.phone, channel, stream)
        if view is None:
            raise ApiError(503, "media_unavailable", "no media server is available")
        if self.cluster.device_gateway(d.phone) is None:
            raise ApiError(409, "device_offline", f"device {d.phone} is offline")
        base = view.public_web.rstrip("/")
        path = f"/live/{d.phone}/{channel}.flv?" + urlencode({"stream": stream, "token": view.token})
        ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
        # From login's memory of the device's 0x1003 (asked when a stream opens), never
        # asked here: null until the device has said.
        codec, audio = self.cluster.live_codecs(d.phone)
        return {
            "ws_flv": ws_base + path,
            "http_flv": base + path,
            "codec": codec,
            "audio": audio,
            "expires": iso(datetime.fromtimestamp(view.expires, timezone.utc)),
        }


def _check_channel(d: Device, channel: int) -> None:
    """400 bad_channel unless ``channel`` is one of the device's (1 to its ``channels``)."""
    if d.channels < 1:
        raise bad_request(f"device {d.phone} has no video channels", "bad_channel")
    if not 1 <= channel <= d.channels:
        raise bad_request(f"channel {channel} is not one of device {d.phone}'s channels"
                          f" (1 to {d.channels})", "bad_channel")  # fmt: skip


def reply_json(reply: dict[str, Any]) -> dict[str, Any]:
    """A device's reply as JSON: its message id, version and body, decoded here, once, from
    the bytes the device sent (message and parameter ids as "0x0001"); a body that does not
    decode is given as its hex and the error."""
    msg_id, version, body = reply["msg_id"], reply["version"], reply["body"]
    try:
        decoded = jsonable(decode_body(msg_id, body, version))
    except CodecError as e:
        decoded = {"hex": body.hex(), "error": str(e)}
    return {"msg_id": f"0x{msg_id:04x}", "version": version, "body": decoded}


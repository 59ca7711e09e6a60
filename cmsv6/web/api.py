"""The Open API (JSON over HTTP): login, devices, positions, alarms, commands, live video,
the recordings on a device and their playback, talk-back, PTZ and audio/video control,
the photos and files devices upload, and the audit log (admins). docs/api.md describes it
for its users; ``cmsv6.web.openapi`` is its OpenAPI document.

Times are ISO 8601; a time without an offset is taken as UTC; times in answers are UTC,
but for what a device's recordings say: the device keeps them in its own +08:00 (JT/T
1078 BCD times carry no zone), and they are answered so, the offset explicit.
Lists that can be long are paged: an answer's ``next`` is passed back as ``after`` (or, for
plain lists, a ``Link: <...>; rel="next"`` header names the next page). Message and
parameter ids are written "0x0001" in answers and taken as "0x0001" or a number in requests.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from twisted.logger import Logger
from twisted.web import server

from cmsv6.db import alarms as alarm_store
from cmsv6.db import audit as audit_store
from cmsv6.db import commands as command_store
from cmsv6.db import devices as device_store
from cmsv6.db import media as media_store
from cmsv6.db import positions as position_store
from cmsv6.db import webhooks as webhook_store
from cmsv6.db.alarms import ALARM_STATES, Alarm
from cmsv6.db.audit import AuditEntry
from cmsv6.db.devices import Device
from cmsv6.db.media import MediaFile
from cmsv6.db.positions import Position
from cmsv6.db.users import User
from cmsv6.db.webhooks import Webhook
from cmsv6.db.service import Database
from cmsv6.plugins.gateway.alarms import ALARM_BITS, VIDEO_ALARM_BITS
from cmsv6.protocols.jt808.codec import decode_body
from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.jsonable import jsonable
from cmsv6.protocols.jt808.messages.jt1078 import AvAttributes, Resource, ResourceList
from cmsv6.phone import canonical_phone, valid_phone
from cmsv6.rpc.commands import (
    AUDIO_CODECS,
    MAX_COMMAND_TIMEOUT,
    PLAYBACK_ACTIONS,
    PLAYBACK_MODES,
    PLAYBACK_SPEEDS,
    VIDEO_CODECS,
    BadRequest,
    CommandTimeout,
    DeviceOffline,
    DeviceRefused,
    NoSuchPlayback,
    Unavailable,
    codec_label,
)
from cmsv6.rpc.replies import accepted
from cmsv6.webhooks import EVENTS
from cmsv6.web.auth import Authenticator, bearer_token
from cmsv6.web.cluster import Cluster, LiveView
from cmsv6.web.commands import (
    RECORD_MEDIA,
    RECORD_STORAGE,
    RECORD_STREAMS,
    BadCommand,
    Encoded,
    channel_of,
    encode_command,
    needs_control,
)
from cmsv6.web.openapi import DOCUMENT
from cmsv6.web.playback import PlaybackSessions
from cmsv6.web.routing import (
    ApiError,
    FileResponse,
    Response,
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


def track_geojson(phone: str, positions: list[dict[str, Any]], nxt: str | None) -> dict[str, Any]:
    """Positions (as ``position_json`` gives them) as a GeoJSON FeatureCollection (RFC 7946:
    [longitude, latitude]): a LineString of them all when there are two or more, then a
    Point per position; ``phone`` and ``next`` (the page's cursor) are foreign members."""
    features: list[dict[str, Any]] = []
    if len(positions) >= 2:
        features.append({
            "type": "Feature",
            "geometry": {"type": "LineString",
                         "coordinates": [[p["longitude"], p["latitude"]] for p in positions]},
            "properties": {"phone": phone, "from": positions[0]["time"],
                           "to": positions[-1]["time"], "points": len(positions)},
        })  # fmt: skip
    for p in positions:
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [p["longitude"], p["latitude"]]},
            "properties": {
                "time": p["time"], "speed": p["speed"], "direction": p["direction"],
                "altitude": p["altitude"], "alarm": p["alarm"],
                "alarms": [ALARM_BITS.get(bit, f"bit {bit}") for bit in range(32)
                           if p["alarm"] >> bit & 1],
                "status": p["status"],
            },
        })  # fmt: skip
    return {"type": "FeatureCollection", "phone": phone, "features": features, "next": nxt}


def valid_webhook_url(url: str) -> bool:
    """An http:// or https:// URL with a host, of printable ASCII, at most 2000 characters."""
    if len(url) > 2000 or not url.isascii() or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def webhook_json(w: Webhook) -> dict[str, Any]:
    return {"id": w.id, "url": w.url, "events": list(w.events), "description": w.description,
            "created": iso(w.created), "created_by": w.created_by, "pending": w.pending,
            "dropped": w.dropped, "last_error": w.last_error}  # fmt: skip


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
        #: The playback sessions handed out: which media server holds each.
        self.playbacks = PlaybackSessions()

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
            Route("GET", "/api/v1/devices/{phone}/recordings", self.recordings),
            Route("POST", "/api/v1/devices/{phone}/playback", self.playback),
            Route("POST", "/api/v1/playback/{session}/control", self.playback_control),
            Route("POST", "/api/v1/devices/{phone}/talk", self.talk),
            Route("POST", "/api/v1/devices/{phone}/ptz", self.ptz),
            Route("GET", "/api/v1/devices/{phone}/av-attributes", self.av_attributes),
            Route("POST", "/api/v1/devices/{phone}/av-control", self.av_control),
            Route("GET", "/api/v1/alarms", self.alarms),
            Route("POST", "/api/v1/alarms/{alarm_id}", self.handle_alarm),
            Route("GET", "/api/v1/audit", self.audit),
            Route("GET", "/api/v1/devices/{phone}/track", self.track),
            Route("GET", "/api/v1/webhooks", self.webhooks),
            Route("POST", "/api/v1/webhooks", self.add_webhook),
            Route("DELETE", "/api/v1/webhooks/{webhook_id}", self.delete_webhook),
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

    async def track(self, request: server.Request, phone: str) -> Any:
        """The page of positions ``positions`` answers, as a GeoJSON FeatureCollection."""
        page = await self.positions(request, phone)
        return track_geojson(page["phone"], page["positions"], page["next"])

    # -- webhooks (admins) -----------------------------------------------------------------

    async def _admin(self, request: server.Request, what: str) -> User:
        user = await self.auth.user(request)
        if not user.admin:
            raise ApiError(403, "forbidden", f"{what} are for admins only")
        return user

    async def webhooks(self, request: server.Request) -> Any:
        await self._admin(request, "webhooks")
        return [webhook_json(w) for w in await webhook_store.list_webhooks(self.db)]

    async def add_webhook(self, request: server.Request) -> Any:
        user = await self._admin(request, "webhooks")
        body = json_body(request)
        url, events = body.get("url"), body.get("events")
        if not isinstance(url, str) or not valid_webhook_url(url):
            raise bad_request("url must be an http:// or https:// URL with a host, at most"
                              f" 2000 characters, got {_shown(url)}")  # fmt: skip
        if (not isinstance(events, list) or not events
                or not all(isinstance(e, str) and e in EVENTS for e in events)):
            raise bad_request("events must be a non-empty list of: "
                              + ", ".join(f'"{e}"' for e in EVENTS) + f", got {_shown(events)}")
        secret = body.get("secret")
        if secret is None:
            secret = secrets.token_urlsafe(32)
        elif not isinstance(secret, str) or not 16 <= len(secret) <= 200:
            raise bad_request("secret must be a string of 16 to 200 characters")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 200):
            raise bad_request("description must be a string of at most 200 characters")
        webhook = await webhook_store.add_webhook(self.db, user, url, list(dict.fromkeys(events)),
                                                  secret, description, self.now())  # fmt: skip
        return Response(201, {**webhook_json(webhook), "secret": secret})

    async def delete_webhook(self, request: server.Request, webhook_id: str) -> Any:
        user = await self._admin(request, "webhooks")
        ident = _row_id(webhook_id)
        webhook = await webhook_store.delete_webhook(self.db, user, ident, self.now()) if ident else None
        if webhook is None:
            raise not_found("no such webhook")
        return webhook_json(webhook)

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
        encoded, _ = _encoded(command)
        channel = channel_of(encoded)
        if channel is not None:
            _check_channel(d, channel)
        timeout = command.get("timeout", self.command_timeout)
        if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                or not 1 <= timeout <= MAX_COMMAND_TIMEOUT):
            raise bad_request(f"timeout must be between 1 and {MAX_COMMAND_TIMEOUT:g} seconds",
                              "bad_command")  # fmt: skip
        command_id, _, reply = await self._send(user, d, command, float(timeout))
        out = reply_json(reply)
        await self._finish(command_id, "replied", out)
        return {"command": command_id, "status": "replied", "reply": out}

    def _require_online(self, d: Device) -> None:
        """409 device_offline unless a gateway has the device (live, playback, talk-back:
        a stream is asked of it once a viewer comes)."""
        if self.cluster.device_gateway(d.phone) is None:
            raise ApiError(409, "device_offline", f"device {d.phone} is offline")

    async def _send(self, user: User, d: Device, command: dict[str, Any], timeout: float,
                    what: str = "") -> tuple[int, int, dict[str, Any]]:  # fmt: skip
        """Encode ``command`` (``cmsv6.web.commands``), check its channel and the user's
        right to send it, record it in ``commands``, send it and wait up to ``timeout`` s
        for the device's reply: (the command's id, its message id, the reply). Every failure is an ApiError
        in words (``what`` names the command in them) and recorded as the command's
        outcome; the caller records a reply's."""
        # Encoded for both versions: the gateway sends the one of the device's live session
        # (the version in the database is only the one it registered with).
        encoded, encoded_2019 = _encoded(command)
        channel = channel_of(encoded)
        if channel is not None:
            _check_channel(d, channel)
        await self._may_control(user, d, encoded)
        command_id = await command_store.start_command(
            self.db, user, d.id, d.phone, encoded.msg_id, command, self.now()
        )
        try:
            reply: dict[str, Any] = await self.cluster.send_to_device(
                d.phone, encoded.msg_id, encoded.body, timeout,
                body_2019=encoded_2019.body, by=user.name, command=command_id,
            )  # the gateway marks this row sent rather than adding its own
        except DeviceOffline:
            await self._finish(command_id, "offline", None)
            raise ApiError(409, "device_offline", f"device {d.phone} is offline") from None
        except CommandTimeout:
            await self._finish(command_id, "timeout", None)
            message = f"device {d.phone} did not answer"
            if what:
                message += f" {what} within {timeout:g} s"
            raise ApiError(504, "timeout", message) from None
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
        return command_id, encoded.msg_id, reply

    def _timeout(self, request: server.Request) -> float:
        """The ``timeout`` query argument (seconds), or the default."""
        text = query_arg(request, "timeout")
        if text is None:
            return self.command_timeout
        try:
            timeout = float(text)
        except ValueError:
            timeout = 0.0
        if not 1 <= timeout <= MAX_COMMAND_TIMEOUT:
            raise bad_request(f"timeout must be between 1 and {MAX_COMMAND_TIMEOUT:g} seconds")
        return timeout

    async def _acknowledged(self, user: User, d: Device, command: dict[str, Any], what: str,
                            timeout: float | None = None) -> Any:  # fmt: skip
        """Send ``command`` and answer ``{"command": id, "ok": true}`` once the device's
        general response says yes; 502 device_refused in words if it says no."""
        command_id, msg_id, reply = await self._send(user, d, command,
                                                     timeout or self.command_timeout, what)  # fmt: skip
        await self._finish(command_id, "replied", reply_json(reply))
        try:
            accepted(reply, d.phone, msg_id, what)
        except DeviceRefused as e:
            raise ApiError(502, "device_refused", str(e)) from None
        return {"command": command_id, "ok": True}

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
        self._require_online(d)
        path = f"/live/{d.phone}/{channel}.flv?" + urlencode({"stream": stream, "token": view.token})
        ws_url, http_url = _urls(view, path)
        # From login's memory of the device's 0x1003 (asked when a stream opens), never
        # asked here: null until the device has said.
        codec, audio = self.cluster.live_codecs(d.phone)
        return {
            "ws_flv": ws_url,
            "http_flv": http_url,
            "codec": codec,
            "audio": audio,
            "expires": _expires(view),
        }

    # -- recordings, playback, talk-back, PTZ, audio/video control (JT/T 1078) -------------

    async def recordings(self, request: server.Request, phone: str) -> Any:
        """The recordings on the device matching the query (0x9205 → its 0x1205)."""
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        channel = _int_arg(request, "channel", 0, 255, 0)
        end_text, start_text = query_arg(request, "to"), query_arg(request, "from")
        end = parse_time(end_text, "to") if end_text else self.now()
        start = parse_time(start_text, "from") if start_text else end - timedelta(days=1)
        if start >= end:
            raise bad_request("from must be before to")
        command: dict[str, Any] = {"type": "query_recordings", "channel": channel,
                                   "from": device_time(start), "to": device_time(end)}  # fmt: skip
        for name in ("alarm", "media", "stream", "storage"):
            value = query_arg(request, name)
            if value is not None:
                command[name] = value
        timeout = self._timeout(request)
        what = "the recording query (0x9205)"
        command_id, msg_id, reply = await self._send(user, d, command, timeout, what)
        await self._finish(command_id, "replied", reply_json(reply))
        if reply["msg_id"] == 0x0001:
            self._refused(reply, d, msg_id, what)
            raise ApiError(502, "no_list", f"device {d.phone} acknowledged {what} with a general"
                           " response (0x0001), not the list (0x1205): a device that sends the"
                           " list after its acknowledgement is not supported yet")  # fmt: skip
        if reply["msg_id"] != 0x1205:
            raise ApiError(502, "bad_reply", f"device {d.phone} answered {what} with"
                           f" 0x{reply['msg_id']:04x}, not the list (0x1205)")  # fmt: skip
        try:
            answer = decode_body(0x1205, reply["body"], reply["version"])
        except CodecError as e:
            raise ApiError(502, "bad_reply", f"device {d.phone}'s list (0x1205) does not decode:"
                           f" {e}") from None  # fmt: skip
        assert isinstance(answer, ResourceList)
        return {"recordings": [recording_json(r) for r in answer.items],
                "device_time_zone": "+08:00", "command": command_id}  # fmt: skip

    def _refused(self, reply: dict[str, Any], d: Device, msg_id: int, what: str) -> None:
        """502 device_refused in words unless the general response ``reply`` says yes."""
        try:
            accepted(reply, d.phone, msg_id, what)
        except DeviceRefused as e:
            raise ApiError(502, "device_refused", str(e)) from None

    async def playback(self, request: server.Request, phone: str) -> Any:
        """Where to play a recording back: a media server (the least loaded), a new playback
        session on it, and URLs carrying a token for exactly that session."""
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        body = json_body(request)
        channel = body.get("channel")
        if isinstance(channel, bool) or not isinstance(channel, int) or not 1 <= channel <= 64:
            raise bad_request("channel must be an integer from 1 to 64")
        _check_channel(d, channel)
        start = _body_time(body, "from")
        end = _body_time(body, "to") if body.get("to") is not None else None
        if end is not None and start >= end:
            raise bad_request("from must be before to")
        mode = _body_choice(body, "mode", PLAYBACK_MODES, "normal")
        speed = body.get("speed", 1)
        if isinstance(speed, bool) or speed not in PLAYBACK_SPEEDS:
            raise bad_request(f"speed must be one of {', '.join(map(str, PLAYBACK_SPEEDS))}"
                              f" (times normal speed), got {_shown(speed)}")  # fmt: skip
        media = _body_choice(body, "media", PLAYBACK_MEDIA, "audio_video")
        stream = _body_choice(body, "stream", RECORD_STREAMS, "any")
        storage = _body_choice(body, "storage", RECORD_STORAGE, "any")
        self._require_online(d)
        session = self.playbacks.new_id()
        params = {"id": session, "from": device_time(start),
                  "to": device_time(end) if end is not None else None, "mode": mode,
                  "speed": speed, "media": media, "stream": stream, "storage": storage}  # fmt: skip
        view = self.cluster.media_view(d.phone, channel, "playback", params)
        if view is None:
            raise ApiError(503, "media_unavailable", "no media server is available")
        self.playbacks.add(session, view.media, d.phone, channel, self.clock.seconds())
        ws_url, http_url = _urls(view, f"/playback/{d.phone}/{channel}.flv?"
                                 + urlencode({"token": view.token}))  # fmt: skip
        return {
            "ws_flv": ws_url,
            "http_flv": http_url,
            "playback": session,
            "control": f"/api/v1/playback/{session}/control",
            "codec": self.cluster.live_codecs(d.phone)[0],
            "expires": _expires(view),
        }

    async def playback_control(self, request: server.Request, session: str) -> Any:
        """Pause, resume, stop, fast-forward, rewind, keyframes or seek a playback session,
        on the media server that holds it (``ControlPlayback``), for a user who may still
        see its device."""
        user = await self.auth.user(request)
        found = self.playbacks.get(session, self.clock.seconds()) if len(session) <= 64 else None
        gone = not_found("no such playback session (never made, over, or made by another"
                         " login server: ask for the playback again)")  # fmt: skip
        if found is None:
            raise gone
        try:
            d = await self._device(user, found.phone)
        except ApiError:
            raise gone from None
        body = json_body(request)
        action = _body_choice(body, "action", PLAYBACK_ACTIONS)
        speed = body.get("speed")
        if action in ("fast_forward", "rewind") and speed is None:
            raise bad_request(f"{action} needs a speed: one of {', '.join(map(str, PLAYBACK_SPEEDS))}")
        if speed is not None and (isinstance(speed, bool) or speed not in PLAYBACK_SPEEDS):
            raise bad_request(f"speed must be one of {', '.join(map(str, PLAYBACK_SPEEDS))}"
                              f" (times normal speed), got {_shown(speed)}")  # fmt: skip
        time = None
        if action == "seek":
            time = device_time(_body_time(body, "time"))
        elif body.get("time") is not None:
            raise bad_request("time is for seek only")
        try:
            await self.cluster.control_playback(found.media, found.id, action, speed, time)
        except NoSuchPlayback:
            raise not_found(f"media server {found.media} has no playback {found.id} any more"
                            " (it ended, or every viewer left)") from None  # fmt: skip
        except DeviceRefused as e:
            raise ApiError(502, "device_refused", str(e)) from None
        except DeviceOffline:
            raise ApiError(409, "device_offline", f"device {d.phone} is offline") from None
        except CommandTimeout as e:
            raise ApiError(504, "timeout", f"device {d.phone} did not answer the playback"
                           f" control (0x9202): {e}") from None  # fmt: skip
        except BadRequest as e:
            raise bad_request(f"the media server refused the control: {e}") from None
        except Unavailable as e:
            raise ApiError(503, "media_unavailable", f"media server {found.media}, which holds"
                           f" playback {found.id}, is unavailable: {e}") from None  # fmt: skip
        return {"ok": True}

    async def talk(self, request: server.Request, phone: str) -> Any:
        """Where to talk to the driver (or broadcast to the vehicle): the media server's
        talk-back WebSocket with a token for a new session, and the audio format it takes."""
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        body = json_body(request)
        channel = body.get("channel", 1)
        if isinstance(channel, bool) or not isinstance(channel, int) or not 1 <= channel <= 255:
            raise bad_request("channel must be an integer from 1 to 255")
        if channel not in TALK_CHANNELS:
            _check_channel(d, channel)
        broadcast = body.get("broadcast", False)
        if not isinstance(broadcast, bool):
            raise bad_request("broadcast must be true or false")
        self._require_online(d)
        _, attributes = self.cluster.av_attributes(d.phone)
        if attributes is not None and not attributes.audio_output:
            raise ApiError(409, "no_audio_output", f"device {d.phone} has no audio output (its"
                           " audio/video attributes, 0x1003, say so): nobody in the vehicle"
                           " would hear talk-back or a broadcast")  # fmt: skip
        session = self.playbacks.new_id()
        view = self.cluster.media_view(d.phone, channel, "talk",
                                       {"id": session, "broadcast": broadcast})  # fmt: skip
        if view is None:
            raise ApiError(503, "media_unavailable", "no media server is available")
        ws_url, _ = _urls(view, f"/talk/{d.phone}/{channel}?" + urlencode({"token": view.token}))
        codec = codec_label(attributes.audio_codec, AUDIO_CODECS) if attributes is not None else None
        return {"ws": ws_url, "audio_codec": codec, "format": dict(TALK_FORMAT),
                "expires": _expires(view)}  # fmt: skip

    async def ptz(self, request: server.Request, phone: str) -> Any:
        """Turn, focus, zoom a camera, its iris, wiper or infrared light (0x9301-0x9306)."""
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        body = json_body(request)
        command = {**body, "type": "ptz"}
        return await self._acknowledged(user, d, command, f"the PTZ command ({_shown(body.get('action'))})")

    async def av_control(self, request: server.Request, phone: str) -> Any:
        """0x9102 on a running stream: switch it to main/sub, pause, resume, close it, or
        close talk-back."""
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        body = json_body(request)
        command = {**body, "type": "av_control"}
        return await self._acknowledged(user, d, command, "the audio/video control (0x9102)")

    async def av_attributes(self, request: server.Request, phone: str) -> Any:
        """The device's audio/video attributes, asked now (0x9003 → its 0x1003), with codec
        names; login remembers them (for the live and talk answers)."""
        user = await self.auth.user(request)
        d = await self._device(user, phone)
        what = "the audio/video attribute query (0x9003)"
        command_id, msg_id, reply = await self._send(user, d, {"type": "query_av_attributes"},
                                                     self._timeout(request), what)  # fmt: skip
        await self._finish(command_id, "replied", reply_json(reply))
        if reply["msg_id"] == 0x0001:
            self._refused(reply, d, msg_id, what)
            raise ApiError(502, "bad_reply", f"device {d.phone} answered {what} with a general"
                           " response, not its attributes (0x1003)")  # fmt: skip
        if reply["msg_id"] != 0x1003:
            raise ApiError(502, "bad_reply", f"device {d.phone} answered {what} with"
                           f" 0x{reply['msg_id']:04x}, not 0x1003")  # fmt: skip
        try:
            attributes = decode_body(0x1003, reply["body"], reply["version"])
        except CodecError as e:
            raise ApiError(502, "bad_reply", f"device {d.phone}'s 0x1003 does not decode: {e}") from None
        assert isinstance(attributes, AvAttributes)
        self.cluster.remember_av(d.phone, attributes)
        return {**attributes_json(attributes), "command": command_id}


def _encoded(command: dict[str, Any]) -> tuple[Encoded, Encoded]:
    """``command`` encoded for a 2013 and a 2019 session; 400 bad_command in words."""
    try:
        return encode_command(command, 2013), encode_command(command, 2019)
    except BadCommand as e:
        raise bad_request(str(e), "bad_command") from None


def _urls(view: LiveView, path: str) -> tuple[str, str]:
    """The WebSocket and HTTP URLs of ``path`` on the media server of ``view`` (wss:// and
    https:// when its public_web is https)."""
    base = view.public_web.rstrip("/")
    ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
    return ws_base + path, base + path


def _expires(view: LiveView) -> str | None:
    return iso(datetime.fromtimestamp(view.expires, timezone.utc))


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_arg(request: server.Request, name: str, low: int, high: int, default: int) -> int:
    text = query_arg(request, name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}, got {_shown(text)}")
    return int(text)


def _body_time(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    if not isinstance(value, str):
        raise bad_request(f"{name} must be an ISO 8601 time, got {_shown(value)}")
    return parse_time(value, name)


def _body_choice(body: dict[str, Any], name: str, names: Mapping[str, Any],
                 default: str | None = None) -> str:  # fmt: skip
    value = body.get(name, default)
    if not isinstance(value, str) or value not in names:
        allowed = ", ".join(f'"{n}"' for n in names)
        raise bad_request(f"{name} must be one of {allowed}, got {_shown(value)}")
    return value


def device_time(t: datetime) -> str:
    """``t`` as the device keeps time: ISO 8601 in +08:00, the offset explicit."""
    return t.astimezone(BEIJING).isoformat()


#: A playback's media (0x9201): "any" is for queries only.
PLAYBACK_MEDIA = {k: v for k, v in RECORD_MEDIA.items() if k != "any"}

#: JT/T 1078 table 2's audio channels (driver, ..., rear of the cabin): talk-back may use
#: them whatever the device's video channels.
TALK_CHANNELS = range(33, 38)

#: What the talk-back WebSocket takes from the browser (docs/api.md).
TALK_FORMAT: Mapping[str, Any] = {"encoding": "pcm_s16le", "rate": 8000, "channels": 1,
                                  "frame_ms": [20, 40]}  # fmt: skip


def _name(code: int, names: Mapping[str, int]) -> str:
    for name, value in names.items():
        if value == code and name != "any":
            return name
    return f"code {code}"


def alarm_names(flags: int) -> list[str]:
    """The names of the set bits of a 0x1205 item's 64-bit alarm flags: bits 0-31 the JT/T
    808 alarm bits, 32-63 the JT/T 1078 video alarms (see ``cmsv6.protocols.jt808.messages.jt1078``);
    a bit of no known name as "bit N"."""
    out = []
    for bit in range(64):
        if flags >> bit & 1:
            name = ALARM_BITS.get(bit) if bit < 32 else VIDEO_ALARM_BITS.get(bit - 32)
            out.append(name or f"bit {bit}")
    return out


def recording_json(r: Resource) -> dict[str, Any]:
    """A 0x1205 item; its times in the device's +08:00 (None if it sent none)."""
    return {
        "channel": r.channel,
        "start": r.start.isoformat() if r.start is not None else None,
        "end": r.end.isoformat() if r.end is not None else None,
        "alarm": f"0x{r.alarm_flags:016x}",
        "alarms": alarm_names(r.alarm_flags),
        "media": _name(r.media_type, RECORD_MEDIA),
        "stream": _name(r.stream_type, RECORD_STREAMS) if r.stream_type else "any",
        "storage": _name(r.storage_type, RECORD_STORAGE) if r.storage_type else "any",
        "size": r.file_size,
    }


def attributes_json(a: AvAttributes) -> dict[str, Any]:
    """A 0x1003 with codec names (table 12) and its sample rate and bits as numbers."""
    return {
        "audio_codec": codec_label(a.audio_codec, AUDIO_CODECS),
        "audio_channels": a.audio_channels,
        "audio_sample_rate": a.sample_rate_hz,
        "audio_sample_bits": a.sample_bits,
        "audio_frame_length": a.audio_frame_length,
        "audio_output": bool(a.audio_output),
        "video_codec": codec_label(a.video_codec, VIDEO_CODECS),
        "max_audio_channels": a.max_audio_channels,
        "max_video_channels": a.max_video_channels,
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


"""Files devices upload (0x0801 photos, audio, video): their rows, written by the gateway
and read by users (only those of devices they may see, ``cmsv6.db.fleets``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from attrs import frozen
from twisted.internet import defer

from cmsv6.db.fleets import VISIBLE, who
from cmsv6.db.service import Database
from cmsv6.db.users import User


@frozen
class MediaFile:
    """One uploaded file: the device's media id, type (0 image, 1 audio, 2 video), format
    (0 JPEG, 1 TIF, 2 MP3, 3 WAV, 4 WMV), event and channel as the 0x0801 gave them, where
    and when it was taken (its location, if it had one), and where it is on disk."""

    id: int
    phone: str
    media_id: int
    media_type: int
    format: int
    event: int
    channel: int
    time: datetime | None
    latitude: float | None
    longitude: float | None
    path: str
    size: int
    received: datetime


def record_file(
    db: Database, device_id: int, body: Any, path: str, received: datetime
) -> Any:
    """Record a file written to ``path`` for a 0x0801 upload (``MultimediaData``)."""
    loc = body.location
    return db.run_operation(
        "INSERT INTO media_files (device_id, media_id, media_type, format, event,"
        " channel, time, latitude, longitude, path, size, received)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (
            device_id, body.media_id, body.media_type, body.media_format, body.event,
            body.channel, loc.time if loc else None, loc.latitude if loc else None,
            loc.longitude if loc else None, path, len(body.data), received,
        ),
    )  # fmt: skip


_SELECT = (
    "SELECT m.id, d.phone, m.media_id, m.media_type, m.format, m.event, m.channel, m.time,"
    " m.latitude, m.longitude, m.path, m.size, m.received"
    " FROM media_files m JOIN devices d ON d.id = m.device_id"
)


@defer.inlineCallbacks
def list_media(
    db: Database, user: User, device_id: int, limit: int, before: int | None = None
) -> Any:
    """A page of a device's files, newest first (by id), at most ``limit``; ``before``: the
    last id of the previous page. Empty for a device the user may not see."""
    args = who(user, dev=device_id, limit=limit, before=before)
    where = f"m.device_id = %(dev)s AND {VISIBLE}"
    if before is not None:
        where += " AND m.id < %(before)s"
    rows = yield db.run_query(f"{_SELECT} WHERE {where} ORDER BY m.id DESC LIMIT %(limit)s", args)
    return [MediaFile(*r) for r in rows]


@defer.inlineCallbacks
def get_media(db: Database, user: User, file_id: int) -> Any:
    """The file with this id, or None if there is none or the user may not see its device
    (the two are not told apart)."""
    rows = yield db.run_query(f"{_SELECT} WHERE m.id = %(id)s AND {VISIBLE}",
                              who(user, id=file_id))  # fmt: skip
    return MediaFile(*rows[0]) if rows else None

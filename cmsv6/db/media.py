"""Files devices upload (0x0801 photos, audio, video): their rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cmsv6.db.service import Database


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

"""What a simulated DVR has recorded: the files a 0x9205 query lists (0x1205).

A unit records every channel while the vehicle is driving, in files of 15-30 minutes, on
its main storage; the main stream and the sub stream each get their own file. Here the
vehicle drives two shifts a day (about 07:00-12:00 and 13:30-19:00, device time +08:00),
with stops now and then; about one segment in eight has alarm bits (JT/T 808 bits 0-31,
video alarm bits 32-63, as ``Resource.alarm_flags`` reads them) and is kept on the backup
storage too (main stream). Sizes follow the bit rates of the clip the cameras stream:
about 464 kbit/s on the main stream (video and G.711), 164 kbit/s on the sub stream. On a
unit with three channels or more the last one has no microphone (video only).

Deterministic: each day is drawn from a random generator seeded by the phone and the date,
so a day's files never change while the device runs, and a test can ask ``recordings``
what a query will get. Files that have not ended by ``now`` are not listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from random import Random

from attrs import frozen

from cmsv6.protocols.jt808.fields import BEIJING
from cmsv6.protocols.jt808.messages.jt1078 import (
    MediaType,
    QueryResources,
    RecordStream,
    Resource,
    StorageType,
)

#: Minutes of the day the vehicle is out: the morning and the afternoon shift.
SHIFTS = ((7 * 60, 12 * 60), (13 * 60 + 30, 19 * 60))
#: A file's length in minutes (the last of a shift is cut shorter).
SEGMENT = (15, 30)
#: Chance a segment is followed by a stop, and the stop's length in minutes.
STOP_CHANCE = 0.15
STOP = (5, 40)
#: Chance a segment has alarm bits, and the alarms it may have (64-bit flags).
ALARM_CHANCE = 0.12
ALARMS = (
    1 << 0,  # emergency
    1 << 1,  # overspeed
    1 << 2,  # fatigue driving
    1 << 32,  # video signal lost
    1 << 33,  # video occluded
    1 << 37,  # abnormal driving behaviour
    (1 << 1) | (1 << 37),
)
#: Bits a second, by stream: video plus G.711 (64 kbit/s) where there is sound.
VIDEO_RATE = {RecordStream.MAIN: 400_000, RecordStream.SUB: 100_000}
AUDIO_RATE = 64_000
#: Items one answer lists at most (a query over every channel of a big unit).
MAX_ITEMS = 5000


@frozen
class Recording:
    """One file on the unit's storage."""

    channel: int
    start: datetime
    end: datetime
    alarm_flags: int
    media_type: int
    stream_type: int
    storage_type: int
    size: int

    def resource(self) -> Resource:
        """The 0x1205 list item."""
        return Resource(
            self.channel, self.start, self.end, self.alarm_flags, self.media_type,
            self.stream_type, self.storage_type, self.size,
        )


def segments(phone: str, day: date) -> list[tuple[datetime, datetime, int]]:
    """The day's driving segments: (start, end, alarm flags), device time."""
    rng = Random(f"{phone}/{day.isoformat()}")
    midnight = datetime(day.year, day.month, day.day, tzinfo=BEIJING)
    out = []
    for first, last in SHIFTS:
        at = first * 60 + rng.randint(0, 45 * 60)
        end_of_shift = last * 60 + rng.randint(-20 * 60, 20 * 60)
        while at < end_of_shift - 60:
            end = min(at + rng.randint(SEGMENT[0] * 60, SEGMENT[1] * 60), end_of_shift)
            alarm = rng.choice(ALARMS) if rng.random() < ALARM_CHANCE else 0
            out.append(
                (midnight + timedelta(seconds=at), midnight + timedelta(seconds=end), alarm)
            )
            at = end
            if rng.random() < STOP_CHANCE:
                at += rng.randint(STOP[0] * 60, STOP[1] * 60)
    return out


def recordings(phone: str, channels: int, days: int, now: float) -> Iterator[Recording]:
    """Every file of the last ``days`` days up to ``now``, in time order (then channel,
    stream, storage)."""
    today = datetime.fromtimestamp(now, BEIJING).date()
    ended = datetime.fromtimestamp(now, BEIJING)
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        rng = Random(f"{phone}/{day.isoformat()}/sizes")
        for start, end, alarm in segments(phone, day):
            if end > ended:
                return
            seconds = (end - start).total_seconds()
            for channel in range(1, channels + 1):
                mute = channels >= 3 and channel == channels
                media = MediaType.VIDEO if mute else MediaType.AUDIO_VIDEO
                for stream in (RecordStream.MAIN, RecordStream.SUB):
                    rate = VIDEO_RATE[stream] + (0 if mute else AUDIO_RATE)
                    size = int(seconds * rate / 8 * rng.uniform(0.92, 1.08))
                    storages = [StorageType.MAIN]
                    if alarm and stream == RecordStream.MAIN:
                        storages.append(StorageType.BACKUP)
                    for storage in storages:
                        yield Recording(channel, start, end, alarm, media, stream, storage, size)


def media_matches(query: int, media: int) -> bool:
    """Whether a file of ``media`` type answers a query for ``query`` (table 21): audio
    (1) lists the files with sound, video (2) and "video, or audio and video" (3) the
    files with pictures, audio and video (0) the files with both."""
    if query == MediaType.AUDIO_VIDEO:
        return media == MediaType.AUDIO_VIDEO
    if query == MediaType.AUDIO:
        return media in (MediaType.AUDIO_VIDEO, MediaType.AUDIO)
    return media in (MediaType.AUDIO_VIDEO, MediaType.VIDEO)


def matches(query: QueryResources, r: Recording) -> bool:
    """Whether a file answers a 0x9205 (zero or no time means "any"; a file is listed
    when it overlaps the time range)."""
    return (
        (query.channel == 0 or query.channel == r.channel)
        and (query.start is None or r.end > query.start)
        and (query.end is None or r.start < query.end)
        and (query.alarm_flags == 0 or bool(query.alarm_flags & r.alarm_flags))
        and media_matches(query.media_type, r.media_type)
        and query.stream_type in (RecordStream.ANY, r.stream_type)
        and query.storage_type in (StorageType.ANY, r.storage_type)
    )


def query(
    phone: str, channels: int, days: int, q: QueryResources, now: float
) -> list[Resource]:
    """The 0x1205 items answering ``q`` (at most ``MAX_ITEMS``)."""
    out = []
    for r in recordings(phone, channels, days, now):
        if matches(q, r):
            out.append(r.resource())
            if len(out) == MAX_ITEMS:
                break
    return out

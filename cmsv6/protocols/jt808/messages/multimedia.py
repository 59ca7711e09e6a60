"""Multimedia and pass-through: 0x0800/0x0801/0x8800, 0x8801/0x0805, 0x8802/0x0802,
0x8803, 0x8804, 0x8805, 0x0900/0x8900 and 0x0901.

Locations inside 0x0801 and 0x0802 are the 28-byte basic report only (no additional
items), read into the same ``Location`` class as 0x0200.

JT/T 808-2011 had no location in 0x0801 and no multimedia id in the 0x0802 items; 2011 and
2013 share a header, so those layouts are told apart by size (and, for 0x0801, by a JPEG
that starts where the location would be).
"""

from __future__ import annotations

import gzip
import zlib
from datetime import datetime
from typing import Any

from attrs import field, frozen
from construct import (
    Adapter,
    Array,
    Computed,
    Construct,
    FixedSized,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    Prefixed,
    PrefixedArray,
    Struct,
)
from construct.core import stream_read, stream_seek, stream_size, stream_tell

from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import BcdTime, Trailing, Tuple
from cmsv6.protocols.jt808.messages.location import Location
from cmsv6.protocols.jt808.model import RecordAdapter, message, record

# Multimedia types (JT/T 808 table 66 in 2013).
MEDIA_IMAGE = 0
MEDIA_AUDIO = 1
MEDIA_VIDEO = 2

# Multimedia formats.
FORMAT_JPEG = 0
FORMAT_TIF = 1
FORMAT_MP3 = 2
FORMAT_WAV = 3
FORMAT_WMV = 4

# Event codes: what made the unit take the picture or recording.
EVENT_PLATFORM = 0
EVENT_TIMED = 1
EVENT_ROBBERY_ALARM = 2
EVENT_COLLISION_ALARM = 3
EVENT_DOOR_OPEN = 4
EVENT_DOOR_CLOSE = 5
EVENT_DOOR_SPEED = 6  # door from open to closed with speed over 20 km/h
EVENT_DISTANCE = 7

#: Size of the basic location report (no additional items).
BASIC_LOCATION_SIZE = 28

_JPEG_SOI = b"\xff\xd8"


def _remaining(stream: Any, path: str) -> int:
    return stream_size(stream) - stream_tell(stream, path)  # type: ignore[no-any-return]


class _BasicLocationAdapter(Adapter):  # type: ignore[misc]
    """A ``Location`` written as the 28 basic bytes: additional items are refused when
    building rather than cut off, since the receiver could not tell they were dropped."""

    def _decode(self, obj: Location, context: Any, path: str) -> Location:
        return obj

    def _encode(self, obj: Location, context: Any, path: str) -> Location:
        if isinstance(obj, Location) and (obj.extras or obj.rest):
            raise CodecError("this location is the 28-byte basic report: no additional items")
        return obj


#: The 28-byte basic location, as a ``Location`` with no extras.
BasicLocation = _BasicLocationAdapter(
    FixedSized(BASIC_LOCATION_SIZE, Location.CODEC)  # type: ignore[attr-defined]
)


class _MediaLocation(Construct):  # type: ignore[misc]
    """0x0801's location: the 28 basic bytes (2013, 2019), or None in the 2011 layout.

    The 2011 layout is recognised when fewer than 28 bytes are left, or when a JPEG starts
    right after the 8-byte head while none starts 28 bytes later: a 2013 alarm word of
    0xffd8.... (alarm bits 31-22 all set) is not plausible.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flagbuildnone = True

    def _parse(self, stream: Any, context: Any, path: str) -> Location | None:
        left = _remaining(stream, path)
        if left < BASIC_LOCATION_SIZE:
            return None
        start = stream_tell(stream, path)
        head = stream_read(stream, min(left, BASIC_LOCATION_SIZE + 2), path)
        stream_seek(stream, start, 0, path)
        if (
            context.media_format == FORMAT_JPEG
            and head[:2] == _JPEG_SOI
            and head[BASIC_LOCATION_SIZE : BASIC_LOCATION_SIZE + 2] != _JPEG_SOI
        ):
            return None
        return BasicLocation._parsereport(stream, context, path)  # type: ignore[no-any-return]

    def _build(self, obj: Location | None, stream: Any, context: Any, path: str) -> Any:
        if obj is None:
            return None
        return BasicLocation._build(obj, stream, context, path)


@message(0x0800)
@frozen
class MultimediaEvent:
    """The unit announces a picture, recording or clip it is about to upload."""

    media_id: int
    media_type: int
    media_format: int
    event: int
    channel: int

    FORMAT = Struct(
        "media_id" / Int32ub,
        "media_type" / Int8ub,
        "media_format" / Int8ub,
        "event" / Int8ub,
        "channel" / Int8ub,
    )


@message(0x0801)
@frozen
class MultimediaData:
    """A picture, recording or clip with the position where it was taken.

    The body is usually sub-packaged and is decoded once reassembled, so ``data`` can be
    large; it is kept as bytes. ``location`` is None in the 2011 layout, which has none.
    """

    media_id: int
    media_type: int
    media_format: int
    event: int
    channel: int
    location: Location | None
    data: bytes = b""

    FORMAT = Struct(
        "media_id" / Int32ub,
        "media_type" / Int8ub,
        "media_format" / Int8ub,
        "event" / Int8ub,
        "channel" / Int8ub,
        "location" / _MediaLocation(),
        "data" / GreedyBytes,
    )


@message(0x8800)
@frozen
class MultimediaUploadResponse:
    """The platform's answer to 0x0801: the sub-package indexes to send again, none when
    everything arrived (the count is then left out, as the standard says)."""

    media_id: int
    retransmit_ids: tuple[int, ...] = field(converter=tuple, default=())

    FORMAT = Struct(
        "media_id" / Int32ub,
        "retransmit_ids"
        / Trailing(Tuple(PrefixedArray(Int8ub, Int16ub)), default=(), omit_default=True),
    )


# 0x8801 command values besides a photo count.
SHOOT_STOP = 0x0000
SHOOT_VIDEO = 0xFFFF


@message(0x8801)
@frozen
class TakePhoto:
    """Camera shoot-now command.

    ``command`` is the number of pictures, 0 to stop or 0xFFFF to record video;
    ``interval`` is seconds between pictures, or the recording time (0 = as long as
    possible). ``save`` is 1 to keep on the unit, 0 to upload at once.
    """

    channel: int
    command: int
    interval: int
    save: int
    resolution: int
    quality: int
    brightness: int
    contrast: int
    saturation: int
    chroma: int

    FORMAT = Struct(
        "channel" / Int8ub,
        "command" / Int16ub,
        "interval" / Int16ub,
        "save" / Int8ub,
        "resolution" / Int8ub,
        "quality" / Int8ub,
        "brightness" / Int8ub,
        "contrast" / Int8ub,
        "saturation" / Int8ub,
        "chroma" / Int8ub,
    )


# 0x0805 results.
PHOTO_OK = 0
PHOTO_FAILED = 1
PHOTO_UNSUPPORTED_CHANNEL = 2


@message(0x0805)
@frozen
class TakePhotoResponse:
    """The unit's answer to 0x8801: the ids of the pictures taken.

    Some units end the body after the result when it is a failure; that reads as no ids.
    """

    reply_serial: int
    result: int
    media_ids: tuple[int, ...] = field(converter=tuple, default=())

    FORMAT = Struct(
        "reply_serial" / Int16ub,
        "result" / Int8ub,
        "media_ids" / Trailing(Tuple(PrefixedArray(Int16ub, Int32ub)), default=()),
    )


@message(0x8802)
@frozen
class StoredMediaSearch:
    """Search the unit's stored media. Times of None (zeros) mean no time condition."""

    media_type: int
    channel: int
    event: int
    start: datetime | None
    end: datetime | None

    FORMAT = Struct(
        "media_type" / Int8ub,
        "channel" / Int8ub,
        "event" / Int8ub,
        "start" / BcdTime,
        "end" / BcdTime,
    )


@record
@frozen
class StoredMediaItem:
    """One 0x0802 search result. ``media_id`` is None in the 2011 layout, which has none."""

    media_id: int | None
    media_type: int
    channel: int
    event: int
    location: Location

    FORMAT = Struct(
        "media_id" / Int32ub,
        "media_type" / Int8ub,
        "channel" / Int8ub,
        "event" / Int8ub,
        "location" / BasicLocation,
    )


_ITEM_2013 = StoredMediaItem.CODEC  # type: ignore[attr-defined]
_ITEM_2011 = RecordAdapter(
    Struct(
        "media_id" / Computed(None),
        "media_type" / Int8ub,
        "channel" / Int8ub,
        "event" / Int8ub,
        "location" / BasicLocation,
    ),
    StoredMediaItem,
)
_ITEM_2013_SIZE = 4 + 3 + BASIC_LOCATION_SIZE
_ITEM_2011_SIZE = 3 + BASIC_LOCATION_SIZE


class _SearchItems(Construct):  # type: ignore[misc]
    """The counted 0x0802 items, in the 2013 layout unless only the 2011 one fits the body."""

    def _parse(self, stream: Any, context: Any, path: str) -> tuple[StoredMediaItem, ...]:
        count = Int16ub._parsereport(stream, context, path)
        left = _remaining(stream, path)
        if left == count * _ITEM_2011_SIZE and left != count * _ITEM_2013_SIZE:
            sub = _ITEM_2011
        else:
            sub = _ITEM_2013
        return tuple(Array(count, sub)._parsereport(stream, context, path))

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        items = list(obj)
        layouts = {item.media_id is None for item in items}
        if len(layouts) > 1:
            raise CodecError("0x0802 items either all have a media id (2013) or none (2011)")
        Int16ub._build(len(items), stream, context, path)
        sub = _ITEM_2011 if layouts == {True} else _ITEM_2013
        for item in items:
            sub._build(item, stream, context, path)
        return obj


@message(0x0802)
@frozen
class StoredMediaSearchResponse:
    """The unit's answer to 0x8802: what it holds, each with where it was taken."""

    reply_serial: int
    items: tuple[StoredMediaItem, ...] = field(converter=tuple)

    FORMAT = Struct("reply_serial" / Int16ub, "items" / _SearchItems())


@message(0x8803)
@frozen
class StoredMediaUpload:
    """Upload the stored media matching the conditions; ``delete`` 1 deletes them after."""

    media_type: int
    channel: int
    event: int
    start: datetime | None
    end: datetime | None
    delete: int = 0

    FORMAT = Struct(
        "media_type" / Int8ub,
        "channel" / Int8ub,
        "event" / Int8ub,
        "start" / BcdTime,
        "end" / BcdTime,
        "delete" / Int8ub,
    )


# 0x8804 sample rates.
SAMPLE_8K = 0
SAMPLE_11K = 1
SAMPLE_23K = 2
SAMPLE_32K = 3


@message(0x8804)
@frozen
class AudioRecord:
    """Start (``command`` 1) or stop (0) recording; ``duration`` in seconds, 0 = until told."""

    command: int
    duration: int
    save: int
    sample_rate: int

    FORMAT = Struct(
        "command" / Int8ub,
        "duration" / Int16ub,
        "save" / Int8ub,
        "sample_rate" / Int8ub,
    )


@message(0x8805)
@frozen
class StoredMediaRetrieve:
    """Upload one stored item by id; ``delete`` 1 deletes it after."""

    media_id: int
    delete: int = 0

    FORMAT = Struct("media_id" / Int32ub, "delete" / Int8ub)


# Pass-through types (JT/T 808 table 93; 0xF0-0xFF are user defined).
PASSTHROUGH_GNSS = 0x00
PASSTHROUGH_IC_CARD = 0x0B
PASSTHROUGH_SERIAL1 = 0x41
PASSTHROUGH_SERIAL2 = 0x42


@message(0x0900)
@frozen
class PassThroughUp:
    """Data the unit passes through from a peripheral; its meaning depends on ``kind``."""

    kind: int
    data: bytes = b""

    FORMAT = Struct("kind" / Int8ub, "data" / GreedyBytes)


@message(0x8900)
@frozen
class PassThroughDown:
    """Data for the unit to pass on to a peripheral."""

    kind: int
    data: bytes = b""

    FORMAT = PassThroughUp.FORMAT


@message(0x0901)
@frozen
class CompressedData:
    """A GZIP-compressed message body (see ``uncompressed``)."""

    data: bytes

    FORMAT = Struct("data" / Prefixed(Int32ub, GreedyBytes))

    def uncompressed(self) -> bytes:
        """The GZIP-decompressed data; CodecError if it is not GZIP."""
        try:
            return gzip.decompress(self.data)
        except (OSError, EOFError, zlib.error) as e:
            raise CodecError(f"0x0901 data is not GZIP: {e}") from None

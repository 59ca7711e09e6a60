"""Areas and routes: set/delete circles, rectangles, polygons and routes (0x8600-0x8607),
and the 2019 query (0x8608) with its answer (0x0608).

The property word decides which optional fields are on the wire: bit 0 the start/end times,
bit 1 the speed limit and overspeed duration (and, in 2019, the night speed limit). 2019 also
gives each area and route a name (WORD length + STRING). A field the properties leave out
reads as None and is not written whatever its value; a field they ask for must be given.

Coordinates are in degrees as on the wire: magnitudes, with the hemisphere in the property
bits (``AREA_SOUTH``/``AREA_WEST``; ``SECTION_SOUTH``/``SECTION_WEST`` for route points).
Times are Beijing time; speeds km/h; durations seconds; radius and widths metres.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from attrs import field, frozen
from construct import (
    Adapter,
    Array,
    Default,
    GreedyBytes,
    If,
    Int8ub,
    Int16ub,
    Int32ub,
    PrefixedArray,
    Rebuild,
    Struct,
    Switch,
    len_,
    this,
)

from cmsv6.protocols.jt808.errors import CodecError
from cmsv6.protocols.jt808.fields import V2019, BcdTime, PrefixedText, Tuple
from cmsv6.protocols.jt808.model import message, record

# Area property bits (JT/T 808 table 59).
AREA_BY_TIME = 1 << 0
AREA_SPEED_LIMIT = 1 << 1
AREA_ENTER_ALARM_DRIVER = 1 << 2
AREA_ENTER_ALARM_PLATFORM = 1 << 3
AREA_LEAVE_ALARM_DRIVER = 1 << 4
AREA_LEAVE_ALARM_PLATFORM = 1 << 5
AREA_SOUTH = 1 << 6
AREA_WEST = 1 << 7
AREA_NO_DOOR_OPEN = 1 << 8
AREA_RADIO_OFF = 1 << 14
AREA_COLLECT_GNSS = 1 << 15

# Route section property bits.
SECTION_BY_TIME = 1 << 0  # driving-time thresholds present
SECTION_SPEED_LIMIT = 1 << 1
SECTION_SOUTH = 1 << 2
SECTION_WEST = 1 << 3

# Setting actions of 0x8600 and 0x8602.
AREA_UPDATE = 0
AREA_APPEND = 1
AREA_MODIFY = 2

# Query types of 0x8608 / 0x0608.
QUERY_CIRCLE = 1
QUERY_RECTANGLE = 2
QUERY_POLYGON = 3
QUERY_ROUTE = 4


class _Degrees(Adapter):  # type: ignore[misc]
    """A DWORD in millionths of a degree, as a float (a magnitude: the sign is a property bit)."""

    def __init__(self) -> None:
        super().__init__(Int32ub)

    def _decode(self, obj: int, context: Any, path: str) -> float:
        return obj / 1e6

    def _encode(self, obj: float, context: Any, path: str) -> int:
        raw = round(obj * 1e6)
        if not 0 <= raw <= 0xFFFFFFFF:
            raise CodecError(f"{obj} degrees does not fit a DWORD (give the magnitude)")
        return raw


_by_time = (this.properties & AREA_BY_TIME) != 0
_limited = (this.properties & AREA_SPEED_LIMIT) != 0
# A 2019 name; Default lets a caller leave it out (an empty name is written).
_Name = Default(PrefixedText(Int16ub), "")


def _area_tail() -> tuple[Any, ...]:
    """Times and speed limits of an area, as its properties ask (shared by circle and rectangle)."""
    return (
        "start_time" / If(_by_time, BcdTime),
        "end_time" / If(_by_time, BcdTime),
        "max_speed" / If(_limited, Int16ub),
        "overspeed_duration" / If(_limited, Int8ub),
        "night_max_speed" / If(V2019 & _limited, Int16ub),
        "name" / If(V2019, _Name),
    )


# -- circles ------------------------------------------------------------------------------


@record
@frozen
class CircleArea:
    area_id: int
    properties: int
    latitude: float
    longitude: float
    radius: int
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_speed: int | None = None
    overspeed_duration: int | None = None
    night_max_speed: int | None = None  # 2019
    name: str | None = None  # 2019

    FORMAT = Struct(
        "area_id" / Int32ub,
        "properties" / Int16ub,
        "latitude" / _Degrees(),
        "longitude" / _Degrees(),
        "radius" / Int32ub,
        *_area_tail(),
    )


@message(0x8600)
@frozen
class SetCircleAreas:
    """Set circle areas: ``action`` 0 replaces all, 1 appends, 2 modifies."""

    action: int
    areas: tuple[CircleArea, ...] = field(converter=tuple)

    FORMAT = Struct(
        "action" / Int8ub,
        "areas" / Tuple(PrefixedArray(Int8ub, CircleArea.CODEC)),  # type: ignore[attr-defined]
    )


def _delete_format() -> Struct:
    # A count of 0 deletes every area of the kind.
    return Struct("area_ids" / Tuple(PrefixedArray(Int8ub, Int32ub)))


@message(0x8601)
@frozen
class DeleteCircleAreas:
    """Delete circle areas by id; no ids deletes them all."""

    area_ids: tuple[int, ...] = field(default=(), converter=tuple)

    FORMAT = _delete_format()


# -- rectangles ---------------------------------------------------------------------------


@record
@frozen
class RectangleArea:
    area_id: int
    properties: int
    top_left_latitude: float
    top_left_longitude: float
    bottom_right_latitude: float
    bottom_right_longitude: float
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_speed: int | None = None
    overspeed_duration: int | None = None
    night_max_speed: int | None = None  # 2019
    name: str | None = None  # 2019

    FORMAT = Struct(
        "area_id" / Int32ub,
        "properties" / Int16ub,
        "top_left_latitude" / _Degrees(),
        "top_left_longitude" / _Degrees(),
        "bottom_right_latitude" / _Degrees(),
        "bottom_right_longitude" / _Degrees(),
        *_area_tail(),
    )


@message(0x8602)
@frozen
class SetRectangleAreas:
    """Set rectangle areas: ``action`` 0 replaces all, 1 appends, 2 modifies."""

    action: int
    areas: tuple[RectangleArea, ...] = field(converter=tuple)

    FORMAT = Struct(
        "action" / Int8ub,
        "areas" / Tuple(PrefixedArray(Int8ub, RectangleArea.CODEC)),  # type: ignore[attr-defined]
    )


@message(0x8603)
@frozen
class DeleteRectangleAreas:
    area_ids: tuple[int, ...] = field(default=(), converter=tuple)

    FORMAT = _delete_format()


# -- polygons -----------------------------------------------------------------------------


@record
@frozen
class Vertex:
    latitude: float
    longitude: float

    FORMAT = Struct("latitude" / _Degrees(), "longitude" / _Degrees())


@message(0x8604)
@frozen
class SetPolygonArea:
    """Set one polygon area. Unlike circles and rectangles, the 2019 night speed limit comes
    after the vertices, just before the name."""

    area_id: int
    properties: int
    vertices: tuple[Vertex, ...] = field(converter=tuple)
    start_time: datetime | None = None
    end_time: datetime | None = None
    max_speed: int | None = None
    overspeed_duration: int | None = None
    night_max_speed: int | None = None  # 2019
    name: str | None = None  # 2019

    FORMAT = Struct(
        "area_id" / Int32ub,
        "properties" / Int16ub,
        "start_time" / If(_by_time, BcdTime),
        "end_time" / If(_by_time, BcdTime),
        "max_speed" / If(_limited, Int16ub),
        "overspeed_duration" / If(_limited, Int8ub),
        "count" / Rebuild(Int16ub, len_(this.vertices)),
        "vertices" / Tuple(Array(this.count, Vertex.CODEC)),  # type: ignore[attr-defined]
        "night_max_speed" / If(V2019 & _limited, Int16ub),
        "name" / If(V2019, _Name),
    )


@message(0x8605)
@frozen
class DeletePolygonAreas:
    area_ids: tuple[int, ...] = field(default=(), converter=tuple)

    FORMAT = _delete_format()


# -- routes -------------------------------------------------------------------------------

_section_timed = (this.properties & SECTION_BY_TIME) != 0
_section_limited = (this.properties & SECTION_SPEED_LIMIT) != 0


@record
@frozen
class RoutePoint:
    """A turning point and the section that starts there. Section property bit 0 brings the
    too-long/too-short driving-time thresholds, bit 1 the speed limits."""

    point_id: int
    section_id: int
    latitude: float
    longitude: float
    width: int
    properties: int
    long_threshold: int | None = None
    short_threshold: int | None = None
    max_speed: int | None = None
    overspeed_duration: int | None = None
    night_max_speed: int | None = None  # 2019

    FORMAT = Struct(
        "point_id" / Int32ub,
        "section_id" / Int32ub,
        "latitude" / _Degrees(),
        "longitude" / _Degrees(),
        "width" / Int8ub,
        "properties" / Int8ub,
        "long_threshold" / If(_section_timed, Int16ub),
        "short_threshold" / If(_section_timed, Int16ub),
        "max_speed" / If(_section_limited, Int16ub),
        "overspeed_duration" / If(_section_limited, Int8ub),
        "night_max_speed" / If(V2019 & _section_limited, Int16ub),
    )


@message(0x8606)
@frozen
class SetRoute:
    """Set one route: route property bit 0 brings the start/end times; 2019 adds the name."""

    route_id: int
    properties: int
    points: tuple[RoutePoint, ...] = field(converter=tuple)
    start_time: datetime | None = None
    end_time: datetime | None = None
    name: str | None = None  # 2019

    FORMAT = Struct(
        "route_id" / Int32ub,
        "properties" / Int16ub,
        "start_time" / If(_by_time, BcdTime),
        "end_time" / If(_by_time, BcdTime),
        "count" / Rebuild(Int16ub, len_(this.points)),
        "points" / Tuple(Array(this.count, RoutePoint.CODEC)),  # type: ignore[attr-defined]
        "name" / If(V2019, _Name),
    )


@message(0x8607)
@frozen
class DeleteRoutes:
    route_ids: tuple[int, ...] = field(default=(), converter=tuple)

    FORMAT = Struct("route_ids" / Tuple(PrefixedArray(Int8ub, Int32ub)))


# -- 2019 query ---------------------------------------------------------------------------


@message(0x8608)
@frozen
class QueryAreas:
    """2019: query the areas or routes of one kind (``QUERY_*``); no ids asks for them all."""

    kind: int
    ids: tuple[int, ...] = field(default=(), converter=tuple)

    FORMAT = Struct("kind" / Int8ub, "ids" / Tuple(PrefixedArray(Int32ub, Int32ub)))


def _items_or_raw(value: Any) -> tuple[Any, ...] | bytes:
    return bytes(value) if isinstance(value, (bytes, bytearray)) else tuple(value)


@message(0x0608)
@frozen
class QueryAreasResponse:
    """2019: the areas or routes of one kind, each item a whole setting body (0x8600,
    0x8602, 0x8604 or 0x8606) after a DWORD count. For a kind we do not know, ``items`` is
    the raw bytes after the kind (count included)."""

    kind: int
    items: tuple[Any, ...] | bytes = field(converter=_items_or_raw)

    FORMAT = Struct(
        "kind" / Int8ub,
        "items"
        / Switch(
            this.kind,
            {
                QUERY_CIRCLE: Tuple(PrefixedArray(Int32ub, SetCircleAreas.CODEC)),  # type: ignore[attr-defined]
                QUERY_RECTANGLE: Tuple(PrefixedArray(Int32ub, SetRectangleAreas.CODEC)),  # type: ignore[attr-defined]
                QUERY_POLYGON: Tuple(PrefixedArray(Int32ub, SetPolygonArea.CODEC)),  # type: ignore[attr-defined]
                QUERY_ROUTE: Tuple(PrefixedArray(Int32ub, SetRoute.CODEC)),  # type: ignore[attr-defined]
            },
            default=GreedyBytes,
        ),
    )
